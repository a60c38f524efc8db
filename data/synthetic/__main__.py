"""python -m data.synthetic: write synthetic eye frames as a dataset folder or a preview grid."""

import argparse
import math
import sys
from pathlib import Path

from cli import size_argument
from data.synthetic import STYLES, write_openeds, write_preview


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write synthetic near-infrared eye frames with OpenEDS-style labels.",
    )
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--out", type=Path, help="dataset folder to write (OpenEDS layout)")
    task.add_argument("--preview", type=Path, help="PNG grid of frames to write")
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
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            root = write_openeds(
                args.out,
                args.n,
                seed=args.seed,
                size=args.size,
                val_fraction=args.val_fraction,
                style=args.style,
                overwrite=args.overwrite,
            )
            print(f"wrote {args.n} frames in the OpenEDS layout to {root}")
        else:
            path = write_preview(args.preview, args.n, seed=args.seed, size=args.size, style=args.style)
            rows = math.ceil(args.n / 4)
            print(f"wrote a {rows}x{min(args.n, 4)} preview grid to {path}")
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:  # --out not empty (nothing written), or not writable: one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
