"""Reference pages generated from the code they describe: the command line from the ``mobilenets`` parsers, the
configs from the packaged YAML files. The docs build calls these, so the pages cannot drift from the code."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

from mobilenets.cli.main import LIGHTNING_SUBCOMMANDS, build_parser
from mobilenets.configs import CONFIG_DIR, available_configs

__all__ = ["cli_reference", "configs_reference"]

#: The width the help texts are wrapped at, so the page is the same wherever it is built.
HELP_WIDTH = "100"


def cli_reference() -> str:
    """Markdown: ``mobilenets --help``, then every suite subcommand's help (nested ones too), then Lightning's
    ``fit --help`` (validate, test and predict take the same options)."""
    with _help_width():
        parser = build_parser()
        lines = ["## mobilenets", "", _block(parser.format_help())]
        for name, subparser in _subcommands(parser):
            if name in LIGHTNING_SUBCOMMANDS:
                continue
            lines += [f"## mobilenets {name}", "", _block(subparser.format_help())]
        lines += ["## mobilenets fit, validate, test, predict", "",
                  "Lightning's subcommands, through `LightningCLI`. `--config` takes a file or a packaged config's name "
                  "(see [Configs](configs.md)); every option below can also be set in the config file.", "",
                  '??? note "mobilenets fit --help"', "", _block(_lightning_help("fit"), indent="    ")]
    return "\n".join(lines)


def configs_reference() -> str:
    """Markdown: every packaged config by folder, its opening comment as the description, the YAML folded."""
    lines = []
    folder = None
    for name in available_configs():
        if name.split("/")[0] != folder:
            folder = name.split("/")[0]
            lines += [f"## {folder}/", ""]
        text = (CONFIG_DIR / name).read_text(encoding="utf-8")
        comment = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        lines += [f"### {name}", "", " ".join(part for part in comment if part) or "(no description)", "",
                  f'??? example "{name}"', "", _block(text, language="yaml", indent="    ")]
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every subcommand's parser, depth first, named by its path (``weights convert``)."""
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                path = f"{prefix}{name}"
                found.append((path, subparser))
                found += _subcommands(subparser, f"{path} ")
    return found


def _lightning_help(subcommand: str) -> str:
    from mobilenets.cli.lightning import MobileNetsCLI

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
        MobileNetsCLI(args=[subcommand, "--help"])
    return output.getvalue()


@contextlib.contextmanager
def _help_width():
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _block(text: str, language: str = "text", indent: str = "") -> str:
    body = "\n".join(f"{indent}{line}".rstrip() for line in text.rstrip().splitlines())
    return f"{indent}```{language}\n{body}\n{indent}```\n"
