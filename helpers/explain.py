"""Where a detector looks: Grad-CAM for CNNs, attention rollout for the ViT, and the share of that
attention falling on the eyes band and the lower-face band, for fake and real faces apart (the crop
study's hypothesis, seen directly: is the FAKE evidence in the eyes or in the lower face?).

Every model outputs one logit z meaning FAKE. Grad-CAM is class-specific: it explains the FAKE score
+z or the REAL score -z. Attention rollout is not: it traces what feeds the class token, whatever the
class, so a ViT's fake and real maps answer "where does it look", not "where is the evidence".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from helpers.faces import region_boxes
from helpers.models.mesonet import MesoNet

# What a Grad-CAM map explains: the FAKE score, the REAL score, each face's true class, or the class
# the model predicts for it.
TARGETS: tuple[str, ...] = ("fake", "real", "label", "predicted")
ROLLOUT_METHOD = "attention rollout (class-agnostic: the same map whatever the class)"


def last_conv(model: nn.Module) -> nn.Module:
    """The last Conv2d of a CNN: the Grad-CAM layer of CNNs that cam_layer does not know."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer: use attention_rollout for a ViT")
    return convs[-1]


def cam_layer(model: nn.Module) -> tuple[nn.Module, str]:
    """The layer whose output Grad-CAM weighs, and its name: the last feature block's output.

    ResNet: `layer4[-1]` (after its BatchNorm, the residual add and the ReLU; its last conv, `conv3`,
    sees none of those). VGG: the last ReLU of `features` (before the final max-pool). MesoNet:
    `features[-1]`, the last conv block after its ReLU, BatchNorm and max-pool: the map the classifier
    flattens. Any other CNN: its last Conv2d.
    """
    if isinstance(model, MesoNet):
        return model.features[-1], "features[-1]"
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4):
        return layer4[-1], "layer4[-1]"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        relus = [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
        if relus:
            return features[relus[-1]], f"features[{relus[-1]}]"
    conv = last_conv(model)
    return conv, next(name for name, m in model.named_modules() if m is conv)


def fake_flags(labels, n: int | None = None) -> np.ndarray:
    """Labels as 1 = FAKE, 0 = REAL, from 'FAKE'/'REAL' strings, booleans or 0/1."""
    values = np.asarray(labels).reshape(-1)
    if values.dtype.kind in "USO":
        upper = np.char.upper(values.astype(str))
        bad = sorted(set(upper) - {"FAKE", "REAL"})
        if bad:
            raise ValueError(f"labels must be FAKE or REAL (or 1/0), found {bad}")
        flags = (upper == "FAKE").astype(np.int64)
    else:
        bad = sorted(set(values.tolist()) - {0, 1})
        if bad:
            raise ValueError(f"labels must be 1 (FAKE) or 0 (REAL), found {bad}")
        flags = values.astype(np.int64)
    if n is not None and len(flags) != n:
        raise ValueError(f"{len(flags)} labels for {n} images: give one label per image")
    return flags


def _resolve_target(target: str | None, labels) -> str:
    """`target`, defaulting to 'label' where labels are given and 'predicted' where not."""
    target = target or ("label" if labels is not None else "predicted")
    if target not in TARGETS:
        raise ValueError(f"unknown Grad-CAM target {target!r}; choose from {', '.join(TARGETS)}")
    if target == "label" and labels is None:
        raise ValueError("Grad-CAM target 'label' needs labels: pass labels=, or target='predicted', 'fake' or 'real'")
    return target


def target_signs(logits: torch.Tensor, target: str | None = None, labels=None) -> torch.Tensor:
    """Per image, +1 where the map explains the FAKE score (+logit), -1 where it explains REAL (-logit)."""
    target = _resolve_target(target, labels)
    if target == "fake":
        return torch.ones_like(logits)
    if target == "real":
        return -torch.ones_like(logits)
    if target == "predicted":
        return torch.where(logits >= 0, 1.0, -1.0).to(logits)
    flags = torch.as_tensor(fake_flags(labels, len(logits)), device=logits.device)
    return (2 * flags - 1).to(logits)


def _normalise(maps: torch.Tensor) -> np.ndarray:
    """Scale each map to max 1 (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()


def grad_cam(model: nn.Module, images: torch.Tensor, layer: nn.Module | None = None, target: str | None = None,
             labels=None) -> np.ndarray:
    """Class-specific Grad-CAM maps (B, H, W) in [0, 1], upsampled to the input size.

    `target` (see TARGETS) picks the score each map explains: 'fake' is +logit, 'real' is -logit,
    'label' each face's class from `labels` (1/'FAKE' or 0/'REAL'; the default where labels are given),
    'predicted' the class the model gives it (the default without labels). `layer` defaults to cam_layer.
    """
    layer = layer or cam_layer(model)[0]
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
            logits = model(images).reshape(-1)
            signs = target_signs(logits.detach(), target, labels)
            # Images are independent in eval mode, so one backward of the sum gives each its own gradient.
            (signs * logits).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    if "gradient" not in store:
        raise ValueError(f"{type(layer).__name__} layer got no gradient: pick a layer the logit depends on")
    activation, gradient = store["activation"].detach(), store["gradient"].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # how much each channel pushes the target score
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _normalise(cam)


def attention_rollout(model: nn.Module, images: torch.Tensor, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) from the class token to the patches, (B, H, W) in [0, 1].

    Each block's head-averaged attention is mixed with the identity (the residual path) and the
    layers are multiplied, tracing how much each patch feeds the class token at the end. It is
    class-agnostic: a fake and a real face get the map of where the model looks, not of the evidence
    for either class.
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


def explain(model: nn.Module, images: torch.Tensor, target: str | None = None, labels=None) -> np.ndarray:
    """Grad-CAM for CNNs (class-specific, see grad_cam), attention rollout for the ViT (ignores target)."""
    if hasattr(model, "attention_maps"):
        return attention_rollout(model, images)
    return grad_cam(model, images, target=target, labels=labels)


def explain_method(model: nn.Module, target: str | None = None, labels_given: bool = False) -> str:
    """How explain() makes `model`'s maps, in words, for tables and figure titles."""
    if hasattr(model, "attention_maps"):
        return ROLLOUT_METHOD
    target = _resolve_target(target, True if labels_given else None)
    what = {"fake": "the FAKE logit", "real": "the REAL score (-logit)", "predicted": "the predicted class",
            "label": "each face's class (FAKE: +logit, REAL: -logit)"}[target]
    return f"Grad-CAM at {cam_layer(model)[1]}, explaining {what}"


@dataclass(eq=False)
class FaceExplanations:
    """Heatmaps of a run's model on some faces; unpacks as (images, heatmaps, landmarks) like before."""

    images: np.ndarray     # RGB uint8 (n, S, S, 3), what the model saw
    heatmaps: np.ndarray   # (n, S, S) in [0, 1]
    landmarks: np.ndarray  # the five points in model pixels (n, 5, 2)
    labels: np.ndarray     # 1 = FAKE, 0 = REAL (n,)
    method: str            # explain_method's words

    def __iter__(self):
        return iter((self.images, self.heatmaps, self.landmarks))

    def __len__(self) -> int:
        return len(self.heatmaps)


def pick_faces(faces: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to `n` rows, half fakes and half reals where both have enough (one class's shortfall goes to the other); fakes first."""
    flags = fake_flags(faces["label"], len(faces)).astype(bool)
    groups = [faces[flags], faces[~flags]]
    want = [(n + 1) // 2, n // 2]
    spare = [max(w - len(g), 0) for w, g in zip(want, groups)]
    take = [min(len(g), w + spare[1 - i]) for i, (w, g) in enumerate(zip(want, groups))]
    return pd.concat([g if k == len(g) else g.sample(k, random_state=seed) for g, k in zip(groups, take)])


def explain_faces(run_dir, faces: pd.DataFrame, n: int = 8, seed: int = 0, target: str = "label") -> FaceExplanations:
    """Heatmaps of a run's model on up to `n` faces (rows of split.csv with landmarks), half fakes and half reals.

    Grad-CAM explains each face's own class by default (`target`, see grad_cam); the ViT's rollout is
    class-agnostic. Unpacks as (images, heatmaps, landmarks); `.labels` and `.method` say the rest.
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
    picked = pick_faces(faces, n, seed)
    labels = fake_flags(picked["label"], len(picked))
    images, points = [], []
    for _, row in picked.iterrows():
        images.append(load_crop(row[column], size))
        crop_side = cv2.imread(str(row["face_path"])).shape[0]  # the crop size notebook 02 wrote
        points.append(crop_landmarks(row, crop_side) * (size / crop_side))
    batch = torch.stack([to_tensor(im) for im in images])
    heatmaps = explain(model, batch, target=target, labels=labels)
    return FaceExplanations(np.stack(images), heatmaps, np.stack(points), labels,
                            explain_method(model, target, labels_given=True))


def band_mass(heatmap: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Share of a heatmap's mass inside the eyes band and the lower-face band, and each band's area share.

    `landmarks` are the five points in the heatmap's pixels. A band whose mass share exceeds its area
    share draws more attention than a uniform map would give it. An all-zero map has NaN shares.
    """
    size = heatmap.shape[0]
    total = float(heatmap.sum())
    out = {}
    for name, (x0, y0, x1, y1) in region_boxes(landmarks, size).items():
        out[f"{name}_share"] = float(heatmap[y0:y1, x0:x1].sum()) / total if total > 0 else float("nan")
        out[f"{name}_area"] = (x1 - x0) * (y1 - y0) / float(size * size)
    return out


def _mean(rows: list[dict], key: str) -> float:
    """Mean of rows[key] ignoring NaN (all-zero maps); NaN where there is nothing to average."""
    values = np.array([r[key] for r in rows], dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def band_mass_summary(heatmaps: np.ndarray, landmarks: np.ndarray, labels=None, method: str | None = None) -> dict:
    """Mean band shares over faces, for fakes and reals apart where `labels` (1/'FAKE', 0/'REAL') are given.

    With labels: eyes_share_fake, lower_share_fake, eyes_share_real, lower_share_real (NaN for a class
    with no faces), faces_fake, faces_real. Without: eyes_share and lower_share over all faces. Always:
    eyes_area and lower_area, the bands' mean share of the image; and `method` when given.
    """
    rows = [band_mass(h, lm) for h, lm in zip(heatmaps, landmarks)]
    if not rows:
        return {}
    out: dict = {}
    if labels is None:
        out.update({key: _mean(rows, key) for key in ("eyes_share", "lower_share")})
    else:
        flags = fake_flags(labels, len(rows))
        for cls, flag in (("fake", 1), ("real", 0)):
            chosen = [r for r, f in zip(rows, flags) if f == flag]
            for band in ("eyes", "lower"):
                out[f"{band}_share_{cls}"] = _mean(chosen, f"{band}_share") if chosen else float("nan")
        out["faces_fake"], out["faces_real"] = int(flags.sum()), int((flags == 0).sum())
    out.update({key: _mean(rows, key) for key in ("eyes_area", "lower_area")})
    if method is not None:
        out["method"] = method
    return out
