"""Dict round trip for the frozen config dataclasses stored in checkpoints and ONNX metadata, and
the argparse types every command line uses: HxW sizes (`--img-size`, `--size`), positive counts."""

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Self


class DictConfig:
    """Mixin for a frozen dataclass: `to_dict()` gives JSON types, `from_dict()` reads them back.

    Tuples become lists on the way out and lists tuples on the way in, so a config survives
    `json.dumps` / `json.loads` unchanged. Fields missing from the dict keep their defaults
    (older checkpoints still load); unknown fields raise ValueError naming them.
    """

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def parse_size(text: str, minimum: int = 32) -> tuple[int, int]:
    """'400x640' -> (400, 640), height first; at least 32 a side, the models' smallest input."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HxW, e.g. 400x640, got {text!r}") from None
    if h < minimum or w < minimum:
        raise ValueError(f"size must be at least {minimum}x{minimum}, got {text!r}")
    return h, w


def size_argument(text: str) -> tuple[int, int]:
    """parse_size for argparse, which prints the message of an ArgumentTypeError only."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_argument(kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type: a positive, finite `kind` (int or float); the error repeats the text."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {noun}, got {text!r}")
        return value

    noun = "integer" if kind is int else "number"

    return parse


positive_int_argument = positive_argument(int)  # --batch-size, frame counts
