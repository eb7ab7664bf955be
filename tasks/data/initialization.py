"""A task's starting weights from a file (``init_from``): a suite checkpoint's tensors by name, or a backbone
weights file into the task's backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mobilenets.core.errors import SettingError

__all__ = ["initialize_from"]


def _task_tensors(path: Path, own: dict[str, Any]) -> dict[str, Any] | None:
    """A Lightning checkpoint's tensors keyed as ``own``'s (a distiller's ``student.`` prefix taken off where that
    fits more of them); None when the file is not a Lightning checkpoint."""
    from mobilenets.core.checkpoint import load_torch_file

    try:
        raw = load_torch_file(path)
    except ValueError:  # TensorFlow, Keras, safetensors...: a backbone weights file
        return None
    if not (isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict) and "pytorch-lightning_version" in raw):
        return None
    tensors = raw["state_dict"]
    unprefixed = {key.removeprefix("student."): value for key, value in tensors.items()}
    return max(tensors, unprefixed, key=lambda candidate: len(set(candidate) & set(own)))


def initialize_from(task: nn.Module, path: str | Path, strict: bool = True) -> str:
    """Load the weights of ``path`` into ``task`` (its ``init_from``): a suite checkpoint's tensors by name, or a
    backbone weights file (any format ``backbone.pretrained`` reads) into the task's backbone. Returns the one
    line that says what was loaded and what was left as built.

    Raises:
        SettingError: ``strict`` and some tensor left unset or of another shape, or nothing fits at all.
    """
    from mobilenets.backbone.weights import read_weights

    path = Path(path)
    own = task.state_dict()
    source = _task_tensors(path, own)
    target = own
    if source is None:  # backbone weights: keyed as the backbone's own tensors, under the task's backbone
        prefix = next(name for name, module in task.named_modules() if module is task.backbone) + "."
        source = {prefix + key: value for key, value in read_weights(path).state_dict.items()}
        target = {key: value for key, value in own.items() if key.startswith(prefix)}
    fits = {key: value for key, value in source.items() if key in target and target[key].shape == value.shape}
    left = sorted(set(target) - set(fits))
    if not fits:
        raise SettingError(f"init_from {path}: none of its {len(source)} tensors fits this {type(task).__name__} "
                           f"(its keys start {sorted(source)[:2]}, the model's {sorted(target)[:2]})")
    if strict and left:
        raise SettingError(f"init_from {path}: {len(left)} of the model's {len(target)} tensors would stay as built "
                           f"(missing or of another shape in the file, e.g. {left[:3]}); set init_strict: false to "
                           f"load the {len(fits)} that fit")
    task.load_state_dict(fits, strict=False)
    parts = sorted({".".join(key.split(".")[:2]) for key in fits})
    return (f"init_from {path}: loaded {len(fits)} of {len(own)} tensors ({', '.join(parts)}); left as built: "
            f"{', '.join(left[:4]) + (f' and {len(left) - 4} more' if len(left) > 4 else '') if left else 'none'}")
