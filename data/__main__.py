"""Dataset tools.

python -m data check DIR
    decode every file of DIR, print per-split statistics and every problem with its file;
    exit status 0 when the dataset is usable for training or for evaluation only (a test set
    without a train split), 1 when it is usable for neither or any file is broken; a DIR that is
    missing or a symlink loop is one error line
python -m data bench [--n 200] [--size 400x640]
    samples per second of the whole training pipeline (decode, augment, preprocess, loss
    targets) on one core, as one DataLoader worker runs it, for synthetic eyes and for a
    folder of synthetic frames written to a temporary directory
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from config.flags import size_argument
from data.augment import AugmentConfig
from data.check import check_dataset
from data.dataset import EyeDataset
from data.folders import DataError, dataset_root
from data.frames import folder_frames, synthetic_frames
from data.preprocess import PreprocessConfig
from data.synthetic import SyntheticEyes, write_openeds

TARGET = 60  # samples/s per worker: one or two workers keep a CPU run fed


def _rates(step: Callable[[int], object], n: int) -> tuple[float, float]:
    """(samples per CPU second, samples per wall-clock second) of n calls step(i).

    CPU time measures what one core delivers even while other processes share the machine;
    the wall clock is what this run got.
    """
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(n):
        step(index)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def _pipeline_rates(dataset: EyeDataset, n: int) -> tuple[float, float]:
    for index in range(min(3, len(dataset))):  # warm-up: lookup tables, noise field
        dataset[index]
    return _rates(lambda i: dataset[i % len(dataset)], n)


def bench(n: int = 200, size: tuple[int, int] = (400, 640), seed: int = 0) -> dict[str, tuple[float, float]]:
    """(CPU, wall) samples/s of the augmented training pipeline on one thread, per source, and
    of rendering synthetic frames alone."""
    cv2.setNumThreads(1)  # a DataLoader worker gets about one core
    torch.set_num_threads(1)
    preprocess_config, augment_config = PreprocessConfig(), AugmentConfig()
    rates = {"render": _rates(SyntheticEyes(n, seed, size).render, n)}
    synthetic = EyeDataset(synthetic_frames(n, seed, size), size, preprocess_config, augment_config, seed)
    rates["synthetic"] = _pipeline_rates(synthetic, n)
    with tempfile.TemporaryDirectory(prefix="data-bench-") as tmp:
        write_openeds(tmp, n, seed=seed, size=size, val_fraction=0)
        folder = EyeDataset(folder_frames(tmp, "train"), size, preprocess_config, augment_config, seed)
        rates["folder"] = _pipeline_rates(folder, n)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a dataset folder for training or evaluation")
    check.add_argument("root", type=Path, help="dataset folder with train/, validation/, test/")
    timing = commands.add_parser("bench", help="samples/s of the training pipeline, one worker")
    timing.add_argument("--n", type=int, default=200, help="samples per source (default 200)")
    timing.add_argument(
        "--size", type=size_argument, default="400x640", help="frame size HxW (default 400x640)"
    )
    timing.add_argument("--seed", type=int, default=0, help="frames and augmentation (default 0)")
    args = parser.parse_args(argv)

    if args.command == "check":
        try:
            dataset_root(args.root)  # a missing folder or a symlink loop: one line, not a report
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        report = check_dataset(args.root)
        print(report.format())
        return 0 if report.usable_for else 1
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    rates = bench(args.n, args.size, args.seed)
    h, w = args.size
    print(f"training pipeline with augmentation, {w}x{h}, one worker (1 thread), {args.n} samples")
    print("                   samples/s per core (CPU time)   wall clock")
    for name, source in (("synthetic eyes", "synthetic"), ("OpenEDS folder", "folder")):
        cpu, wall = rates[source]
        print(f"  {name}:   {cpu:8.1f}                      {wall:8.1f}")
    print(f"  rendering alone: {1000 / rates['render'][0]:.2f} ms per synthetic frame (CPU time)")
    print(f"  a sample carries {5 * h * w / 1e6:.2f} MB to the training device (5 bytes a pixel)")
    slowest = min(rates["synthetic"][0], rates["folder"][0])
    print(f"target >= {TARGET} samples/s per worker: {'met' if slowest >= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
