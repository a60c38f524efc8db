"""cli's helpers for every command line: the --checkpoint flag and deprecated old flag spellings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from config.flags import add_checkpoint_argument, deprecated_alias, fraction_argument


def shipped(name: str) -> Path:
    """A stand-in for `inference.model_file`: "pretrained" is a file of its own."""
    return Path("shipped.pt") if name == "pretrained" else Path(name)


def parser_with_output() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    deprecated_alias(parser, "--out", parser.add_argument("--output", type=Path, help="results folder"))
    return parser


def test_checkpoint_converts_its_default_and_what_is_given():
    parser = argparse.ArgumentParser()
    add_checkpoint_argument(parser, convert=shipped, default="pretrained")
    assert parser.parse_args([]).checkpoint == Path("shipped.pt")
    assert parser.parse_args(["--checkpoint", "pretrained"]).checkpoint == Path("shipped.pt")
    assert parser.parse_args(["--checkpoint", "runs/best.pt"]).checkpoint == Path("runs/best.pt")
    assert "(default: pretrained)" in parser.format_help()


def test_checkpoint_without_a_default_is_required(capsys):
    parser = argparse.ArgumentParser()
    add_checkpoint_argument(parser, convert=shipped)
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "the following arguments are required: --checkpoint" in capsys.readouterr().err


def test_the_old_spelling_still_works_and_says_it_is_deprecated(capsys):
    args = parser_with_output().parse_args(["--out", "eval"])
    assert args.output == Path("eval")  # converted by the new flag's type, under its name
    assert capsys.readouterr().err == "--out is deprecated, use --output\n"


def test_the_new_spelling_says_nothing_and_the_default_stays(capsys):
    parser = parser_with_output()
    assert parser.parse_args(["--output", "eval"]).output == Path("eval")
    assert parser.parse_args([]).output is None
    assert capsys.readouterr().err == ""


def test_the_alias_leaves_help_to_the_new_flag():
    text = parser_with_output().format_help()
    assert "--out OUT" not in text and "--out is its deprecated spelling" in text


def test_an_alias_does_what_its_flag_does_switches_included(capsys):
    parser = argparse.ArgumentParser()
    deprecated_alias(parser, "--flip", parser.add_argument("--tta", action="store_true"))
    assert parser.parse_args(["--flip"]).tta is True and parser.parse_args([]).tta is False
    assert capsys.readouterr().err == "--flip is deprecated, use --tta\n"


def test_an_alias_of_the_checkpoint_converts_like_it(capsys):
    parser = argparse.ArgumentParser()
    deprecated_alias(parser, "--model", add_checkpoint_argument(parser, convert=shipped, default="x.pt"))
    assert parser.parse_args(["--model", "pretrained"]).checkpoint == Path("shipped.pt")
    assert capsys.readouterr().err == "--model is deprecated, use --checkpoint\n"


def test_a_required_flag_cannot_have_an_alias():
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="--model: only an optional flag"):
        deprecated_alias(parser, "--model", add_checkpoint_argument(parser, convert=shipped))


@pytest.mark.parametrize("text", ["0", "1", "-0.2", "nan", "half"])
def test_a_fraction_is_strictly_between_0_and_1(text):
    assert fraction_argument("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match=f"between 0 and 1, got '{text}'"):
        fraction_argument(text)
