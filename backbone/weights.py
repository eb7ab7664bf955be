"""Backbone weights from local files only: our checkpoints, any task's Lightning checkpoint, timm state dicts.

Nothing is downloaded: ``pretrained`` is always a path. Every format ends as our state dict, including the
``input_mean`` / ``input_std`` buffers, so the preprocessing a set of weights needs travels with it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from mobilenets.backbone.mobilenet import MobileNetV1
from mobilenets.core.io import replacing

__all__ = [
    "CHECKPOINT_FORMAT",
    "TIMM_MEAN",
    "TIMM_STD",
    "convert_timm_state_dict",
    "extract_backbone_state_dict",
    "load_backbone",
    "load_pretrained",
    "read_state_dict_file",
    "read_weights",
    "save_backbone",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mobilenets.backbone/1"
# timm's mobilenetv1_* ImageNet weights expect inputs scaled to [-1, 1].
TIMM_MEAN = (0.5, 0.5, 0.5)
TIMM_STD = (0.5, 0.5, 0.5)

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)$")
_TIMM_PARTS = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}
_TIMM_STEM = {"conv_stem": "features.layer0.conv", "bn1": "features.layer0.bn", "classifier": "classifier"}


def convert_timm_state_dict(
    state_dict: Mapping[str, Tensor], mean: tuple = TIMM_MEAN, std: tuple = TIMM_STD
) -> dict[str, Tensor]:
    """Rename a timm ``mobilenetv1_100`` / ``mobilenetv1_125`` state dict to ours.

    timm numbers its separable blocks by stage (``blocks.3.4``); ours use the paper's layer numbers,
    which are the blocks counted in order from 1.
    """
    blocks = sorted({(int(m[1]), int(m[2])) for key in state_dict if (m := _TIMM_BLOCK.match(key))})
    layer_of = {block: number for number, block in enumerate(blocks, start=1)}
    converted: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if match := _TIMM_BLOCK.match(key):
            stage, block, part, rest = match.groups()
            layer = layer_of[(int(stage), int(block))]
            converted[f"features.layer{layer}.{_TIMM_PARTS[part]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head in _TIMM_STEM:
            converted[f"{_TIMM_STEM[head]}.{rest}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not a timm MobileNet v1 state dict: unexpected keys {unknown[:10]}")
    reference = next(iter(converted.values()))
    converted["input_mean"] = torch.tensor(mean, dtype=reference.dtype).view(1, -1, 1, 1)
    converted["input_std"] = torch.tensor(std, dtype=reference.dtype).view(1, -1, 1, 1)
    return converted


def extract_backbone_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Take the backbone's entries out of a task's state dict (keys ``...backbone.<ours>``)."""
    extracted = {}
    for key, value in state_dict.items():
        prefix, found, rest = key.partition("backbone.")
        if found and (not prefix or prefix.endswith(".")):
            extracted[rest] = value
    return extracted


def read_state_dict_file(path: str | Path) -> Mapping[str, Any]:
    """The mapping stored in a local weights file (``.safetensors``, or a trusted pickled ``.pth``/``.ckpt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (weights must be a local file path)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(str(path))
    else:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a checkpoint or state dict, found {type(raw).__name__}")
    return raw


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """Read any supported weights file and return our backbone state dict (classifier included if present).

    Supported: ``save_backbone`` files, Lightning checkpoints of any task in this suite, plain state dicts
    of ours, and timm ``mobilenetv1_*`` weights (``.pth``/``.bin`` or ``.safetensors``). The files are
    trusted local files: ``.pth``/``.ckpt`` are unpickled.
    """
    path = Path(path)
    raw = read_state_dict_file(path)
    if raw.get("format") == CHECKPOINT_FORMAT:
        return dict(raw["state_dict"])
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):  # a Lightning checkpoint
        state_dict = extract_backbone_state_dict(raw["state_dict"])
        if not state_dict:
            raise ValueError(f"{path}: Lightning checkpoint has no 'backbone.' weights")
        return state_dict
    if "conv_stem.weight" in raw:
        try:
            return convert_timm_state_dict(raw)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if "features.layer0.conv.weight" in raw:
        return dict(raw)
    backbone = extract_backbone_state_dict(raw)
    if backbone:
        return backbone
    raise ValueError(f"{path}: unrecognised weights; keys start with {list(raw)[:5]}")


def load_pretrained(model: MobileNetV1, path: str | Path) -> None:
    """Load backbone weights from ``path`` into ``model``, ignoring a classifier that does not fit.

    Raises:
        ValueError: naming the file and listing missing, unexpected and mis-shaped keys, when the
            weights belong to a different architecture (other alpha, variant, ...).
    """
    state_dict = read_weights(path)
    own = model.state_dict()
    head_keys = [key for key in state_dict if key.startswith("classifier.")]
    head_fits = all(key in own and own[key].shape == state_dict[key].shape for key in head_keys)
    if head_keys and not head_fits:
        log.info("%s: ignoring the old classifier %s", path, head_keys)
        state_dict = {key: value for key, value in state_dict.items() if key not in head_keys}
    own_keys = {key for key in own if head_fits or not key.startswith("classifier.")}
    missing = sorted(own_keys - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(own_keys & set(state_dict))
        if state_dict[key].shape != own[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit this backbone (alpha={model.alpha}, layers {model.layer_numbers}):\n"
            f"  missing keys: {_first(missing)}\n  unexpected keys: {_first(unexpected)}\n"
            f"  shape mismatches: {_first(mismatched)}"
        )
    model.load_state_dict(state_dict, strict=False)


def _first(items: list[str], shown: int = 6) -> str:
    more = f" ... and {len(items) - shown} more" if len(items) > shown else ""
    return f"{items[:shown]}{more}"


def save_backbone(model: MobileNetV1, path: str | Path) -> None:
    """Save weights with the constructor arguments, so ``load_backbone`` rebuilds the model alone."""
    with replacing(path) as partial:
        torch.save({"format": CHECKPOINT_FORMAT, "config": dict(model.config), "state_dict": model.state_dict()},
                   partial)


def load_backbone(path: str | Path) -> MobileNetV1:
    """Rebuild a model saved by ``save_backbone``."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(raw, Mapping) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a file written by save_backbone (format {CHECKPOINT_FORMAT})")
    model = MobileNetV1(**raw["config"])
    model.load_state_dict(raw["state_dict"])
    return model
