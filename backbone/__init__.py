"""The MobileNet v1 backbone: the network, its paper-exact size profile, and local weight loading. Names import on
first use (``mobilenets.core.lazy``), so the command's ``--help`` does not import torch."""

from mobilenets.core.lazy import lazy_exports

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
__getattr__ = lazy_exports(__name__, {
    "BackboneConfig": "config",
    "IMAGENET_MEAN": "mobilenet", "IMAGENET_STD": "mobilenet", "LAYERS": "mobilenet", "MobileNetV1": "mobilenet",
    "check_resolution": "mobilenet", "fold_batchnorm": "mobilenet",
    "ModelProfile": "profile", "profile_model": "profile",
    "convert_timm_state_dict": "weights", "load_backbone": "weights", "load_pretrained": "weights",
    "save_backbone": "weights",
})
