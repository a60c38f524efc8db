"""Dataset folders: reading eye images and pupil labels, pairing them by file stem.

Two layouts, per split folder (`train`, `validation` or its alias `val`, `test`):

    ROOT/<split>/images/<stem>.png  +  ROOT/<split>/labels/<stem>.npy   OpenEDS 2019, labels 0..3
    ROOT/<split>/images/<stem>.png  +  ROOT/<split>/masks/<stem>.png    pupil masks, nonzero = pupil

OpenEDS classes are 0 background, 1 sclera, 2 iris, 3 pupil; the task is binary, pupil vs the
rest. Every problem raises DataError with a one-line message that starts with the path concerned.
"""

import csv
import errno
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np

from core.errors import DataError
from core.runfolder import write_bytes, write_text

OPENEDS_PUPIL = 3
OPENEDS_CLASSES = 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp")  # lossless only: a JPEG mask has speckle around the pupil

Layout = Literal["openeds", "masks"]
Split = Literal["train", "validation", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
_SPLIT_FOLDERS = {
    "train": ("train",),
    "validation": ("validation", "val"),
    "val": ("validation", "val"),
    "test": ("test",),
}
_LABEL_FOLDERS: dict[Layout, tuple[str, tuple[str, ...]]] = {
    "openeds": ("labels", (".npy",)),
    "masks": ("masks", MASK_SUFFIXES),
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every complete PNG


@dataclass(frozen=True)
class Sample:
    """One training pair: an eye image and its label (OpenEDS .npy or pupil mask image)."""

    image: Path
    label: Path


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)  # unlike cv2.imread, works with any unicode path
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    return data


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    # libpng may hand back a partial image for a cut-off file; a complete PNG ends with IEND
    if data[:8].tobytes() == _PNG_SIGNATURE and data[-8:].tobytes() != _PNG_END:
        raise DataError(f"{path}: truncated PNG (no IEND chunk at the end)")
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error:
        image = None
    if image is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    return image


SENSOR_BITS = (8, 10, 12, 14, 16)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by the sensor's bit depth: 10-, 12- and 16-bit data all span ~0..255.

    The depth is the smallest common sensor depth holding the brightest pixel; in an infrared eye
    image that is a corneal glint near full scale, so every frame of a camera gets the same shift.
    """
    if image.dtype != np.uint16:
        return image
    used = int(image.max()).bit_length()
    depth = next(bits for bits in SENSOR_BITS if bits >= used)
    return (image >> (depth - 8)).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an eye image to (H, W) uint8 grayscale; colour is converted, 16-bit scaled to 8."""
    # IMREAD_GRAYSCALE would keep the high byte only: 12-bit data in a 16-bit PNG came out black
    return to_uint8(_decode(Path(path).absolute(), cv2.IMREAD_ANYDEPTH))


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Encode `image` at `path`: PNG, or JPEG (quality 85) for a .jpg / .jpeg path; any unicode
    path; whole or not at all (`core.runfolder.write_bytes`: a full disk is an OSError naming it)."""
    path = Path(path)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    ok, data = cv2.imencode(".jpg" if jpeg else ".png", image, [cv2.IMWRITE_JPEG_QUALITY, 85] if jpeg else [])
    if not ok:
        raise OSError(f"{path}: {'JPEG' if jpeg else 'PNG'} encoding failed")
    return write_bytes(path, data.tobytes())  # unlike cv2.imwrite, any unicode path


def natural_key(path: Path) -> tuple:
    """A file name's sort key with its runs of digits as numbers: frame_2 before frame_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_images(folder: Path) -> list[Path]:
    """The images directly inside `folder` (IMAGE_SUFFIXES, no hidden files), in natural name
    order (`natural_key`): a recording's frame_9 comes before its frame_10."""
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=natural_key,
    )


def broken_links(folder: Path) -> list[tuple[Path, str]]:
    """The links among `folder`'s images that lead nowhere, each with why: the target is gone, or
    it leads back to itself (a symlink loop). `list_images` passes over them; callers name them."""
    broken = []
    for path in sorted(folder.iterdir(), key=natural_key):
        hidden = path.name.startswith(".")  # as list_images: an editor's lock link is no frame
        if path.suffix.lower() in IMAGE_SUFFIXES and not hidden and path.is_symlink() and not path.exists():
            try:
                path.resolve(strict=True)
                loop = False
            except RuntimeError:  # Python 3.11's resolve(strict=True) of a loop
                loop = True
            except OSError as exc:
                loop = exc.errno == errno.ELOOP
            why = "a symlink loop (a link that leads back to itself)" if loop else "its target is gone"
            broken.append((path, why))
    return broken


