"""The MobileNet v1 backbone: the network, its paper-exact size profile, and local weight loading."""

from mobilenets.backbone.config import BackboneConfig
from mobilenets.backbone.mobilenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS,
    MobileNetV1,
    check_resolution,
    fold_batchnorm,
)
from mobilenets.backbone.profile import ModelProfile, profile_model
from mobilenets.backbone.weights import convert_timm_state_dict, load_backbone, load_pretrained, save_backbone

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYERS",
    "BackboneConfig",
    "MobileNetV1",
    "ModelProfile",
    "check_resolution",
    "fold_batchnorm",
    "convert_timm_state_dict",
    "load_backbone",
    "load_pretrained",
    "profile_model",
    "save_backbone",
]
