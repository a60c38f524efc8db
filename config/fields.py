"""How a setting is declared and checked: `setting(...)` gives a dataclass field its default, help
text, bounds, flag name and what a resumed run does with it; `Config`, the base of every config
dataclass, checks the bounds on creation and has the one dict round trip (`to_dict` /
`from_dict`) by which configs are stored in checkpoints, ONNX metadata and MLflow. Standard
library only."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self

from core.errors import SettingError

# What a resumed run does with a setting: "fixed" keeps the run's value and refuses the flag;
# "kept" keeps the run's value unless the flag is given; "given" takes this command line's value;
# "moved" is fixed, but takes a new folder when the run's own is gone (train_efficientvit.settle).
OnResume = Literal["fixed", "kept", "given", "moved"]


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
    on_resume: OnResume = "fixed",
    local_only: bool = False,
    cli: bool = True,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
) -> Any:
    """A dataclass field with what the CLI and checks need in its metadata.

    flag: the name after `--` (default: the field's, dashed); a switch for a True default is
    `--no-<flag>`. local_only: not offered on Modal (paths of this machine). cli: False for
    settings kept out of the command line. Bounds apply to each element of a tuple and are
    checked whenever a config is made.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "on_resume": on_resume,
        "local_only": local_only,
        "cli": cli,
        "at_least": at_least,
        "above": above,
        "at_most": at_most,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(hint: Any) -> Any:
    """`int | None` -> int; other hints unchanged."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def is_config(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Config)


def _bound_error(field: dataclasses.Field, value: Any) -> str | None:
    meta = field.metadata
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):
            return f"must be finite, got {value}"
        if meta.get("at_least") is not None and item < meta["at_least"]:
            return f"must be >= {meta['at_least']:g}, got {value}"
        if meta.get("above") is not None and item <= meta["above"]:
            return f"must be > {meta['above']:g}, got {value}"
        if meta.get("at_most") is not None and item > meta["at_most"]:
            return f"must be <= {meta['at_most']:g}, got {value}"
    return None


class Config:
    """Base of every config dataclass: bounds checked on creation, one dict round trip.

    `to_dict` gives JSON types (tuples become lists, nested configs dicts); `from_dict` reads them
    back (older files' missing fields keep their defaults; unknown fields are a ValueError).
    """

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is not None and (problem := _bound_error(field, value)):
                raise SettingError(type(self).__name__, field.name, problem)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Config):
                return value.to_dict()
            return list(value) if isinstance(value, tuple) else value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        hints = type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(hints)}")

        def typed(name: str, value: Any) -> Any:
            hint = base_type(hints[name])
            if is_config(hint) and isinstance(value, Mapping):
                return hint.from_dict(value)
            return tuple(value) if isinstance(value, list) else value

        return cls(**{k: typed(k, v) for k, v in values.items()})

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def updated(self, values: Mapping[str, Any]) -> Self:
        """A copy with dotted paths set: {"lr": 3e-3, "data.img_size": (200, 320)}."""
        nested: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for path, value in values.items():
            head, _, rest = path.partition(".")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                top[head] = value
        for head, inner in nested.items():
            top[head] = getattr(self, head).updated(inner)
        return self.replace(**top)