def output_names(files: list[Path]) -> list[str]:
    """Output name per file: its stem, or, when any two stems clash, every file's full name."""
    stems = Counter(p.stem.lower() for p in files)  # a.png and A.jpg collide on some file systems
    # full names are unique in a folder; mixing them with stems is not (a.png.png's stem is a.png)
    return [p.stem for p in files] if max(stems.values(), default=1) == 1 else [p.name for p in files]


def _read_openeds_label(path: Path) -> np.ndarray:
    try:
        label = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(label, np.ndarray) or label.ndim != 2:
        shape = getattr(label, "shape", type(label).__name__)
        raise DataError(f"{path}: label has shape {shape}, expected (H, W)")
    if label.dtype.kind not in "biu":
        raise DataError(f"{path}: label dtype {label.dtype}, expected integers 0..3")
    if label.min() < 0 or label.max() >= OPENEDS_CLASSES:
        bad = np.unique(label[(label < 0) | (label >= OPENEDS_CLASSES)])
        raise DataError(f"{path}: label values {bad[:8].tolist()} outside 0..3")
    return label.astype(np.uint8, copy=False)


def label_layout(path: str | Path) -> Layout:
    """The layout a label file belongs to, from its suffix."""
    return "openeds" if Path(path).suffix.lower() == ".npy" else "masks"


