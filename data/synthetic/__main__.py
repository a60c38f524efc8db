"""python -m data.synthetic: write synthetic eye frames as a dataset folder or a preview grid, or
(--sequence N --out DIR) a video of one blinking eye with its ground truth; see data.synthetic."""

import argparse
import math
import sys
from pathlib import Path

from config.flags import fps_argument, size_argument
from data.synthetic import STYLES, write_openeds, write_sequence
from reports.gallery import write_synthetic_preview  # the one painter; this command sits above both


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write synthetic near-infrared eye frames with OpenEDS-style labels.",
    )
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--out", type=Path, help="dataset folder to write (OpenEDS layout)")
    task.add_argument("--preview", type=Path, help="PNG grid of frames to write")
    parser.add_argument(
        "--sequence",
        type=int,
        metavar="N",
        help="with --out: write an N-frame video of one blinking eye, eye.mp4, truth.csv and blinks.csv",
    )
    parser.add_argument(
        "--fps", type=fps_argument, default=30.0, help="frame rate of --sequence (default 30)"
    )
    parser.add_argument("--n", type=int, default=16, help="number of frames (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="frames are fixed by (seed, index) (default 0)")
    parser.add_argument(
        "--size", type=size_argument, default="400x640", help="frame size HxW (default 400x640)"
    )
    parser.add_argument(
        "--style",
        choices=STYLES,
        default="full",
        help="how widely frames vary: full (default) or one of its ablations",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of frames written to validation (default 0.2)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out folder that is not empty (default: refuse it)",
    )
    return parser


def write(args: argparse.Namespace) -> str:
    """What the command line asks for, written; the line saying so."""
    common = {"seed": args.seed, "size": args.size, "style": args.style}
    if args.sequence is not None:
        root = write_sequence(args.out, args.sequence, fps=args.fps, overwrite=args.overwrite, **common)
        return f"wrote a {args.sequence}-frame eye video, truth.csv and blinks.csv to {root}"
    if args.out is not None:
        fraction = args.val_fraction
        root = write_openeds(args.out, args.n, val_fraction=fraction, overwrite=args.overwrite, **common)
        return f"wrote {args.n} frames in the OpenEDS layout to {root}"
    path = write_synthetic_preview(args.preview, args.n, **common)
    return f"wrote a {math.ceil(args.n / 4)}x{min(args.n, 4)} preview grid to {path}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sequence is not None and args.out is None:
        parser.error("--sequence needs --out DIR")
    try:
        print(write(args))
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:  # --out not empty (nothing written), or not writable: one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
