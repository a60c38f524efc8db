"""Publish a trained checkpoint as the repository's pretrained model, in pretrained/:
tiny_efficientvit.pt (weights only: no optimiser or RNG state) and its verified ONNX export.

    python scripts/make_pretrained.py runs/pretrained-synth/last.pt [OUT_DIR=pretrained/]

`predict.py` and `evaluate.py` use these files when no model is named; `--init-from pretrained`
fine-tunes from the .pt. pretrained/README.md, which describes the model, is written by hand from
the measurements it cites.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from export_onnx import export_onnx  # noqa: E402
from inference import PRETRAINED_DIR  # noqa: E402
from models.card import ModelCard  # noqa: E402
from models.checkpoint import load_checkpoint, save_checkpoint, weights_only  # noqa: E402
from training.mlflow_log import LOCAL_PATHS  # noqa: E402  train_config's folders of the author's machine

PRETRAINED_MODEL = "tiny_efficientvit"


def shipped(state: dict, source: Path) -> dict:
    """What the pretrained .pt holds: the model card in full (fields older checkpoints kept only in
    train_config written out), the weights, and how it was trained without the author's folders;
    no optimiser, RNG or history (`weights_only`)."""
    card = ModelCard.from_checkpoint(state, source)
    if card.model_name != PRETRAINED_MODEL:
        raise ValueError(f"{source} holds {card.model_name!r}; the pretrained model is {PRETRAINED_MODEL}")
    kept = weights_only(state)
    if "train_config" in kept:
        kept["train_config"] = {**kept["train_config"], **dict.fromkeys(LOCAL_PATHS)}
    return {**kept, **card.to_checkpoint()}


def publish(source: Path, out: Path) -> list[Path]:
    """Write the weights-only .pt and its verified .onnx into `out`, both or neither: a failed
    export leaves the previous pair in place."""
    state = shipped(load_checkpoint(source), source)
    names = (f"{PRETRAINED_MODEL}.pt", f"{PRETRAINED_MODEL}.onnx")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        weights = save_checkpoint(state, Path(tmp) / names[0])
        export_onnx(weights, Path(tmp) / names[1], log=print)
        for name in names:
            os.replace(Path(tmp) / name, out / name)
    return [out / name for name in names]


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1]) if len(argv) == 2 else PRETRAINED_DIR
    try:
        paths = publish(source, out)
    except (ValueError, OSError) as e:  # CheckpointError, ExportError: one line naming the file
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path}: {path.stat().st_size / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
