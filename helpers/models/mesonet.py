"""MesoNet (Afchar et al. 2018): Meso4 and MesoInception4 in PyTorch, and a loader for the authors' Keras weights.

The layers follow the authors' Keras code (github.com/DariusAf/MesoNet, `classifiers.py`) exactly, so
their published weights load and give the same outputs: Keras's 'same' max-pooling, BatchNorm's
epsilon of 1e-3, and Keras's channels-last flatten order are all reproduced. One thing is changed on
purpose: their sigmoid is P(REAL), and `load_keras_weights` negates the last layer so that ours, like
every model of the study, outputs the FAKE logit (sigmoid = 1 - their output).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .heads import LogitHead

# Keras's BatchNormalization defaults; PyTorch's are eps=1e-5, momentum=0.1 (its momentum is 1 - Keras's).
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01


class KerasMaxPool2d(nn.Module):
    """MaxPooling2D(pool, padding='same') as Keras does it: output ceil(n / pool), padding split before/after."""

    def __init__(self, pool: int):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, ceil(H / pool), ceil(W / pool))."""
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
            total = math.ceil(size / self.pool) * self.pool - size
            # TensorFlow puts the smaller half first; PyTorch's ceil_mode pads only at the end, which
            # shifts every window when pool=4 and the size is 6 mod 8, say.
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.pool)

    def extra_repr(self) -> str:
        return f"pool={self.pool}, padding='same'"


def keras_same_pool_size(size: int, pool: int) -> int:
    """Spatial size after a Keras MaxPooling2D(pool, padding='same')."""
    return math.ceil(size / pool)


class ConvBlock(nn.Sequential):
    """Conv2D('same', relu) -> BatchNormalization -> MaxPooling2D('same'), the unit of the Keras code."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, pool: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
            KerasMaxPool2d(pool),
        )


def _conv_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    """A 'same'-padded stride-1 Conv2D with relu, as two modules."""
    return [nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation), nn.ReLU(inplace=True)]


class InceptionLayer(nn.Module):
    """The authors' InceptionLayer(a, b, c, d): 1x1 | 1x1->3x3 | 1x1->3x3 dil 2 | 1x1->3x3 dil 3, concatenated."""

    def __init__(self, in_channels: int, a: int, b: int, c: int, d: int):
        super().__init__()
        # Declared in the Keras code's order so the convs line up with the weight file's layer numbers.
        self.branch1 = nn.Sequential(*_conv_relu(in_channels, a))
        self.branch2 = nn.Sequential(*_conv_relu(in_channels, b), *_conv_relu(b, b, 3))
        self.branch3 = nn.Sequential(*_conv_relu(in_channels, c), *_conv_relu(c, c, 3, dilation=2))
        self.branch4 = nn.Sequential(*_conv_relu(in_channels, d), *_conv_relu(d, d, 3, dilation=3))
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, a+b+c+d, H, W)."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionBlock(nn.Sequential):
    """InceptionLayer -> BatchNormalization -> MaxPooling2D('same')."""

    def __init__(self, in_channels: int, a: int, b: int, c: int, d: int, pool: int = 2):
        layer = InceptionLayer(in_channels, a, b, c, d)
        super().__init__(
            layer,
            nn.BatchNorm2d(layer.out_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
            KerasMaxPool2d(pool),
        )


class MesoNet(nn.Module):
    """Shared head of Meso4 and MesoInception4: Flatten, Dropout, Dense 16 + LeakyReLU 0.1, Dropout, Dense 1."""

    def __init__(self, features: nn.Sequential, channels: int, image_size: int, pools: list[int], dropout: float = 0.5):
        super().__init__()
        side = image_size
        for pool in pools:
            side = keras_same_pool_size(side, pool)
        # (C, H, W) before the flatten: the Keras loader needs it to reorder the first Dense layer.
        self.feature_shape = (channels, side, side)
        self.image_size = image_size
        self.features = features
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * side * side, 16),
            # Not in the paper's figure but in the authors' code (their issue #25). The Meso4 .h5 files
            # list no leaky_re_lu layer (MesoInception's do), so Meso4 may have been trained without
            # it; we follow the published code, which is what every Keras user of those files runs.
            nn.LeakyReLU(0.1),
            nn.Dropout(dropout),
            LogitHead(16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B,) FAKE logits (for the authors' weights: minus their Keras model's logit)."""
        return self.classifier(self.features(x))


class Meso4(MesoNet):
    """Meso4: four conv blocks (8 3x3, 8 5x5, 16 5x5, 16 5x5; pools 2, 2, 2, 4) and the MesoNet head."""

    def __init__(self, image_size: int = 256, dropout: float = 0.5):
        features = nn.Sequential(
            ConvBlock(3, 8, 3, pool=2),
            ConvBlock(8, 8, 5, pool=2),
            ConvBlock(8, 16, 5, pool=2),
            ConvBlock(16, 16, 5, pool=4),
        )
        super().__init__(features, 16, image_size, [2, 2, 2, 4], dropout)


class MesoInception4(MesoNet):
    """MesoInception4: InceptionLayer(1,4,4,2) and (2,4,4,2) blocks, then Meso4's last two conv blocks."""

    def __init__(self, image_size: int = 256, dropout: float = 0.5):
        features = nn.Sequential(
            InceptionBlock(3, 1, 4, 4, 2, pool=2),
            InceptionBlock(11, 2, 4, 4, 2, pool=2),
            ConvBlock(12, 16, 5, pool=2),
            ConvBlock(16, 16, 5, pool=4),
        )
        super().__init__(features, 16, image_size, [2, 2, 2, 4], dropout)


