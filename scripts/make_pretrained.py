"""Publish a trained checkpoint as the repository's pretrained model, in pretrained/:
tiny_efficientvit.pt (weights only: no optimiser or RNG state) and its verified ONNX export.

    python scripts/make_pretrained.py runs/pretrained-synth/last.pt [OUT_DIR=pretrained/]

`predict.py` and `evaluate.py` use these files when no model is named; `--init-from pretrained`
fine-tunes from the .pt. The model card (pretrained/README.md) is written by hand from the
measurements it cites.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from export_onnx import export_onnx  # noqa: E402
from inference import PRETRAINED_DIR  # noqa: E402
from models.checkpoint import load_checkpoint, save_checkpoint, weights_only  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1]) if len(argv) == 2 else PRETRAINED_DIR
    state = load_checkpoint(source)
    if state["model_name"] != "tiny_efficientvit":
        print(f"error: {source} holds {state['model_name']!r}; the pretrained model is tiny_efficientvit")
        return 1
    weights = save_checkpoint(weights_only(state), out / "tiny_efficientvit.pt")
    report = export_onnx(weights, out / "tiny_efficientvit.onnx", log=print)
    for path in (weights, report.fp32.path):
        print(f"{path}: {path.stat().st_size / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
