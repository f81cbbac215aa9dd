"""The study's classifiers: a from-scratch ViT, torchvision CNNs and MesoNet, all built by `build_model`."""
from .heads import LogitHead
from .mesonet import Meso4, MesoInception4, load_keras_weights
from .vit import VisionTransformer
from .zoo import MODEL_NAMES, PretrainedWeightsMissing, build_model, pretrained_weights_path

__all__ = [
    "MODEL_NAMES",
    "LogitHead",
    "Meso4",
    "MesoInception4",
    "PretrainedWeightsMissing",
    "VisionTransformer",
    "build_model",
    "load_keras_weights",
    "pretrained_weights_path",
]
