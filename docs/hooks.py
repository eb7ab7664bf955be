"""MkDocs hooks: the docs' measured tables come from results/, the command and config references from the parsers
and the packaged files, and the home page is README.md, so none of them can drift from what they describe."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = re.compile(r'\{\{ results\("(?P<file>[\w.-]+)", "(?P<key>[\w.-]+)"\) \}\}')
GENERATED = re.compile(r"\{\{ (?P<name>cli_reference|configs_reference|results_index|readme) \}\}")


API_SOURCE = "build/docs-api"  # mkdocs.yml's mkdocstrings paths
PACKAGES = ("core", "backbone", "tasks", "distill", "deploy", "cli")


def on_startup(command: str, dirty: bool) -> None:
    """Let mkdocstrings find ``mobilenets``: the code folders install under that name through setuptools'
    package-dir mapping, which griffe cannot follow, so a folder under build/ links them under it (made before
    any plugin reads its configuration)."""
    namespace = ROOT / API_SOURCE / "mobilenets"
    namespace.mkdir(parents=True, exist_ok=True)
    # a regular package there, or griffe takes the `mobilenets` console script for part of a namespace package
    (namespace / "__init__.py").write_text('"""MobileNets (Howard et al. 2017) and its applications."""\n')
    for package in PACKAGES:
        link = namespace / package
        if not link.is_symlink():
            link.symlink_to(ROOT / package, target_is_directory=True)


def readme() -> str:
    """README.md as the home page: its links into docs/ made relative to the site, `results/` to the results page."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.replace("](docs/", "](").replace("](results)", "](results.md)")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs' hook signature)
    from mobilenets.cli.reference import cli_reference, configs_reference
    from mobilenets.core.results import results_index, results_markdown

    def table(match: re.Match) -> str:
        return results_markdown(ROOT / "results" / match["file"], match["key"])

    generators = {"cli_reference": cli_reference, "configs_reference": configs_reference,
                  "results_index": lambda: results_index(ROOT / "results"), "readme": readme}
    markdown = RESULTS.sub(table, markdown)
    return GENERATED.sub(lambda match: generators[match["name"]](), markdown)
