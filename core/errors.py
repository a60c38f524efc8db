"""The one home of the one-line errors every command prints: `one_line` turns an exception into
the line after "error: "."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An error for a command line's one line: its first, or for a DataLoader worker's error, which
    carries the worker's whole traceback, its last (the error itself)."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        return text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(exc).__name__
