"""Errors the suite raises about its users' input, importable without torch (the CLI turns them into one line)."""

__all__ = ["BadRecordError", "SettingError"]


class BadRecordError(ValueError):
    """A dataset record that cannot be used; the message names the file and the record."""


class SettingError(ValueError):
    """A setting that does not fit the data (a class count, a cell count); the message names the setting and the
    value that fits."""
