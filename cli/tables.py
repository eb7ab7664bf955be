"""The paper tables ``mobilenets profile`` prints, computed once per version of the code and then read from a
cache: computing them means importing torch and torchvision and building 27 models (about 6 s on 2 cores), while
they change only when the code or the library versions do.

The cache file's name is a hash of every source file of ``core``, ``backbone`` and each registered task package,
and of the installed torch and torchvision versions, so an edited file or another torch computes afresh. It lives
in ``$MOBILENETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mobilenets``, else ``~/.cache/mobilenets``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Iterable

from mobilenets.core.io import write_text
from mobilenets.core.tables import Table
from mobilenets.tasks.registry import TASKS

__all__ = ["cache_dir", "cache_key", "config_table", "paper_tables"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where computed tables are kept."""
    if os.environ.get("MOBILENETS_CACHE_DIR"):
        return Path(os.environ["MOBILENETS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mobilenets"


def _package_folders() -> list[Path]:
    """The folders of the packages whose code the tables depend on (found without importing them)."""
    names = ["mobilenets.core", "mobilenets.backbone", *(entry.package for entry in TASKS.values())]
    return [Path(location) for name in names for location in importlib.util.find_spec(name).submodule_search_locations]


def cache_key(folders: Iterable[Path], versions: Iterable[str]) -> str:
    """A hash of every ``.py`` file below ``folders`` (path and content) and of ``versions``."""
    digest = hashlib.sha256("\n".join(versions).encode())
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def paper_tables() -> list[Table]:
    """Every registered paper table, from the cache when this code has computed them before."""
    versions = [f"{name}=={importlib.metadata.version(name)}" for name in ("torch", "torchvision")]
    path = cache_dir() / f"profile-{cache_key(_package_folders(), versions)}.json"
    if path.is_file():
        return [Table(**table) for table in json.loads(path.read_text())]
    from mobilenets.backbone.profile import registered_tables
    from mobilenets.tasks.registry import import_tables

    import_tables()  # each task registers its paper table
    tables = [build() for build in registered_tables().values()]
    try:
        write_text(path, json.dumps([table.to_dict() for table in tables]))
    except OSError as error:  # a read-only home still prints the tables
        log.warning("could not cache the profile tables in %s: %s", path.parent, error)
    return tables


def config_table(config: str) -> Table:
    """MACs and parameters of a config's model (``BaseTask.profile_rows``), at the config's resolution."""
    from mobilenets.cli.lightning import MobileNetsCLI
    from mobilenets.configs import config_path
    from mobilenets.tasks.base import ModelNotBuiltError

    task = MobileNetsCLI(["--config", str(config_path(config))], run=False).model
    try:
        profiled = task.profile_rows()
    except ModelNotBuiltError as error:  # a model (or a head) whose size the config leaves to the data
        raise SystemExit(f"{config}: {error}") from None
    rows = [[name, round(macs / 1e6, 2), round(params / 1e6, 3)] for name, macs, params in profiled]
    return Table(key="config", title=f"{config} at {task.hparams.resolution} px", rows=rows,
                 columns=["model", "MACs (M)", "params (M)"])
