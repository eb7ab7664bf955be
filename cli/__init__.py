"""The ``mobilenets`` command: Lightning's fit/validate/test/predict plus the suite's own subcommands, the demo and
the benchmark drivers. The top layer: it may import every other package; nothing imports it."""

from mobilenets.cli.main import main

__all__ = ["main"]
