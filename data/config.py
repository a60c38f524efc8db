"""Dict round trip for the frozen config dataclasses stored in checkpoints and ONNX metadata."""

from collections.abc import Mapping
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
