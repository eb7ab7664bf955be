"""Classes named in configs: a short name inside a module, or a full import path."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["resolve_class"]


def resolve_class(name: str, module: ModuleType | None = None) -> Any:
    """Find ``name`` in ``module`` (``"RMSprop"`` in ``torch.optim``) or import it from a dotted path
    (``"timm.optim.Lamb"``, ``"package.module:Class"``)."""
    if ":" in name or "." in name:
        module_path, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_path), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import {name!r}: {error}") from None
    if module is None:
        raise ValueError(f"{name!r} is not an import path such as 'package.module.Class'")
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{name!r} is not in {module.__name__}; give its name there or a full import path") from None
