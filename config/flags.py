"""Command lines made from the config dataclasses (config/settings.py): argparse flags, and keyword
parameters for Modal's entrypoint; the argparse types, the `--checkpoint` flag and the deprecated
spellings and the one-line error message that every command line shares. Standard library only.

A field's flag is `--<name>` (dashed), or `--no-<name>` for a switch that defaults to on; nested
configs (TrainConfig.data, .augment, .preprocess) add their fields under their own names, so
`--img-size` sets `data.img_size`. Values given are kept by dotted path ("data.img_size") and
applied to a config with `Config.updated`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from config import MIN_SIZE, OnResume, SettingError, TrainConfig, base_type, is_config, type_hints


def parse_pair(text: str, kind: type = int) -> tuple:
    """'400x640' -> (400, 640), first value first."""
    try:
        a, b = (kind(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected two values like 400x640, got {text!r}") from None
    return a, b


def parse_size(text: str) -> tuple[int, int]:
    """'400x640' -> (400, 640), height first; at least MIN_SIZE a side."""
    try:
        h, w = parse_pair(text)
    except ValueError:
        raise ValueError(f"size must look like HxW, e.g. 400x640, got {text!r}") from None
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE}x{MIN_SIZE}, got {text!r}")
    return h, w


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse, which shows only an ArgumentTypeError's message."""

    @functools.wraps(parse)
    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapped


def _positive(kind: type) -> Callable[[str], Any]:
    noun = "integer" if kind is int else "number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"expected a positive {noun}, got {text!r}")
        return value

    return argument_type(parse)


def _between_0_and_1(*, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 <= value <= 1 if inclusive else 0 < value < 1):
            bounds = "from 0 to 1" if inclusive else "between 0 and 1"
            raise ValueError(f"expected a number {bounds}, got {text!r}")
        return value

    return argument_type(parse)


fraction_argument = _between_0_and_1(inclusive=False)  # --threshold
share_argument = _between_0_and_1(inclusive=True)  # --save-confidence


def _fps(text: str) -> float:
    """A frame rate from 0.1 to 10,000 per second: slower is no recording, faster no camera."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 10_000:
        raise ValueError(f"expected frames per second from 0.1 to 10000, got {text!r}")
    return value


fps_argument = argument_type(_fps)  # data.synthetic --fps (predict's comes from PupillometryConfig's bounds)
size_argument = argument_type(parse_size)  # --img-size, --size
positive_int_argument = _positive(int)  # --batch-size, frame counts


@dataclass(frozen=True)
class Flag:
    """One command-line flag of a config field; `path` is dotted for nested configs ("data.img_size")."""

    path: str
    field: dataclasses.Field
    hint: Any

    @property
    def key(self) -> str:
        """The flag's base name as an identifier: "img_size", "augment" (for --no-augment)."""
        return self.field.metadata.get("flag") or self.path.rpartition(".")[2]

    @property
    def name(self) -> str:
        flag = self.key.replace("_", "-")
        return f"--no-{flag}" if self.hint is bool and self.field.default is True else f"--{flag}"

    @property
    def on_resume(self) -> OnResume:
        return self.field.metadata.get("on_resume", "fixed")


def flags(cls: type, *, modal: bool = False, prefix: str = "") -> list[Flag]:
    """The command-line flags of a config class and its nested configs, in declaration order;
    `modal` leaves out the local-only ones."""
    found: list[Flag] = []
    for field in dataclasses.fields(cls):
        hint = base_type(type_hints(cls)[field.name])
        if is_config(hint):
            found += flags(hint, modal=modal, prefix=f"{prefix}{field.name}.")
        elif field.metadata.get("cli", True) and not (modal and field.metadata.get("local_only")):
            found.append(Flag(f"{prefix}{field.name}", field, hint))
    return found


def _parser_type(hint: Any) -> dict[str, Any]:
    if typing.get_origin(hint) is Literal:
        return {"choices": typing.get_args(hint), "metavar": "{" + ",".join(typing.get_args(hint)) + "}"}
    if typing.get_origin(hint) is tuple:
        kind = typing.get_args(hint)[0]
        return {"type": argument_type(functools.partial(parse_pair, kind=kind))}
    if hint is float:
        return {"type": argument_type(lambda text: float(text))}
    return {"type": hint}


