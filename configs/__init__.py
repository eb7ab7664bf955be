"""The suite's YAML configs, shipped as package data: ``paper/``, ``demo/``, ``distill/`` and ``recipes/``, and the
experiments ``mobilenets experiment`` runs (``experiments/``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR", "available_configs", "config_path"]

CONFIG_DIR = Path(__file__).resolve().parent


def available_configs() -> list[str]:
    """Every packaged config by name (``demo/dogs.yaml`` ...)."""
    return sorted(str(path.relative_to(CONFIG_DIR)) for path in CONFIG_DIR.glob("*/*.yaml"))


def config_path(name: str | Path) -> Path:
    """A config file: ``name`` itself when it is an existing path, else the packaged config of that name
    (``demo/dogs.yaml``, or ``configs/demo/dogs.yaml`` as the repository lays it out)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / Path(*[part for part in path.parts if part != "configs"] or ["."])
    if packaged.is_file() and packaged.suffix in (".yaml", ".yml"):
        return packaged
    raise FileNotFoundError(f"config not found: {name} is neither a file nor a packaged config; the packaged ones "
                            f"are {', '.join(available_configs())}")
