"""The docs cannot rot: every ``mobilenets`` command in a ``bash`` block of README.md and docs/ parses with the real
command line, every config they name exists, and every results table they insert is a valid results file."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from mobilenets.cli.main import LIGHTNING_SUBCOMMANDS, build_parser
from mobilenets.configs import config_path
from mobilenets.core.results import load_results, results_markdown

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w-]*)\s*$")
CONFIG = re.compile(r"\b(?:configs/)?(?:demo|paper|distill|experiments|recipes)/[\w.-]+\.ya?ml\b")
RESULTS = re.compile(r'\{\{ results\("(?P<file>[\w.-]+)", "(?P<key>[\w.-]+)"\) \}\}')


def bash_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(``page:line``, argv) of every ``mobilenets ...`` command in the page's ``bash`` blocks, with ``\\``
    continuations joined and comments dropped."""
    commands, language, pending, start = [], None, "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence["language"]
            continue
        if language not in ("bash", "sh", "shell"):
            continue
        if not pending:
            start = number
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        if words and words[0] == "mobilenets":
            commands.append((f"{page.relative_to(ROOT)}:{start}", words[1:]))
    return commands


COMMANDS = [command for page in PAGES for command in bash_commands(page)]


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 20, [where for where, _ in COMMANDS]
    assert any(argv[:1] == ["fit"] for _, argv in COMMANDS)


class _ParserBuilt(Exception):
    pass


@pytest.fixture(scope="module")
def lightning_parser():
    """``MobileNetsCLI`` and its parser, built once (seconds) and reused for every documented command (a tenth of
    a second each): the parser is caught as ``parse_arguments`` receives it."""
    from mobilenets.cli.lightning import MobileNetsCLI

    class Probe(MobileNetsCLI):
        def parse_arguments(self, parser, args):  # noqa: ANN001, ANN201
            Probe.built = (self, parser)
            raise _ParserBuilt

    with pytest.raises(_ParserBuilt):
        Probe(args=["fit"])
    return Probe.built


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(argv: list[str], lightning_parser):
    """Lightning's subcommands parse their config and overrides (``--print_config``, as ``MobileNetsCLI`` parses
    them); the suite's own parse with their argparse parser, which is what ``mobilenets`` does before running."""
    from mobilenets.cli.lightning import MobileNetsCLI, resolve_config_args

    argv = [arg for arg in argv if arg != "--trust-checkpoint"]
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS and not {"-h", "--help"} & set(argv):
        cli, parser = lightning_parser
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
            MobileNetsCLI.parse_arguments(cli, parser, [*resolve_config_args(argv), "--print_config"])
        assert done.value.code in (0, None), f"mobilenets {shlex.join(argv)}: {done.value.code}"
        return
    if {"-h", "--help"} & set(argv):
        argv = [arg for arg in argv if arg not in ("-h", "--help")]
        if not argv or argv[0] in LIGHTNING_SUBCOMMANDS:
            return
    args, unknown = build_parser().parse_known_args(argv)
    assert not unknown or getattr(args, "passes_overrides", False), f"unrecognized arguments: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_configs_named_in_the_docs_exist(page: Path):
    text = page.read_text(encoding="utf-8")
    missing = [name for name in sorted(set(CONFIG.findall(text))) if not _config_exists(name)]
    assert not missing, f"{page.relative_to(ROOT)} names configs that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_results_tables_in_the_docs_exist(page: Path):
    for match in RESULTS.finditer(page.read_text(encoding="utf-8")):
        assert "| --- |" not in results_markdown(ROOT / "results" / match["file"], match["key"])


def test_every_results_file_has_its_provenance():
    files = sorted((ROOT / "results").glob("*.json"))
    assert files
    for path in files:
        for key, table in load_results(path).items():
            assert table["command"].startswith("mobilenets"), f"{path.name} {key}: {table['command']}"
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", table["date"]), f"{path.name} {key}: {table['date']}"


def _config_exists(name: str) -> bool:
    try:
        config_path(name)
    except FileNotFoundError:
        return False
    return True


def test_the_readme_quotes_the_saved_demo_results():
    """The README's task table quotes the demo's saved results: every percentage in it is in results/demo.json."""
    saved = (ROOT / "results" / "demo.json").read_text(encoding="utf-8")
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and "`demo/" in line]
    quoted = [number for row in rows for number in re.findall(r"\d+\.\d%", row)]
    assert len(rows) == 6 and len(quoted) >= 6
    assert not [number for number in quoted if number not in saved]
