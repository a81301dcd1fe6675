"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class AutopruneError(Exception):
    """Bad input: the message names what was wrong and what would be right."""


def first_line(exc: BaseException) -> str:
    """The first line of a third-party error's message (its type's name when it has none), for a
    one-line ``AutopruneError`` that says why."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ConfigError(AutopruneError):
    """A config file (space, profile, plan) failed validation."""

    def __init__(self, *, file: str, key: str, value: object, expected: str) -> None:
        self.file, self.key, self.value, self.expected = file, key, value, expected
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {value!r} is not valid; {expected}")


class SearchInterrupted(Exception):
    """Ctrl-C during a search: what finished is written; ``search(resume=run_dir)`` continues."""

    def __init__(self, run_dir: Path, *, done: int, total: int, location: str | None = None) -> None:
        # location: where the run is kept (a URL), when that is not run_dir, its local copy
        self.location = str(run_dir) if location is None else location
        super().__init__(f"stopped after {done} of {total} trials; trials.csv and pareto.csv hold what finished. "
                         f"Continue with: autoprune search --resume {self.location}")
        self.run_dir = run_dir


class TrialsFailed(AutopruneError):
    """No trial of a search completed and some failed: the outputs are written (trials.csv names each cause), but
    there is no plan to apply. The CLI exits with code 1 (a run that did not work, not bad usage)."""

    exit_code = 1

    def __init__(self, run_dir: Path, *, failed: int, cause: str, location: str | None = None,
                 total: int | None = None) -> None:
        self.run_dir, self.location = run_dir, str(run_dir) if location is None else location
        # total > failed: the others were over budget (never fine-tuned) or stopped early, so none completed
        what = (f"all {failed} trial(s) failed" if total in (None, failed) else
                f"no trial completed ({failed} of {total} failed, the others were over budget or stopped early)")
        super().__init__(f"{what}, so there is no plan to apply; the most common cause: "
                         f"{cause}. {self.location}/trials.csv has each trial's error; fix the cause and search again")

