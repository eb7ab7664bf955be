"""Optimizer parameter groups the paper's way: no weight decay on depthwise filters, BN or biases."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["RMSPROP_DEFAULTS", "parameter_groups"]

# The paper's RMSprop (TF's decay 0.9, momentum 0.9, epsilon 1.0), used unless the config says otherwise.
RMSPROP_DEFAULTS = {"alpha": 0.9, "momentum": 0.9, "eps": 1.0}


def _skips_weight_decay(module: nn.Module, param_name: str) -> bool:
    # The paper: little or no weight decay on depthwise filters; BN parameters and biases get none either.
    if isinstance(module, _BatchNorm) or param_name == "bias":
        return True
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def parameter_groups(
    model: nn.Module, backbone: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Split trainable parameters into (backbone | head) x (decay | no decay) optimizer groups."""
    backbone_ids = {id(p) for p in backbone.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                no_decay = _skips_weight_decay(module, name) or param.ndim == 0  # 0-d: learned loss weights
                key = (id(param) in backbone_ids, no_decay)
                groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": lr * (backbone_lr_mult if in_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": f"{'backbone' if in_backbone else 'head'}/{'no_decay' if no_decay else 'decay'}",
        }
        for (in_backbone, no_decay), params in sorted(groups.items())
    ]