# ----------------------------------------------------------------------------------------------------
# Keras weights


def _decode(values) -> list[str]:
    """HDF5 string attributes come back as bytes from Keras 2 files; make them str."""
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _layer_kind_and_number(name: str) -> tuple[str, int]:
    """'conv2d_12' -> ('conv2d', 12); Keras numbers layers of a kind in the order they were created."""
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    return match.group(1), int(match.group(2) or 0)


def read_keras_weights(h5_path: str | Path) -> dict[str, list[tuple[str, dict[str, np.ndarray]]]]:
    """Arrays of a Keras 2 weights-only HDF5 file by layer kind, each kind in creation order."""
    import h5py  # noqa: PLC0415 - only the Keras loader needs it

    path = Path(h5_path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weight file {path} does not exist")
    kinds: dict[str, list[tuple[int, str, dict[str, np.ndarray]]]] = {}
    with h5py.File(path, "r") as f:
        # model.save() nests the weights under model_weights; model.save_weights() does not.
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(
                f"{path} is not a Keras 2 HDF5 weights file (no 'layer_names' attribute); "
                "Keras 3 '.weights.h5' files are not supported"
            )
        for layer in _decode(group.attrs["layer_names"]):
            weight_names = _decode(group[layer].attrs["weight_names"])
            if not weight_names:
                continue
            # 'conv2d_5/kernel:0' -> 'kernel'
            arrays = {w.split("/")[-1].split(":")[0]: np.asarray(group[layer][w]) for w in weight_names}
            kind, number = _layer_kind_and_number(layer)
            kinds.setdefault(kind, []).append((number, layer, arrays))
    # The file lists layers in Keras's topological order, which interleaves the inception branches;
    # creation order (the number in the name) is the order of the authors' code, and of ours.
    return {kind: [(name, arrays) for _, name, arrays in sorted(layers, key=lambda t: t[0])] for kind, layers in kinds.items()}


def _assign(param: torch.Tensor, array: np.ndarray, where: str) -> None:
    """Copy `array` into `param` in place, or raise naming both shapes."""
    if tuple(param.shape) != array.shape:
        raise ValueError(f"{where}: the file's array has shape {array.shape} (after conversion), the model expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(param.dtype))


def _take(arrays: dict[str, np.ndarray], key: str, where: str) -> np.ndarray:
    """arrays[key], or an error naming the layer and what it does hold."""
    if key not in arrays:
        raise ValueError(f"{where}: no '{key}' weight (it holds {sorted(arrays)})")
    return arrays[key]


def load_keras_weights(model: MesoNet, h5_path: str | Path) -> MesoNet:
    """Load the authors' Keras MesoNet weights (e.g. Meso4_DF.h5) into our Meso4 / MesoInception4, in place.

    The loaded model outputs the FAKE logit like every model of the study. The authors' sigmoid is
    P(REAL): their `example.py` reads test_images/{df,real} with flow_from_directory, which numbers
    classes alphabetically (df = 0, real = 1; their issue #9 shows a real face scoring 0.998). So the
    last Dense layer's weight and bias are negated here: our logit is minus theirs, and since
    sigmoid(-z) = 1 - sigmoid(z), our sigmoid is exactly 1 - their output. Callers must not flip again.
    """
    if not isinstance(model, MesoNet):
        raise TypeError(f"load_keras_weights needs a Meso4 or MesoInception4, got {type(model).__name__}")
    path = Path(h5_path)
    kinds = read_keras_weights(path)
    unknown = set(kinds) - {"conv2d", "batch_normalization", "dense"}
    if unknown:
        raise ValueError(f"{path}: layers of kinds {sorted(unknown)} have weights, but MesoNet has none of those")
    ours = {
        "conv2d": [m for m in model.modules() if isinstance(m, nn.Conv2d)],
        "batch_normalization": [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)],
        "dense": [m for m in model.modules() if isinstance(m, nn.Linear)],
    }
    for kind, modules in ours.items():
        found = len(kinds.get(kind, []))
        if found != len(modules):
            raise ValueError(
                f"{path} has {found} {kind} layers but {type(model).__name__} has {len(modules)}: "
                "is this the weight file of the other MesoNet variant?"
            )

    for module, (name, arrays) in zip(ours["conv2d"], kinds["conv2d"]):
        where = f"{path} layer {name}"
        # Keras stores kernels as (h, w, in, out); PyTorch wants (out, in, h, w). Both cross-correlate.
        _assign(module.weight, _take(arrays, "kernel", where).transpose(3, 2, 0, 1), where)
        _assign(module.bias, _take(arrays, "bias", where), where)

    for module, (name, arrays) in zip(ours["batch_normalization"], kinds["batch_normalization"]):
        where = f"{path} layer {name}"
        _assign(module.weight, _take(arrays, "gamma", where), where)
        _assign(module.bias, _take(arrays, "beta", where), where)
        _assign(module.running_mean, _take(arrays, "moving_mean", where), where)
        _assign(module.running_var, _take(arrays, "moving_variance", where), where)
        module.eps = KERAS_BN_EPS  # the file does not store epsilon; the authors used Keras's default

    channels, height, width = model.feature_shape
    for i, (module, (name, arrays)) in enumerate(zip(ours["dense"], kinds["dense"])):
        where = f"{path} layer {name}"
        kernel = _take(arrays, "kernel", where)
        if i == 0:
            if kernel.shape[0] != channels * height * width:
                # The four pools shrink the side 32-fold, so the file's flatten size gives its image size.
                side = round(math.sqrt(kernel.shape[0] / channels)) * 32
                raise ValueError(
                    f"{where}: the first Dense layer takes {kernel.shape[0]} features, but the model built for "
                    f"image_size {model.image_size} flattens {channels * height * width}; "
                    f"build it with image_size={side} (the authors used 256)"
                )
            # Keras flattened (H, W, C), PyTorch flattens (C, H, W): reorder the kernel's input rows.
            kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape[0], -1)
        bias = _take(arrays, "bias", where)
        if i == len(ours["dense"]) - 1:
            kernel, bias = -kernel, -bias  # their output unit is REAL; ours is FAKE (see the docstring)
        _assign(module.weight, kernel.T, where)
        _assign(module.bias, bias, where)
    return model

