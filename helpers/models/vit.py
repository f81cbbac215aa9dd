"""A from-scratch Vision Transformer (Dosovitskiy et al. 2021) whose attention maps can be recorded.

Written out rather than built on `nn.MultiheadAttention` because attention rollout needs the softmax
weights of every block, which the fused PyTorch kernels do not return.
"""
from __future__ import annotations

import torch
from torch import nn

from .heads import LogitHead

# The DeiT presets (Touvron et al. 2021): same depth, wider and more heads as they grow.
VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 192, "depth": 12, "heads": 3},
    "small": {"dim": 384, "depth": 12, "heads": 6},
    "base": {"dim": 768, "depth": 12, "heads": 12},
}


class PatchEmbedding(nn.Module):
    """Cut an image into non-overlapping patches and project each to a `dim`-vector."""

    def __init__(self, image_size: int, patch_size: int, dim: int, in_channels: int = 3):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}; "
                f"pick an image size such as {image_size // patch_size * patch_size} or another patch size"
            )
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        # A conv whose stride equals its kernel is exactly a linear map applied to every patch.
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, patches, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; with `keep_attention` set it stores its weights in `last_attention`."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, tokens, dim) -> (B, tokens, dim)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        # Stored before dropout and detached: rollout wants the weights the model means, not the noise.
        self.last_attention = attn.detach() if self.keep_attention else None
        out = self.attn_drop(attn) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Sequential):
    """The transformer's position-wise feed-forward layer."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout))


class Block(nn.Module):
    """A pre-norm encoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, tokens, dim) -> (B, tokens, dim)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a class token and learned position embeddings, returning one FAKE logit per image."""

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        head_hidden: int | None = None,
        in_channels: int = 3,
    ):
        super().__init__()
        self.patch_embed = PatchEmbedding(image_size, patch_size, dim, in_channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # The ViT paper trains from scratch with a one-hidden-layer (tanh) head; head_hidden=0 gives
        # the single linear layer it uses for fine-tuning.
        hidden = dim if head_hidden is None else head_hidden
        if hidden:
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout), LogitHead(hidden))
        else:
            self.head = nn.Sequential(LogitHead(dim))
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def keep_attention(self) -> bool:
        """Whether every block records its attention weights."""
        return all(block.attn.keep_attention for block in self.blocks)

    @keep_attention.setter
    def keep_attention(self, keep: bool) -> None:
        for block in self.blocks:
            block.attn.keep_attention = keep
            block.attn.last_attention = None

    def attention_maps(self) -> list[torch.Tensor]:
        """The (B, heads, tokens, tokens) weights of the last forward, one per block (needs keep_attention)."""
        maps = [block.attn.last_attention for block in self.blocks]
        if any(m is None for m in maps):
            raise RuntimeError("no attention recorded: set model.keep_attention = True, then run a forward pass")
        return maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised class-token embedding, (B, dim)."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B,) logits."""
        return self.head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights and zero biases, as in the reference ViT/DeiT code."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_vit(image_size: int = 224, size: str = "tiny", **overrides) -> VisionTransformer:
    """A ViT from a DeiT size preset ("tiny", "small", "base"), with any hyper-parameter overridden."""
    if size not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r}; choose one of {sorted(VIT_SIZES)}")
    return VisionTransformer(image_size=image_size, **{**VIT_SIZES[size], **overrides})
