"""Score our model and peer pupil detectors side by side on the same frames, the same way.

    python scripts/peers.py --data-dir /data/eyes --out peers/            # every tool that loads
    python scripts/peers.py --data-dir /data/eyes --tools ours,pupil-labs --checkpoint best.onnx --limit 50

The peers get their own virtualenv, never requirements.txt. MEYElens and DeepVOG go in without
their dependencies (MEYElens's [pt] extra pins an older torch, DeepVOG asks for tensorflow-gpu,
which no longer installs); requirements-peers.txt brings what they import:

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install -r requirements.txt -r requirements-peers.txt
    .venv-peers/bin/pip install --no-deps meyelens-headless==2.0.2 deepvog==1.1.4

Tools (`--tools`; by default all, those that cannot load named with the reason): ours (a .pt or
.onnx run as predict.py runs it; ours-tta with flip TTA), pupil-labs (Pupil Labs 2D), meyelens
(MEYElens SegFormer), deepvog (DeepVOG U-Net), each with its default settings and shipped weights;
pure (PuRe) is not installable. Frames are read as evaluate.py reads them (`data.frames`). Each
tool gives a pupil mask (segmenters) or an ellipse (fitters, filled as its mask), scored alike:
pupil IoU summed over the set; the distance from its pupil centre (a mask's: the ellipse fitted to
its largest blob) to the label mask's centroid, a frame where it finds nothing a miss (infinite
error): median, share within 5 px, detection rate; ms per frame of its own call on one thread,
interleaved frame by frame, wall-clock and CPU; its weights file's size. `--out` gets results.json
and table.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # before numpy, torch and OpenCV load: every tool is timed on one thread
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's modules

import argparse
import contextlib
import functools
import importlib.metadata
import json
import math
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from config.flags import add_checkpoint_argument, deprecated_alias, positive_int_argument
from data.folders import SPLITS
from data.frames import folder_frames
from evaluation.metrics import (
    WITHIN_PX,
    located_error,
    located_median,
    located_share,
    mask_counts,
    set_metrics,
)
from inference import PUPIL_THRESHOLD, load_predictor, model_file, pupil_geometry

Ellipse = tuple[tuple[float, float], tuple[float, float], float]  # OpenCV's: centre, full axes, degrees
Output = np.ndarray | Ellipse | None  # a pupil mask, a fitted ellipse, or nothing found


def ellipse_mask(shape: tuple[int, int], ellipse: Ellipse) -> np.ndarray:
    """The (H, W) bool mask of the pixels whose centre lies inside an ellipse in OpenCV's form
    (cv2.ellipse would also fill every pixel its outline touches: a larger pupil)."""
    (cx, cy), (width, height), angle = ellipse
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    along, across = (xs - cx) * cos + (ys - cy) * sin, (ys - cy) * cos - (xs - cx) * sin
    return (2 * along / width) ** 2 + (2 * across / height) ** 2 <= 1


def tool_pupil(output: Output, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A tool's output as (pupil mask, pupil centre or None when it found nothing)."""
    if output is None:
        return np.zeros(shape, bool), None
    if isinstance(output, np.ndarray):
        mask = output.astype(bool)
        geometry = pupil_geometry(mask)
        return mask, (geometry["centre_x"], geometry["centre_y"]) if geometry["found"] else None
    return ellipse_mask(shape, output), output[0]


@dataclass(frozen=True)
class FrameScore:
    """One frame: pupil pixel counts (tp, fp, fn, tn) and centre error (inf: missed, nan: no pupil)."""

    counts: tuple[int, int, int, int]
    error: float


def score_frame(output: Output, truth: np.ndarray) -> FrameScore:
    """Score one tool output against the label's (H, W) pupil mask (nonzero = pupil)."""
    mask, centre = tool_pupil(output, truth.shape)
    return FrameScore(mask_counts(mask, truth), located_error(centre, truth))


