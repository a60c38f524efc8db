"""The one home of the one-line errors: the exceptions a command turns into its one line, each
message naming the file, value or flag concerned (ValueError's: what the input or the settings
cause; RuntimeError's: a run that cannot go on), and `one_line`, which gives that line. The module
that raises each imports it from here, so `from data import DataError` still works."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An error for a command line's one line: its first, or for a DataLoader worker's error, which
    carries the worker's whole traceback, its last (the error itself)."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        return text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(exc).__name__


class SettingError(ValueError):
    """A setting out of its bounds; `name` is the field, so a CLI can name its flag instead."""

    def __init__(self, owner: str, name: str, problem: str) -> None:
        super().__init__(f"{owner}.{name} {problem}")
        self.name, self.problem = name, problem


class DataError(ValueError):
    """A problem with the data; the message names the file (full path) or value concerned."""


class SelectionError(ValueError):
    """The frames cannot stand for the camera (too few confident, one short stretch); says why."""


class ModelFileError(ValueError):
    """A model file that cannot be used; the one-line message names the file."""


class CheckpointError(ModelFileError):
    """A checkpoint that is missing, unreadable or not one of ours; the message names the file."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and what is kept."""


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; the message names the URI."""


class InputError(ValueError):
    """An input that cannot be used at all; the message names it."""
