"""Every setting of the project in one place: a frozen dataclass per concern, each field with
what a command line needs to offer it (config/flags.py makes them). Standard library only, so
`modal_app.py` imports it without torch or numpy.

    TrainConfig          epochs, optimiser, schedule, run bookkeeping (train_efficientvit.py)
      DataConfig         which frames, at what size
      AugmentConfig      training augmentation (data.augment)
      PreprocessConfig   the one preprocessing (data.preprocess); travels with every model file
    ExportConfig         export_onnx.py
    AdaptConfig          adapt.py: pseudo-labels, fine-tuning rounds, guard rails
    PupillometryConfig   predict.py's time series (pupillometry.series)

Each field is declared with `setting(...)` (`config.fields`): its default, help text, bounds, flag
name and what a resumed training run does with it; `config/flags.py` makes the command lines from
that (the training CLI, Modal's entrypoint and export_onnx.py), and `to_dict` / `from_dict` are
the one way configs are stored in checkpoints, ONNX metadata and MLflow. To add a training
setting, add a field here: its flag, help, resume behaviour and Modal flag follow.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

from config.fields import Config, setting, type_hints
from core.errors import SettingError

MIN_SIZE = 32  # the smallest image side a model takes: stride 8 leaves 4 pixels
ModelName = Literal["tiny_efficientvit", "tiny_efficientvit_xs", "shallownet"]  # = models.MODELS
MODEL_NAMES: tuple[str, ...] = typing.get_args(ModelName)
CLASS_NAMES = ("background", "pupil")  # what every model predicts, in logit order
# data.synthetic.render.STYLES: the full randomisation, its ablations, and the first renderer's range
SyntheticStyle = Literal["full", "no-camera", "bright-iris", "fixed-framing", "small-glints", "narrow"]

# ---- the configs ----


@dataclass(frozen=True)
class PreprocessConfig(Config):
    """Preprocessing: gamma, CLAHE, normalisation (stored in every model file)."""

    gamma: float = setting(0.8, "gamma applied before CLAHE", above=0)
    clahe_clip: float = setting(1.5, "CLAHE clip limit", above=0)
    clahe_tiles: tuple[int, int] = setting((8, 8), "CLAHE tiles across x down", at_least=1)
    mean: float = setting(0.5, "normalisation mean, of x/255")
    std: float = setting(0.5, "normalisation std, of x/255", above=0)


@dataclass(frozen=True)
class AugmentConfig(Config):
    """Augmentation: of training frames (data.augment); pixel sizes are for a 640-px-wide frame."""

    enabled: bool = setting(True, "augment training frames", flag="augment")
    flip_p: float = setting(0.5, "horizontal flip", cli=False, at_least=0, at_most=1)
    line_p: float = setting(0.2, "bright lines (lash, reflection clutter)", cli=False, at_least=0, at_most=1)
    line_count: tuple[int, int] = setting((1, 9), "lines per frame, range", cli=False, at_least=1)
    line_width: float = setting(4.0, "line width, px", cli=False, at_least=0)
    line_near: float = setting(50.0, "one line end at most this far from the centre", cli=False, at_least=0)
    line_far: tuple[float, float] = setting((50.0, 200.0), "the other end's distance", cli=False, at_least=0)
    blur_p: float = setting(0.2, "Gaussian blur (7x7 kernel)", cli=False, at_least=0, at_most=1)
    blur_sigma: tuple[float, float] = setting((2.0, 6.0), "blur sigma range", cli=False, above=0)
    affine_p: float = setting(0.5, "small affine warp", cli=False, at_least=0, at_most=1)
    translate: float = setting(0.08, "warp shift, fraction of the side", cli=False, at_least=0)
    scale: tuple[float, float] = setting((0.9, 1.1), "warp scale range", cli=False, above=0)
    rotate: float = setting(10.0, "warp rotation, degrees", cli=False, at_least=0)
    photometric_p: float = setting(0.5, "brightness/contrast/gamma jitter", cli=False, at_least=0, at_most=1)
    brightness: float = setting(0.1, "fraction of full scale, +-", cli=False, at_least=0)
    contrast: float = setting(0.2, "relative, around the image mean", cli=False, at_least=0)
    gamma: tuple[float, float] = setting((0.8, 1.25), "gamma jitter range", cli=False, above=0)
    noise_p: float = setting(0.3, "sensor noise", cli=False, at_least=0, at_most=1)
    noise_sigma: float = setting(6.0, "noise, grey levels at most", cli=False, at_least=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple) and not (len(value) == 2 and value[0] <= value[1]):
                raise SettingError("AugmentConfig", field.name, f"must be a range (low, high), got {value}")


@dataclass(frozen=True)
class DataConfig(Config):
    """Data: a dataset folder or the built-in synthetic eyes."""

    data_dir: str | None = setting(
        None, "OpenEDS or pupil-mask dataset root (default: synthetic eyes)", on_resume="moved"
    )
    img_size: tuple[int, int] = setting(
        (400, 640), "HxW the model sees; frames are fitted", at_least=MIN_SIZE
    )
    synthetic_train: int = setting(1000, "synthetic training frames, rendered on the fly", at_least=1)
    synthetic_val: int = setting(100, "synthetic validation frames", at_least=1)
    synthetic_style: SyntheticStyle = setting("full", "synthetic eyes: the full randomisation or an ablation")
    train_sizes: str = setting(
        "",
        "multi-scale: training batches at these HxW sizes, comma-separated, each batch one at random, "
        "its frames cropped to its shape around the pupil (default: img_size alone)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.img_size) != 2:
            raise SettingError("DataConfig", "img_size", f"must be (H, W), got {self.img_size}")
        self.sizes()  # a malformed train_sizes is a SettingError now, not in a data worker

    def sizes(self) -> tuple[tuple[int, int], ...]:
        """The training batches' sizes: train_sizes parsed, or () for img_size alone."""
        sizes = []
        for text in filter(None, (t.strip() for t in self.train_sizes.split(","))):
            try:
                h, w = (int(v) for v in text.lower().split("x"))
            except ValueError:
                raise SettingError("DataConfig", "train_sizes", f"must be HxW sizes, got {text!r}") from None
            if min(h, w) < MIN_SIZE:
                problem = f"must be at least {MIN_SIZE} a side, got {text!r}"
                raise SettingError("DataConfig", "train_sizes", problem)
            sizes.append((h, w))
        return tuple(sizes)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Training: model, optimiser, schedule, run bookkeeping; `data`, `augment`, `preprocess` nested."""

    epochs: int | None = setting(10, "epochs in all", on_resume="kept", at_least=1)
    batch_size: int = setting(8, "frames per step", at_least=1)
    lr: float = setting(1e-3, "Adam learning rate", above=0)
    weight_decay: float = setting(0.0, "Adam weight decay (L2 penalty)", at_least=0)
    model: ModelName | None = setting(
        "tiny_efficientvit", "architecture (with --init-from: the checkpoint's)"
    )
    seed: int = setting(0, "weights, data order and synthetic frames", at_least=0)
    workers: int = setting(2, "data loader processes", on_resume="given", at_least=0)
    device: str = setting(
        "auto", "auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps", on_resume="given", local_only=True
    )
    out_dir: str | None = setting(None, "run folder (default: runs/<model>-<time>)", local_only=True)
    resume: str | None = setting(None, "continue the run of this last.pt", local_only=True)
    init_from: str | None = setting(
        None,
        "start a new run from this checkpoint's weights ('pretrained': the shipped model)",
        local_only=True,
    )
    max_steps: int | None = setting(
        None, "batches per epoch at most (smoke tests)", on_resume="given", at_least=1
    )
    time_limit: float | None = setting(
        None,
        "minutes; the epoch running then is cut short, validated and saved, and is the last",
        on_resume="given",
        above=0,
    )
    grad_clip: float = setting(1.0, "gradient norm clip", above=0)
    early_stop: int = setting(
        0, "stop after this many epochs without a better val pupil IoU; 0 = off", at_least=0
    )
    alpha_floor: float = setting(0.0, "lowest Dice weight of the loss schedule", at_least=0, at_most=1)
    alpha_span: int | None = setting(
        None, "epochs of the Dice weight's decay (default: min(125, epochs), fixed at the start)", at_least=1
    )
    schedule: Literal["plateau", "cosine"] | None = setting(
        None,
        "learning rate: plateau (drops when validation stalls) or cosine (down to 1% by the last "
        "epoch, so a run ends settled however many epochs it has; default: cosine with --init-from, "
        "else plateau)",
    )
    plateau_patience: int = setting(5, "epochs without progress before the lr drops", at_least=0)
    plateau_factor: float = setting(0.5, "lr factor at a plateau", above=0, at_most=1)
    compile: bool = setting(False, "torch.compile the model")
    mlflow: bool | None = setting(True, "log to MLflow", on_resume="kept")
    experiment: str = setting("pupil-segmentation", "MLflow experiment name")
    grid_every: int = setting(5, "prediction grid at the first epoch, every K and at the end", at_least=1)
    # nested settings are all fixed on resume (`resumed` looks at this level only; a test checks)
    data: DataConfig = setting(help="data", factory=DataConfig)
    augment: AugmentConfig = setting(help="augmentation", factory=AugmentConfig)
    preprocess: PreprocessConfig = setting(help="preprocessing", factory=PreprocessConfig)

    def started(self) -> TrainConfig:
        """A new run's settings: "kept" ones left None (the run's own on resume) take their defaults."""
        kept = [f for f in dataclasses.fields(self) if f.metadata.get("on_resume") == "kept"]
        return self.replace(**{f.name: f.default for f in kept if getattr(self, f.name) is None})

    def resumed(self, stored: TrainConfig) -> TrainConfig:
        """The settings of a resumed run: `stored` (the run's own), with this command line's
        "given" settings and the "kept" ones it names (not None)."""
        changes = {}
        for field in dataclasses.fields(self):
            value, mode = getattr(self, field.name), field.metadata.get("on_resume")
            if mode == "given" or (mode == "kept" and value is not None):
                changes[field.name] = value
        return stored.replace(**changes, resume=self.resume)


@dataclass(frozen=True)
class ExportConfig(Config):
    """ONNX export (export_onnx.py)."""

    opset: int = setting(18, "ONNX opset; the exporter writes 18 or above", at_least=18)
    # export_profiles.PROFILES' names (a test checks)
    target: Literal["cpu", "mobile", "tensorrt"] = setting(
        "cpu",
        "cpu: dynamic batch; mobile: static batch 1 for NNAPI / CoreML (<stem>.mobile.onnx); "
        "tensorrt: also <stem>.trt.int8.onnx, symmetric int8",
    )
    int8: bool = setting(False, "also write <stem>.int8.onnx and compare IoUs (--target cpu)")
    calib_dir: str | None = setting(
        None, "images or a dataset root (default: the training data, else synthetic)"
    )
    calib_n: int = setting(64, "parity and calibration frames", at_least=3)
    val_n: int = setting(64, "IoU validation frames", at_least=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        targets = typing.get_args(type_hints(ExportConfig)["target"])
        if self.target not in targets:
            problem = f"must be one of {', '.join(targets)}, got {self.target!r}"
            raise SettingError("ExportConfig", "target", problem)
        if self.int8 and self.target == "mobile":  # CoreML runs no QuantizeLinear / DequantizeLinear
            raise SettingError("ExportConfig", "int8", "has no mobile file: use --target cpu or tensorrt")


@dataclass(frozen=True)
class AdaptConfig(Config):
    """Adapting a model to a camera without labels (adapt.py): which frames, how long, when to stop."""

    rounds: int = setting(1, "pseudo-label, select and fine-tune this many times", at_least=1)
    min_confidence: float = setting(
        0.8, "a frame becomes a training frame at or above this confidence (flip TTA)", at_least=0, at_most=1
    )
    min_frames: int = setting(40, "refuse with fewer confident frames than this", at_least=2)
    max_frames: int = setting(400, "training frames at most, spread over time and recordings", at_least=2)
    scan: int = setting(1500, "frames looked at per recording, evenly spread", at_least=2)
    min_span: float = setting(
        0.2, "refuse when the confident frames cover less than this share of the recordings' length",
        at_least=0, at_most=1,
    )  # fmt: skip
    epochs: int = setting(10, "fine-tuning epochs per round", at_least=1)
    lr: float = setting(2e-3, "fine-tuning learning rate", above=0)
    batch_size: int = setting(8, "frames per step", at_least=1)
    max_drift: float = setting(
        0.35, "a collapse: median pupil area or tracked share moved by more than this share", above=0
    )
    seed: int = setting(0, "training order and augmentation", at_least=0)
    mlflow: bool = setting(True, "log each round's fine-tuning to MLflow")
    export: bool = setting(True, "export the adapted model to a verified ONNX file")


@dataclass(frozen=True)
class PupillometryConfig(Config):
    """From frames to a time series: blinks, smoothing, millimetres (predict.py)."""

    fps: float | None = setting(
        None, "frames per second (default: a video's own; 30 for images)", at_least=0.1, at_most=10_000
    )
    blink_share: float = setting(
        0.5, "blink: pupil area under this share of the open eye's", above=0, at_most=1
    )
    min_confidence: float = setting(0.3, "a frame less confident than this is lost", at_least=0, at_most=1)
    smooth: bool = setting(True, "smooth centre and diameter with a One Euro filter (raw values only)")
    min_cutoff: float = setting(1.0, "the filter's cutoff at rest, Hz: lower smooths more", above=0)
    diameter_beta: float = setting(0.5, "how fast the diameter's cutoff rises with speed", at_least=0)
    centre_beta: float = setting(10.0, "the same for the centre, whose saccades are fast", at_least=0)
    mm_per_px: float | None = setting(None, "mm per pixel in the pupil's plane: adds diameter_mm", above=0)
    mm_from_iris: bool = setting(False, "estimate mm per pixel from the iris, 11.7 mm across (about ±4%)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mm_from_iris and self.mm_per_px is not None:
            problem = "and --mm-per-px: give one scale, not both"
            raise SettingError("PupillometryConfig", "mm_from_iris", problem)