def summarize(scores: Sequence[FrameScore], seconds: float, cpu_seconds: float) -> dict[str, Any]:
    """Set-level figures of one tool from its frames and the wall-clock and CPU time of its calls:
    the median error None when infinite (half or more missed) and, like the shares, without pupils.
    CPU time is the process's: on a busy machine it still tells the speed."""
    errors = np.array([s.error for s in scores if not math.isnan(s.error)], np.float64)
    return {
        "frames": len(scores),
        "frames_with_pupil": int(errors.size),
        "pupil_iou": set_metrics([s.counts for s in scores])["pupil_iou"],
        "median_centre_error_px": located_median(errors),
        "within_5px": located_share(errors),
        "detection_rate": float(np.isfinite(errors).mean()) if errors.size else None,
        "ms_per_frame": 1000 * seconds / len(scores),
        "cpu_ms_per_frame": 1000 * cpu_seconds / len(scores),
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per tool: a `summarize` dict plus `tool`, `model_bytes` and `params`."""
    lines = [
        "| tool | pupil IoU | median centre error (px) | within 5 px | detected "
        "| ms / frame, 1 thread: wall (CPU) | model size | parameters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        median, share, found = "n/a", "n/a", "n/a"
        if r["frames_with_pupil"]:
            median = "inf" if r["median_centre_error_px"] is None else f"{r['median_centre_error_px']:.2f}"
            share, found = f"{r['within_5px']:.1%}", f"{r['detection_rate']:.1%}"
        size = "n/a" if r["model_bytes"] is None else f"{r['model_bytes'] / 1e6:.2f} MB"
        params = "n/a" if r["params"] is None else f"{r['params']:,}"
        speed = f"{r['ms_per_frame']:.1f} ({r['cpu_ms_per_frame']:.1f})"
        cells = (r["tool"], f"{r['pupil_iou']:.4f}", median, share, found, speed, size, params)
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


class ToolUnavailable(RuntimeError):
    """A tool that cannot run here; the message says why."""


@dataclass(frozen=True)
class Tool:
    """A pupil detector: `detect` maps an (H, W) uint8 frame to its `Output`."""

    label: str
    detect: Callable[[np.ndarray], Output]
    model_bytes: int | None
    params: int | None


def ours(checkpoint: Path, tta: bool = False) -> Tool:
    """Our model (.pt or .onnx) as predict.py runs it, on one thread."""
    if not checkpoint.is_file():
        raise ToolUnavailable(f"model file not found: {checkpoint} (pass --checkpoint)")
    predictor = load_predictor(checkpoint, device="cpu", threads=1)

    def detect(image: np.ndarray) -> np.ndarray:
        return predictor.probabilities([image], tta=tta)[0] > PUPIL_THRESHOLD

    flip = ", flip TTA" if tta else ""
    label = f"ours: {predictor.card.model_name} ({checkpoint.name}, {predictor.backend}{flip})"
    return Tool(label, detect, predictor.file_bytes, predictor.card.num_params)


def peer_packages(*names: str) -> list[Any]:
    """The named packages imported, or ToolUnavailable saying which one is missing."""
    try:
        return [importlib.import_module(name) for name in names]
    except ImportError as e:
        raise ToolUnavailable(f"{e} (see requirements-peers.txt)") from None


def pupil_labs(checkpoint: Path) -> Tool:
    (pupil_detectors,) = peer_packages("pupil_detectors")
    detector = pupil_detectors.Detector2D()

    def detect(image: np.ndarray) -> Ellipse | None:
        found = detector.detect(np.ascontiguousarray(image))
        ellipse = found["ellipse"]
        if found["confidence"] <= 0 or min(ellipse["axes"]) <= 0:  # its "nothing found"
            return None
        return tuple(ellipse["center"]), tuple(ellipse["axes"]), ellipse["angle"]

    return Tool(f"Pupil Labs 2D (pupil-detectors {pupil_detectors.__version__})", detect, None, None)


def meyelens(checkpoint: Path) -> Tool:
    (meye,) = peer_packages("meyelens")
    with tempfile.TemporaryDirectory() as config:  # it writes a settings file; keep ~/.meyelens clean
        segmenter = meye.Meye(config_path=Path(config) / "meye.toml", gpu_device="cpu", verbose=False)
    segmenter.compute_features = False  # its own ellipse fit: the scorer fits every mask alike

    def detect(image: np.ndarray) -> np.ndarray:
        return segmenter.predict(image).masks["pupil"] > 0

    weights = Path(segmenter.model_path)
    params = sum(p.numel() for p in segmenter.model.parameters())
    return Tool(f"MEYElens {meye.__version__} ({weights.name})", detect, weights.stat().st_size, params)


def deepvog(checkpoint: Path) -> Tool:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    dv, tf = peer_packages("deepvog", "tensorflow")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    network = dv.load_DeepVOG()
    h, w = network.input_shape[1:3]  # 240 x 320, its camera's frames

    def detect(image: np.ndarray) -> np.ndarray:
        # its own preprocessing: stretched to its input size, [0, 1] grey in three channels
        x = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
        prob = network.predict_on_batch(np.repeat(x[None, :, :, None], 3, axis=3))[0, :, :, 1]  # 1: pupil
        return cv2.resize(prob, image.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0.5

    weights = Path(dv.__file__).parent / "model" / "DeepVOG_weights.h5"
    label = f"DeepVOG {importlib.metadata.version('deepvog')} ({weights.name}, TensorFlow {tf.__version__})"
    return Tool(label, detect, weights.stat().st_size, network.count_params())


TOOLS = {  # ours-tta: ours with horizontal-flip test-time augmentation, two passes per frame
    "ours": ours, "ours-tta": functools.partial(ours, tta=True), "pupil-labs": pupil_labs,
    "meyelens": meyelens, "deepvog": deepvog,
}  # fmt: skip
UNAVAILABLE = {"pure": "pupil-detectors 2.0.2 ships only Pupil Labs 2D; the package index has no PuRe"}
NAMES = (*TOOLS, *UNAVAILABLE)


def load_tools(names: Sequence[str], checkpoint: Path, log: Callable[[str], None]) -> tuple[dict, dict]:
    """(name -> Tool) for those that load, (name -> why not) for the others, in the order of NAMES;
    `checkpoint`: our model file (the peers bring their own)."""
    tools, missing = {}, {}
    # DeepVOG last: after TensorFlow's libraries, triton (torch loads it for MEYElens) crashes as it loads
    for name in sorted(set(names), key=NAMES.index):
        try:
            if name in UNAVAILABLE:
                raise ToolUnavailable(UNAVAILABLE[name])
            tools[name] = TOOLS[name](checkpoint)
        except ToolUnavailable as e:
            missing[name] = str(e)
            log(f"{name}: not run: {e}")
    return tools, missing


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and OpenCV on one thread inside, restored after (onnxruntime's, TensorFlow's: at load)."""
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def compare(
    data_dir: str | Path,
    split: str,
    names: Sequence[str],
    *,
    checkpoint: Path,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every named tool run on the split's first `limit` frames: its figures, or why it did not run."""
    load = os.getloadavg()[0]  # other work on the machine slows every tool
    frames = folder_frames(data_dir, split)
    count = min(len(frames), limit or len(frames))
    tools, missing = load_tools(names, checkpoint, log)
    log(f"{count} {split} frames of {Path(data_dir).absolute()}; tools: {', '.join(tools) or 'none'}")
    scores: dict[str, list[FrameScore]] = {name: [] for name in tools}
    seconds = {name: np.zeros(2) for name in tools}  # wall-clock, CPU
    with one_thread():
        for index in range(count):
            image, truth = frames.read(index)
            for name, tool in tools.items():
                if index == 0:
                    tool.detect(image)  # warm-up: first runs allocate
                tick = np.array([time.perf_counter(), time.process_time()])
                output = tool.detect(image)
                seconds[name] += [time.perf_counter(), time.process_time()] - tick
                scores[name].append(score_frame(output, truth))
    rows = [
        {"name": name, "tool": tool.label, "model_bytes": tool.model_bytes, "params": tool.params}
        | summarize(scores[name], *seconds[name])
        for name, tool in tools.items()
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} logical CPUs, load average {load:.1f} at the start"
    data = {"data_dir": str(Path(data_dir).absolute()), "split": split, "frames": count}
    return {"data": data, "machine": machine, "results": rows, "not_run": missing}


def report(result: dict[str, Any]) -> str:
    data = result["data"]
    lines = [
        f"Peers on {data['frames']} {data['split']} frames of {data['data_dir']} ({result['machine']}).",
        "",
        markdown_table(result["results"]),
        "",
        f"Pupil IoU: intersections / unions summed over the set. Centre error: the tool's pupil centre "
        f"(a mask's: the ellipse fitted to its largest blob) to the label mask's centroid; a frame where "
        f"it finds nothing is a miss (infinite error). Within {WITHIN_PX:g} px and detected: shares of "
        f"the frames with a pupil. ms / frame: the tool's own call on one thread, scoring excluded.",
    ]
    lines += [f"- not run: {name}: {why}" for name, why in result["not_run"].items()]
    return "\n".join(lines) + "\n"


def parse_tools(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in NAMES for n in names):
        raise argparse.ArgumentTypeError(f"tools must be among {', '.join(NAMES)}; got {text!r}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="dataset root (mask or OpenEDS layout)")
    parser.add_argument("--split", default="validation", choices=SPLITS, help="split (default: %(default)s)")
    parser.add_argument(
        "--tools", type=parse_tools, help=f"comma list among {','.join(NAMES)} (default: all)"
    )
    checkpoint = add_checkpoint_argument(
        parser, convert=model_file, default="pretrained", help="ours: a .pt or .onnx, or pretrained/'s"
    )
    deprecated_alias(parser, "--model", checkpoint)  # the old spelling: it goes in the next release
    parser.add_argument("--out", type=Path, help="folder for results.json and table.md (default: none)")
    parser.add_argument("--limit", type=positive_int_argument, help="first N frames only (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after the frames
        names = args.tools or NAMES
        result = compare(args.data_dir, args.split, names, checkpoint=args.checkpoint, limit=args.limit)
    except (ValueError, OSError) as e:  # DataError, ModelFileError, CheckpointError: one line each
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = report(result)
    print(text, end="")
    if args.out is not None:
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "table.md").write_text(text)
        print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'}")
    # tools asked for by name must all have run; by default, those that load are enough
    return 1 if args.tools and result["not_run"] else 0


if __name__ == "__main__":
    sys.exit(main())
