"""Where a detector looks: Grad-CAM for CNNs, attention rollout for the ViT, and the share of that
attention falling on the eyes band and the lower-face band (the crop study's hypothesis, seen directly).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from helpers.faces import region_boxes


def last_conv(model: nn.Module) -> nn.Module:
    """The last Conv2d of a CNN: the usual Grad-CAM layer (finest spatial map with class-specific features)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer: use attention_rollout for a ViT")
    return convs[-1]


def _normalise(maps: torch.Tensor) -> np.ndarray:
    """Scale each map to max 1 (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()


def grad_cam(model: nn.Module, images: torch.Tensor, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM maps (B, H, W) in [0, 1] for the FAKE logit, upsampled to the input size."""
    layer = layer or last_conv(model)
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["activation"] = output
        output.register_hook(lambda grad: store.__setitem__("gradient", grad))

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        images = images.clone().requires_grad_(True)  # gradients must flow even through frozen layers
        with torch.enable_grad():
            model.zero_grad(set_to_none=True)
            model(images).reshape(-1).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    activation, gradient = store["activation"].detach(), store["gradient"].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # how much each channel pushes the FAKE logit
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _normalise(cam)


def attention_rollout(model: nn.Module, images: torch.Tensor, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) from the class token to the patches, (B, H, W) in [0, 1].

    Each block's head-averaged attention is mixed with the identity (the residual path) and the
    layers are multiplied, tracing how much each patch feeds the class token at the end.
    """
    was_training, kept = model.training, model.keep_attention
    model.eval()
    model.keep_attention = True
    try:
        with torch.no_grad():
            model(images)
            maps = model.attention_maps()
    finally:
        model.keep_attention = kept
        model.train(was_training)
    rollout = rollout_matrix(maps, residual)
    cls_to_patches = rollout[:, 0, 1:]
    side = int(round(cls_to_patches.shape[1] ** 0.5))
    grid = cls_to_patches.reshape(-1, 1, side, side)
    grid = F.interpolate(grid, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _normalise(grid)


def rollout_matrix(maps: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """The product of the layers' (identity-mixed, row-normalised) attention: (B, tokens, tokens), rows sum to 1."""
    result = None
    for attention in maps:
        a = attention.mean(dim=1)
        a = residual * torch.eye(a.shape[-1], device=a.device) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result


def explain(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Grad-CAM for CNNs, attention rollout for models that record attention (our ViT)."""
    if hasattr(model, "attention_maps"):
        return attention_rollout(model, images)
    return grad_cam(model, images)


def band_mass(heatmap: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Share of a heatmap's mass inside the eyes band and the lower-face band, and each band's area share.

    `landmarks` are the five points in the heatmap's pixels. A band whose mass share exceeds its area
    share draws more attention than a uniform map would give it.
    """
    size = heatmap.shape[0]
    total = float(heatmap.sum())
    out = {}
    for name, (x0, y0, x1, y1) in region_boxes(landmarks, size).items():
        out[f"{name}_mass"] = float(heatmap[y0:y1, x0:x1].sum()) / total if total > 0 else float("nan")
        out[f"{name}_area"] = (x1 - x0) * (y1 - y0) / float(size * size)
    return out


def explain_faces(run_dir, faces, n: int = 8, seed: int = 0):
    """Heatmaps of a run's model on up to `n` faces (rows of split.csv with landmarks).

    Returns (images RGB uint8 (n, S, S, 3), heatmaps (n, S, S), landmarks in model pixels (n, 5, 2)).
    """
    import cv2  # noqa: PLC0415

    from helpers.datasets import load_crop, to_tensor, variant_column  # noqa: PLC0415
    from helpers.faces import crop_landmarks  # noqa: PLC0415
    from helpers.training import load_model  # noqa: PLC0415

    model, saved = load_model(run_dir)
    size, column = saved["image_size"], variant_column(saved.get("variant", "full"))
    if saved.get("variant", "full") not in ("full", "eyes_lower"):
        raise ValueError(f"{run_dir}: band mass needs the whole face layout (variant full or eyes_lower), "
                         f"not {saved['variant']!r}")
    picked = faces.sample(min(n, len(faces)), random_state=seed) if len(faces) > n else faces
    images, points = [], []
    for _, row in picked.iterrows():
        images.append(load_crop(row[column], size))
        crop_side = cv2.imread(str(row["face_path"])).shape[0]  # the crop size notebook 02 wrote
        points.append(crop_landmarks(row, crop_side) * (size / crop_side))
    batch = torch.stack([to_tensor(im) for im in images])
    return np.stack(images), explain(model, batch), np.stack(points)


def band_mass_summary(heatmaps: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Mean band_mass over faces: mass and area shares of the eyes and lower-face bands."""
    rows = [band_mass(h, lm) for h, lm in zip(heatmaps, landmarks)]
    return {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]} if rows else {}
