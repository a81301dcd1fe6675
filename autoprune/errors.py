"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class AutopruneError(Exception):
    """Bad input: the message names what was wrong and what would be right."""


class ConfigError(AutopruneError):
    """A config file (space, profile, plan) failed validation."""

    def __init__(self, *, file: str, key: str, value: object, expected: str) -> None:
        self.file, self.key, self.value, self.expected = file, key, value, expected
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {value!r} is not valid; {expected}")