def _default_text(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_settings(parser: argparse.ArgumentParser, cls: type) -> list[Flag]:
    """Add a flag per setting of `cls` (a group per nested config, titled by its field's help);
    returns them. Values not given are left out of the parsed namespace (argparse.SUPPRESS), so
    `given()` tells what the user asked for."""
    groups: dict[str, Any] = {}
    added = flags(cls)
    for flag in added:
        head = flag.path.rpartition(".")[0]
        if head not in groups:
            title = _nested_field(cls, head).metadata.get("help") if head else None
            groups[head] = parser.add_argument_group(title) if head else parser
        default = None if flag.field.default is dataclasses.MISSING else flag.field.default
        is_pair = typing.get_origin(flag.hint) is tuple
        metavar = ("HxW" if flag.path.endswith("size") else "AxB") if is_pair else flag.key.upper()
        kwargs: dict[str, Any] = {"dest": flag.path, "default": argparse.SUPPRESS, "metavar": metavar}
        help_text = flag.field.metadata.get("help", "")
        if flag.hint is bool:
            kwargs["action"] = "store_false" if flag.field.default is True else "store_true"
            del kwargs["metavar"]
            help_text = f"do not {help_text}" if flag.field.default is True else help_text
        else:
            kwargs.update(_parser_type(flag.hint))
            if default is not None and "(default" not in help_text:
                help_text += f" (default: {_default_text(default)})"
        if flag.on_resume == "kept":
            help_text += "; on --resume: the run's own unless given"
        groups[head].add_argument(flag.name, help=help_text.replace("%", "%%"), **kwargs)  # literal %
    return added


def _nested_field(cls: type, path: str) -> dataclasses.Field:
    """The dataclass field of a dotted path ("data" of TrainConfig: its `data` field)."""
    *parents, name = path.split(".")
    for part in parents:
        cls = base_type(type_hints(cls)[part])
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def given(namespace: argparse.Namespace, added: Sequence[Flag]) -> dict[str, Any]:
    """The settings given on the command line, by dotted path."""
    values = vars(namespace)
    return {flag.path: values[flag.path] for flag in added if flag.path in values}


def build(cls: type, values: Mapping[str, Any], added: Sequence[Flag], *, base: Any = None) -> Any:
    """`cls()` (or `base`) with `values` set; an out-of-bounds value is a ValueError naming its flag."""
    try:
        return (base if base is not None else cls()).updated(values)
    except SettingError as exc:
        flag = next((f.name for f in added if f.path.rpartition(".")[2] == exc.name), exc.name)
        raise ValueError(f"argument {flag}: {exc.problem}") from None


def train_config(
    values: Mapping[str, Any], added: Sequence[Flag], defaults: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The TrainConfig of the settings given on a command line (dotted paths -> values).

    With --resume the run's stored settings win: "fixed" ones may not be given, "kept" ones not
    given stay None (the run's own, filled in by training). With --init-from the model and its
    preprocessing are the checkpoint's: no --model means None here, preprocessing flags are refused.
    """
    if values.get("resume"):
        fixed = [f.name for f in added if f.path in values and f.on_resume == "fixed" and f.path != "resume"]
        if fixed:
            raise ValueError(f"--resume continues a run with its stored settings; drop {', '.join(fixed)}")
        kept = {
            f.name: None for f in dataclasses.fields(TrainConfig) if f.metadata.get("on_resume") == "kept"
        }
        return build(TrainConfig, values, added, base=TrainConfig(**kept, model=None))
    base = TrainConfig().updated(defaults or {})
    if values.get("init_from"):
        preprocessing = [f.name for f in added if f.path in values and f.path.startswith("preprocess.")]
        if preprocessing:
            raise ValueError(
                f"--init-from keeps its checkpoint's preprocessing; drop {', '.join(preprocessing)}"
            )
        base = base if "model" in values else base.replace(model=None)
    return build(TrainConfig, values, added, base=base)


KEYWORD = inspect.Parameter.KEYWORD_ONLY


def keyword_parameters(
    added: Sequence[Flag], *, extra: Mapping[str, str] | None = None
) -> list[inspect.Parameter]:
    """The flags as keyword parameters defaulting to None (not given), annotated with plain types
    (str for a pair such as "400x640"), for command lines made from a function signature (Modal's);
    `extra` adds string options with their defaults."""
    parameters = []
    for flag in added:
        kind = typing.get_origin(flag.hint)
        annotation = str if kind is tuple else flag.hint if kind is Literal else flag.hint | None  # Modal's
        parameters.append(inspect.Parameter(flag.key, KEYWORD, default=None, annotation=annotation))
    for name, default in (extra or {}).items():
        parameters.append(inspect.Parameter(name, KEYWORD, default=default, annotation=str))
    return parameters


def keyword_values(keywords: Mapping[str, Any], added: Sequence[Flag]) -> dict[str, Any]:
    """Keyword arguments named as in `keyword_parameters` -> the settings given (not None) by dotted
    path, pairs parsed."""
    values = {}
    for flag in added:
        if keywords.get(flag.key) is not None:
            value = keywords[flag.key]
            if typing.get_origin(flag.hint) is tuple and isinstance(value, str):
                try:
                    value = parse_pair(value, typing.get_args(flag.hint)[0])
                except ValueError as exc:
                    raise ValueError(f"argument {flag.name}: {exc}") from None
            values[flag.path] = value
    return values


def run_size_argument(text: str) -> str | tuple[int, int]:
    """--img-size of predict and evaluate: "auto", "native" or HxW."""
    named = text.strip().lower()
    return named if named in ("auto", "native") else parse_size(text)


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """--img-size auto|HxW and --raw-mask, as predict.py and evaluate.py take them."""
    parser.add_argument(
        "--img-size",
        type=argument_type(run_size_argument),
        metavar="auto|native|HxW",
        help="auto: each frame in its own shape at the scale the model was trained at; native: at its "
        "own pixels (both for a .pt checkpoint or a cpu-profile ONNX export); HxW: fitted into it "
        "(default: auto where the model takes any size, else its own)",
    )
    parser.add_argument(
        "--raw-mask",
        action="store_true",
        help="keep every pixel above the threshold, not the pupil's blob alone",
    )


def add_checkpoint_argument(
    parser: argparse.ArgumentParser,
    *,
    convert: Callable[[str], Any],
    default: str | None = None,
    help: str = "a .pt checkpoint or a .onnx export",
) -> argparse.Action:
    """--checkpoint FILE, the model file a command runs, turned into a path by `convert` (such as
    `inference.model_file`, which also takes "pretrained"); required without a `default`. Returns
    its action, for `deprecated_alias`."""
    if default is not None:
        help += " (default: %(default)s)"
    return parser.add_argument(
        "--checkpoint", type=convert, default=default, required=default is None, metavar="FILE", help=help
    )


class _DeprecatedAlias(argparse.Action):
    """An old spelling of another flag: it does what that flag does, and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, target: argparse.Action, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.target = target
        self.new = next((s for s in target.option_strings if s.startswith("--")), target.option_strings[0])

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        print(f"{option_string} is deprecated, use {self.new}", file=sys.stderr)
        self.target(parser, namespace, values, self.new)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, target: argparse.Action) -> argparse.Action:
    """Keep `old` working as a spelling of the flag `target` (what `add_argument` returned): same
    value, same destination, a one-line note on stderr to use the new name. It stays out of --help;
    the target's help names it."""
    if target.required or not target.option_strings:
        raise ValueError(f"{old}: only an optional flag can have a deprecated alias, not {target.dest}")
    if target.help not in (None, argparse.SUPPRESS):
        target.help += f"; {old} is its deprecated spelling"
    return parser.add_argument(
        old,
        action=_DeprecatedAlias,
        target=target,
        dest=target.dest,
        nargs=target.nargs,
        const=target.const,
        type=target.type,
        choices=target.choices,
        metavar=target.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
