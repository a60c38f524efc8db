"""Train a candidate pretrained model, keeping every epoch's weights to choose from afterwards on
labelled real frames (scripts/pick_pretrained.py), never on the frames that give the final figure.

    OMP_NUM_THREADS=1 python scripts/train_pretrained.py --init-from pretrained --out-dir runs/pretrained-ms \
        [any train_efficientvit.py flag]
    OMP_NUM_THREADS=1 python scripts/train_pretrained.py --resume runs/pretrained-ms/last.pt --epochs 60

Runs `train_efficientvit.main` with the same flags; after each epoch's checkpoints are written it
copies last.pt to OUT_DIR/epochs/epoch-NNN.pt (weights only: no optimiser state).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from models.checkpoint import load_checkpoint, save_checkpoint, weights_only  # noqa: E402
from train_efficientvit import main, parse_args  # noqa: E402


def keep_epochs(out_dir: Path):
    """An on_epoch_end that copies each epoch's last.pt, weights only, into out_dir/epochs/."""

    def kept(epoch: int, metrics: dict) -> None:
        folder = out_dir / "epochs"
        folder.mkdir(exist_ok=True)
        save_checkpoint(weights_only(load_checkpoint(out_dir / "last.pt")), folder / f"epoch-{epoch:03d}.pt")
        print(f"kept {folder / f'epoch-{epoch:03d}.pt'} (val pupil IoU {metrics['val/pupil_iou']:.4f})")

    return kept


if __name__ == "__main__":
    config = parse_args()
    out_dir = config.out_dir or (config.resume and str(Path(config.resume).parent))
    if not out_dir:
        sys.exit("error: give --out-dir (or --resume), where the epochs are kept")
    summary = main(config, on_epoch_end=keep_epochs(Path(out_dir)))
    sys.exit(130 if summary["interrupted"] else 0)