def read_raw_label(path: str | Path) -> np.ndarray:
    """(H, W) label values as stored: OpenEDS .npy checked to be 0..3 (uint8); masks as decoded."""
    path = Path(path).absolute()
    if label_layout(path) == "openeds":
        return _read_openeds_label(path)
    mask = _decode(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:  # colour mask: any nonzero colour channel counts, alpha does not
        mask = mask[..., :3].max(axis=2)
    return mask


def to_pupil(raw: np.ndarray, layout: Layout) -> np.ndarray:
    """Map raw label values to the (H, W) uint8 {0, 1} pupil mask."""
    pupil = raw == OPENEDS_PUPIL if layout == "openeds" else raw != 0
    return pupil.astype(np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """(H, W) uint8 pupil mask in {0, 1}: OpenEDS class 3, or any nonzero pixel of a mask image."""
    return to_pupil(read_raw_label(path), label_layout(path))


def check_shapes(sample: Sample, image: np.ndarray, label: np.ndarray) -> None:
    """DataError naming both files unless image and label have the same (H, W)."""
    if image.shape != label.shape:
        raise DataError(
            f"{sample.label}: label shape {label.shape} does not match "
            f"image {sample.image} of shape {image.shape}"
        )


def read_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Image and pupil mask of one sample, checked to have the same shape."""
    image, label = read_image(sample.image), read_label(sample.label)
    check_shapes(sample, image, label)
    return image, label


@dataclass(frozen=True)
class SplitFiles:
    """What one split folder holds: matched pairs and the files left without a partner."""

    folder: Path
    layout: Layout
    label_folder: Path
    pairs: list[Sample]
    images_without_label: list[Path]
    labels_without_image: list[Path]


def is_folder(path: Path) -> bool:
    """Whether `path` is a folder (links followed); a symlink loop is a DataError naming it."""
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:  # Path.is_dir says False, Path.resolve raises RuntimeError
            raise DataError(
                f"{path}: a symlink loop (a link that leads back to itself), not a folder"
            ) from None
    return path.is_dir()


def dataset_root(root: str | Path) -> Path:
    """`root` made absolute; a DataError naming it unless it is a folder (missing, a symlink loop)."""
    root = Path(root).absolute()
    if not is_folder(root):
        raise DataError(f"{root}: dataset root not found")
    return root


def split_folder(root: str | Path, split: Split) -> Path | None:
    """The folder of `split` under `root`, or None when it has none (`val` = `validation`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    found = [Path(root).absolute() / n for n in _SPLIT_FOLDERS[split]]
    found = [f for f in found if is_folder(f)]
    if len(found) > 1:
        raise DataError(f"{found[0]} and {found[1]}: both exist, keep one of them")
    return found[0] if found else None


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f"{path}: same stem as {files[path.stem]}, keep one of them")
        files[path.stem] = path
    return files


def scan_split(root: str | Path, split: Split) -> SplitFiles:
    """Find the layout and pair images with labels by stem; a missing folder is a DataError."""
    root = dataset_root(root)
    folder = split_folder(root, split)
    if folder is None:
        names = " or ".join(_SPLIT_FOLDERS[split])
        raise DataError(f"{root}: no {names} folder (expected {root / names.split()[0]}/images)")
    if not is_folder(folder / "images"):
        raise DataError(f"{folder}: no images/ folder")
    layouts = [lay for lay, (name, _) in _LABEL_FOLDERS.items() if is_folder(folder / name)]
    if len(layouts) != 1:
        problem = "both labels/ and masks/" if layouts else "no labels/ (OpenEDS .npy) or masks/"
        raise DataError(f"{folder}: {problem} folder, expected exactly one")
    layout = layouts[0]
    label_name, label_suffixes = _LABEL_FOLDERS[layout]
    images = _files_by_stem(folder / "images", IMAGE_SUFFIXES)
    labels = _files_by_stem(folder / label_name, label_suffixes)
    if not images:
        raise DataError(f"{folder / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return SplitFiles(
        folder=folder,
        layout=layout,
        label_folder=folder / label_name,
        pairs=[Sample(images[s], labels[s]) for s in sorted(images.keys() & labels.keys())],
        images_without_label=[images[s] for s in sorted(images.keys() - labels.keys())],
        labels_without_image=[labels[s] for s in sorted(labels.keys() - images.keys())],
    )


def _describe_unmatched(paths: list[Path], problem: str) -> str:
    """'/full/a.png (+ b.png, c.png and 7 more): <problem>': the first file in full, then a few."""
    names = [p.name for p in paths[1:3]]
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    others = f" (+ {', '.join(names)}{more})" if names else ""
    return f"{paths[0]}{others}: {problem}"


def find_pairs(root: str | Path, split: Split) -> list[Sample]:
    """All (image, label) pairs of one split, sorted by stem; any unmatched file is a DataError."""
    files = scan_split(root, split)
    problems = []
    if files.images_without_label:
        problem = f"no label in {files.label_folder}"
        lossy = [p for p in files.label_folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
        if files.layout == "masks" and lossy:  # there, but not taken
            problem += (
                f" ({lossy[0].name} and {len(lossy) - 1} more are JPEG: masks must be PNG or BMP, since "
                "JPEG's compression speckles the pupil's edge; save them losslessly)"
                if len(lossy) > 1
                else f" ({lossy[0].name} is a JPEG: masks must be PNG or BMP, since JPEG's compression "
                "speckles the pupil's edge; save it losslessly)"
            )
        problems.append(_describe_unmatched(files.images_without_label, problem))
    if files.labels_without_image:
        problem = f"no image in {files.folder / 'images'}"
        problems.append(_describe_unmatched(files.labels_without_image, problem))
    if problems:
        raise DataError("; ".join(problems))
    return files.pairs


def new_folder(out: str | Path, *, overwrite: bool, flag: str | None = "--overwrite") -> Path:
    """The absolute folder `out`, refused (FileExistsError naming it) if it holds anything,
    unless `overwrite` (the message offers `flag`, when there is one); NotADirectoryError if it is
    a file."""
    root = Path(out).absolute()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a folder; give a new or empty folder")
    if root.is_dir() and not overwrite and any(root.iterdir()):
        offer = f", or {flag}" if flag else ""
        raise FileExistsError(f"{root}: folder is not empty; give a new or empty one{offer}")
    return root


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV file with a header of `columns` and a line per row (a row's other keys are left out);
    NaN is written as an empty field, other floats with at most 6 decimals (microseconds), bools as
    0 / 1. Written whole or not at all (`core.runfolder.write_text`)."""

    def field(value: Any) -> Any:
        if isinstance(value, bool | np.bool_):
            return int(value)
        if isinstance(value, float | np.floating):
            return "" if math.isnan(value) else round(float(value), 6)
        return value

    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows([field(row[c]) for c in columns] for row in rows)
    write_text(path, text.getvalue())
