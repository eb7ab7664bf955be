"""Every package folder is installed: a new sub-package cannot be forgotten in pyproject.toml."""

import importlib
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_and_importable():
    config = _setuptools_config()
    folder_to_package = {folder: package for package, folder in config["package-dir"].items()}
    top_level = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert top_level == set(folder_to_package), "a top-level code folder is missing from [tool.setuptools.package-dir]"
    expected = set()
    for folder, package in folder_to_package.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join((package, *relative)))
    assert expected == set(config["packages"]), "pyproject.toml [tool.setuptools] packages is out of date"
    for name in expected:
        module = importlib.import_module(name)
        folder = folder_to_package_path(name, config["package-dir"])
        assert Path(module.__file__).resolve().parent == folder, f"{name} imports from {module.__file__}"


def folder_to_package_path(name: str, package_dir: dict) -> Path:
    for package, folder in package_dir.items():
        if name == package or name.startswith(package + "."):
            return (ROOT / folder / Path(*name[len(package):].split(".")[1:])).resolve()
    raise AssertionError(f"{name} is under no package-dir entry")
