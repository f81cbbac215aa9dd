"""`build_model`: every architecture of the study by name, each returning one FAKE logit per image, shape (B,)."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .heads import LogitHead
from .mesonet import Meso4, MesoInception4
from .vit import build_vit

MODEL_NAMES: tuple[str, ...] = ("vit", "resnet50", "resnet101", "vgg19", "meso4", "mesoinception4")

# name -> (torchvision builder, weights enum class, member): looked up lazily so importing
# helpers.models does not import torchvision.
_TORCHVISION = {
    "resnet50": ("resnet50", "ResNet50_Weights", "IMAGENET1K_V2"),
    "resnet101": ("resnet101", "ResNet101_Weights", "IMAGENET1K_V2"),
    "vgg19": ("vgg19", "VGG19_Weights", "IMAGENET1K_V1"),
}

# Keyword arguments each family accepts; anything else is a typo we refuse rather than ignore.
_VIT_KWARGS = {"size", "patch_size", "dim", "depth", "heads", "mlp_ratio", "dropout", "head_hidden"}
_MESO_KWARGS = {"dropout"}
# VGG19's own classifier (fc6/fc7/fc8) is 120 M of its 140 M parameters and, at small inputs, most of its
# compute; "pooled" (the default) global-average-pools the last conv block into one logit (20 M parameters),
# the usual way to fine-tune it, and "classifier" keeps the original fully connected layers.
VGG_HEADS = ("pooled", "classifier")


class PretrainedWeightsMissing(RuntimeError):
    """Pretrained ImageNet weights are neither in the torch hub cache nor downloadable."""

    def __init__(self, name: str, weights, path: Path, reason: str):
        self.filename = path.name
        self.path = path
        self.url = weights.url
        super().__init__(
            f"pretrained ImageNet weights for {name} ({weights}) are not available: {path.name} is not in the "
            f"torch hub cache ({reason}). Either download\n  {weights.url}\nand put it at\n  {path}\n"
            "(the folder follows $TORCH_HOME; on a machine with internet: "
            f"curl -L -o {path.name} {weights.url}, then copy it there), "
            "or set PRETRAINED=False to train from a random initialisation."
        )


def build_model(name: str, image_size: int = 224, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build architecture `name` (see MODEL_NAMES) for square RGB images of side `image_size`."""
    # Accepted everywhere so notebooks can pass it whatever the model; only torchvision models download.
    allow_download = kwargs.pop("allow_download", True)
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(MODEL_NAMES)}")
    if name == "vit":
        _check_kwargs(name, kwargs, _VIT_KWARGS)
        _refuse_pretrained(name, pretrained, "train it from scratch")
        return build_vit(image_size, **kwargs)
    if name in ("meso4", "mesoinception4"):
        _check_kwargs(name, kwargs, _MESO_KWARGS)
        _refuse_pretrained(name, pretrained, "load the authors' weights with helpers.models.load_keras_weights")
        return (Meso4 if name == "meso4" else MesoInception4)(image_size=image_size, **kwargs)
    _check_kwargs(name, kwargs, {"head"} if name == "vgg19" else set())
    head = kwargs.get("head", "pooled")
    if head not in VGG_HEADS:
        raise ValueError(f"vgg19's head must be one of {VGG_HEADS}, got {head!r}")
    return _build_torchvision(name, pretrained, allow_download, head)


def _check_kwargs(name: str, kwargs: dict, allowed: set[str]) -> None:
    """Raise TypeError for keyword arguments `name` does not take (a misspelt depth must not pass silently)."""
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed | {"allow_download"}))
        raise TypeError(f"build_model({name!r}) got unexpected keyword arguments {unknown}; it takes: {takes}")


def _refuse_pretrained(name: str, pretrained: bool, instead: str) -> None:
    """Models without ImageNet weights in this project refuse pretrained=True, saying what to do."""
    if pretrained:
        raise ValueError(f"{name} has no pretrained ImageNet weights in this study: build it with pretrained=False ({instead})")


def _build_torchvision(name: str, pretrained: bool, allow_download: bool, head: str = "pooled") -> nn.Module:
    """A torchvision classifier with its last layer swapped for a one-logit head."""
    import torchvision  # noqa: PLC0415 - slow to import and only needed here

    builder_name, enum_name, member = _TORCHVISION[name]
    # Weights first: a missing file should fail before seconds are spent initialising VGG's 140M parameters.
    state = None
    if pretrained:
        weights = getattr(getattr(torchvision.models, enum_name), member)
        state = _pretrained_state_dict(name, weights, allow_download)
    # From scratch, a ResNet starts with the last BatchNorm of every residual branch at zero (torchvision's
    # zero_init_residual; Goyal et al. 2017): each block begins as the identity, so the deep net trains like a
    # shallow one first. On the demo's 48 px faces, ResNet50 with it fitted its training faces within 8 epochs
    # (train AUC 1.0, validation 0.74) and without it did not (train 0.74, validation 0.71 at best;
    # scripts/demo_budgets.py, params/demo_budgets.csv).
    # ImageNet weights overwrite those BatchNorms, so pretrained runs are unchanged.
    zero_init = {"zero_init_residual": True} if name.startswith("resnet") and state is None else {}
    model = getattr(torchvision.models, builder_name)(weights=None, **zero_init)
    if state is not None:
        model.load_state_dict(state)
    if name.startswith("resnet"):
        model.fc = LogitHead(model.fc.in_features)
    elif head == "pooled":
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), LogitHead(512))
    else:
        model.classifier[-1] = LogitHead(model.classifier[-1].in_features)
    return model


def pretrained_weights_path(weights) -> Path:
    """Where torch.hub caches a torchvision weights enum member (follows $TORCH_HOME at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _pretrained_state_dict(name: str, weights, allow_download: bool) -> dict:
    """The ImageNet state dict from the hub cache, downloading it first if allowed; any failure is PretrainedWeightsMissing."""
    path = pretrained_weights_path(weights)
    # Checked before anything touches the network, so an offline machine fails at once and clearly.
    if not path.is_file() and not allow_download:
        raise PretrainedWeightsMissing(name, weights, path, "downloads are off: allow_download=False")
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - a proxy, DNS, hash or unpickling error all mean the same to the user
        what = "could not read the cached file" if path.is_file() else "the download failed"
        raise PretrainedWeightsMissing(name, weights, path, f"{what}: {type(exc).__name__}: {exc}") from exc
