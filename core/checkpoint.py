"""Opening pickled checkpoint and weight files safely: no code in a file runs unless the user trusts the file.

``torch.load(weights_only=True)`` only rebuilds tensors, containers and the classes allow-listed with
``torch.serialization.add_safe_globals``. The suite's checkpoints hold nothing else: tensors, plain values and
the plain-data classes marked ``@checkpoint_type`` (a task's ``BackboneConfig``...). Anything beyond that, a
foreign ``.pth`` that pickles a whole model, say, is refused with an error that names the file, what it would
build and the opt-in: ``trust=True``, ``--trust-checkpoint`` on the command line, or ``MOBILENETS_TRUST_CHECKPOINT=1``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "TRUST_ENV", "UntrustedFileError", "checkpoint_type", "load_torch_file", "read_checkpoint", "trusted",
    "unpickled_globals", "weights_only_for",
]

TRUST_ENV = "MOBILENETS_TRUST_CHECKPOINT"
_T = TypeVar("_T", bound=type)

#: Modules of checkpointed classes that moved: a checkpoint names its classes by module, so files written before
#: a move still load (the allow-list knows the old names, and a trusted unpickling finds the old module).
MOVED_MODULES = {"mobilenets.tasks.augmentation": "mobilenets.tasks.data.augmentation",
                 "mobilenets.distill.teachers": "mobilenets.tasks.distillation.teachers"}


class UntrustedFileError(pickle.UnpicklingError):
    """A pickled file needs code run to load it, and the user has not said they trust it."""


def checkpoint_type(cls: _T) -> _T:
    """Class decorator: allow a plain-data class of the suite inside checkpoints loaded with ``weights_only``."""
    import torch

    former = [f"{old}.{cls.__qualname__}" for old, new in MOVED_MODULES.items() if new == cls.__module__]
    torch.serialization.add_safe_globals([cls, *((cls, name) for name in former)])
    return cls


def _current_name(name: str) -> str:
    """A class's name as a checkpoint gives it, under the module it lives in now (``MOVED_MODULES``)."""
    module, _, qualname = name.rpartition(".")
    return f"{MOVED_MODULES[module]}.{qualname}" if module in MOVED_MODULES else name


def _alias_moved_modules(names: list[str]) -> None:
    """Let a trusted (full) unpickling find moved modules under the names the file gives them."""
    for name in names:
        module = name.rpartition(".")[0]
        if module in MOVED_MODULES and module not in sys.modules:
            sys.modules[module] = importlib.import_module(MOVED_MODULES[module])


def trusted(trust: bool | None = None) -> bool:
    """``trust`` if given, else whether ``--trust-checkpoint`` / ``MOBILENETS_TRUST_CHECKPOINT=1`` is set."""
    return trust if trust is not None else os.environ.get(TRUST_ENV, "") == "1"


def _import_suite_types(names: list[str]) -> bool:
    """Import the suite modules that define the classes named, which registers them (``checkpoint_type``).
    Importing our own modules runs only our code; True if any of them was new."""
    imported = False
    for name in map(_current_name, names):
        module = name.rpartition(".")[0]
        if name.startswith("mobilenets.") and module and module not in sys.modules:
            importlib.import_module(module)
            imported = True
    return imported


def _refusal(path: Path, unsafe: list[str]) -> UntrustedFileError:
    return UntrustedFileError(
        f"{path}: loading it would run code it carries (it needs {', '.join(unsafe[:4]) or 'Python objects'}); "
        f"if you trust its source, pass --trust-checkpoint (trust=True, or {TRUST_ENV}=1)"
    )


def weights_only_for(path: str | Path, trust: bool | None = None) -> bool:
    """The ``weights_only`` to ``torch.load`` ``path`` with (True unless trusted), after checking, from the pickle
    alone, that a weights-only load can build everything it holds.

    Raises:
        UntrustedFileError: the file needs more than weights and the suite's own types, and is not trusted.
    """
    import torch

    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError, OSError):  # not a zip checkpoint (legacy format, damaged): torch.load will tell
        return not trusted(trust)
    if trusted(trust):
        _alias_moved_modules(unsafe)
        return False
    if unsafe and _import_suite_types(unsafe):
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise _refusal(Path(path), unsafe)
    return True


def unpickled_globals(path: str | Path) -> list[Any]:
    """The classes and functions a pickled file names, imported: for loading a *trusted* file where a library
    insists on ``weights_only=True`` (``torch.serialization.safe_globals(unpickled_globals(path))``)."""
    import torch

    found = []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        module, _, qualname = name.rpartition(".")
        while module and module not in sys.modules:  # "pkg.Class.method": walk up to the importable module
            try:
                importlib.import_module(module)
            except ImportError:
                module, _, outer = module.rpartition(".")
                qualname = f"{outer}.{qualname}"
        value: Any = sys.modules[module]
        for part in qualname.split("."):
            value = getattr(value, part)
        found.append(value)
    return found


def load_torch_file(path: str | Path, trust: bool | None = None) -> Any:
    """``torch.load`` a local file on the CPU, refusing to run the code a pickle may carry unless trusted.

    Raises:
        FileNotFoundError: no such file.
        UntrustedFileError: the file needs more than weights and the suite's own types, and is not trusted.
        ValueError: not a file ``torch.save`` wrote (a text file, a truncated download...).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    weights_only = weights_only_for(path, trust)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        if weights_only and "Weights only load failed" in str(error):  # a legacy (non-zip) pickle with code in it
            raise _refusal(path, []) from None
        raise ValueError(f"{path}: not a PyTorch checkpoint or weights file ({error})") from None
    except (RuntimeError, KeyError, EOFError, ValueError, OSError) as error:  # torch's errors for other kinds of file
        kind = type(error).__name__
        raise ValueError(f"{path}: not a PyTorch checkpoint or weights file ({kind}: {error})") from None


def read_checkpoint(path: str | Path, trust: bool | None = None) -> dict[str, Any]:
    """A checkpoint's dictionary (tensors on the CPU), loaded as ``load_torch_file`` does."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = load_torch_file(path, trust)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: not a checkpoint (it holds a {type(checkpoint).__name__}, not a dictionary)")
    return checkpoint
