"""Train a pupil-segmentation model (default: TinyEfficientViT) with CombinedLoss and MLflow.

    python train_efficientvit.py --epochs 2                      # built-in synthetic eyes
    python train_efficientvit.py --data-dir /data/openeds --epochs 50
    python train_efficientvit.py --resume runs/<run>/last.pt --epochs 80
    python train_efficientvit.py --init-from pretrained --data-dir MY_DATA --epochs 20   # fine-tune

Writes OUT_DIR/best.pt (best validation pupil IoU) and OUT_DIR/last.pt (every epoch), both
atomically, and logs every epoch to MLflow. On resume, the run's stored settings (model, data,
optimiser, seed, loss schedule) are kept and may not be given again; --epochs and --no-mlflow
default to the run's own, --max-steps, --time-limit, --workers and --device come from the command
line. --init-from starts a new run from another checkpoint's weights, model and preprocessing
(a fresh optimiser, schedule and MLflow run; any --img-size). The body lives in `main(config)` so
tests and modal_app.py call it directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import AugmentConfig, DataConfig, PreprocessConfig, build_datasets, size_argument
from data.config import positive_argument, positive_int_argument
from data.synthetic.render import STYLES
from inference import model_file, train_style
from losses import CombinedLoss, alpha_schedule
from metrics import ConfusionCounter
from models import MODEL_NAMES, build_model, pick_device
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tracking import MlflowRun, TrackingError, plot_curves, prediction_grid


@dataclass
class TrainConfig:
    epochs: int | None = 10  # None on resume: the run's own
    batch_size: int = 8
    lr: float = 1e-3
    model: str | None = "tiny_efficientvit"  # None with init_from: the source checkpoint's
    seed: int = 0
    workers: int = 2
    device: str = "auto"  # auto = CUDA, then Apple MPS, then CPU
    out_dir: str | None = None  # default runs/<run-name>
    resume: str | None = None
    init_from: str | None = None  # a checkpoint (or "pretrained") whose weights a new run starts from
    max_steps: int | None = None  # stop each epoch after this many batches (smoke tests)
    time_limit: float | None = None  # minutes of wall-clock; the epoch running then is the last
    grad_clip: float = 1.0
    early_stop: int = 0  # stop after this many epochs without a better val pupil IoU; 0 = off
    alpha_floor: float = 0.0
    alpha_span: int | None = None  # epochs of alpha's decay; None: min(125, epochs), fixed at the start
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    compile: bool = False
    mlflow: bool | None = True  # None on resume: the run's own
    experiment: str = "pupil-segmentation"
    grid_every: int = 5  # prediction grid at the first epoch, every K epochs and at the end
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        nested = {"data": DataConfig, "augment": AugmentConfig, "preprocess": PreprocessConfig}
        return cls(**{k: nested[k].from_dict(v) if k in nested else v for k, v in values.items()})


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and what is kept."""


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def summarize(totals: dict[str, float], batches: int, counter: ConfusionCounter, prefix: str) -> dict:
    metrics = {f"{prefix}/{k}": v / max(1, batches) for k, v in totals.items()}
    metrics.update({f"{prefix}/{k}": v for k, v in counter.compute().items()})
    return metrics


def train_one_epoch(
    model, loader, optimizer, scaler, loss_fn, alpha, device, config, epoch, deadline: float = math.inf
) -> dict:
    """One pass over the training set (cut short at `deadline`, a perf_counter time); train/* metrics."""
    model.train()
    amp = device.type == "cuda"
    totals = {"loss": 0.0, "ce": 0.0, "dice": 0.0, "surface": 0.0}
    counter, batches, images, wait = ConfusionCounter(), 0, 0, 0.0
    steps = len(loader) if config.max_steps is None else min(len(loader), config.max_steps)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1} train", leave=False, dynamic_ncols=True)
    start = tick = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= steps or time.perf_counter() > deadline:
            break
        wait += time.perf_counter() - tick  # time spent waiting on the data loader
        batch = to_device(batch, device, channels_last=amp)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(batch["image"])
        losses = loss_fn(logits, batch["label"], batch["weight"], batch["dist"], alpha)
        if not torch.isfinite(losses["total"]):
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        counter.update(logits.detach().argmax(dim=1), batch["label"])
        for key, name in (("loss", "total"), ("ce", "ce"), ("dice", "dice"), ("surface", "surface")):
            totals[key] += losses[name].item()
        batches, images = batches + 1, images + batch["image"].shape[0]
        bar.set_postfix(
            loss=f"{totals['loss'] / batches:.3f}", pupil_iou=f"{counter.compute()['pupil_iou']:.3f}"
        )
        bar.update()
        tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    metrics = summarize(totals, batches, counter, "train")
    metrics["train/images_per_s"] = images / elapsed
    metrics["train/data_wait_fraction"] = wait / elapsed
    return metrics


@torch.no_grad()
def evaluate(model, loader, loss_fn, alpha, device, max_steps: int | None = None) -> dict:
    """Validation pass; returns val/* metrics (loss parts summed per batch, IoUs over all pixels)."""
    model.eval()
    amp = device.type == "cuda"
    totals = {"loss": 0.0, "ce": 0.0, "dice": 0.0, "surface": 0.0}
    counter, batches, images = ConfusionCounter(), 0, 0
    start = time.perf_counter()
    for step, batch in enumerate(tqdm(loader, desc="validate", leave=False, dynamic_ncols=True)):
        if max_steps is not None and step >= max_steps:
            break
        batch = to_device(batch, device, channels_last=amp)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(batch["image"])
        losses = loss_fn(logits, batch["label"], batch["weight"], batch["dist"], alpha)
        counter.update(logits.argmax(dim=1), batch["label"])
        for key, name in (("loss", "total"), ("ce", "ce"), ("dice", "dice"), ("surface", "surface")):
            totals[key] += losses[name].item()
        batches, images = batches + 1, images + batch["image"].shape[0]
    metrics = summarize(totals, batches, counter, "val")
    metrics["val/images_per_s"] = images / (time.perf_counter() - start)
    return metrics


@torch.no_grad()
def grid_frames(model, dataset, device, config: TrainConfig, n: int = 6):
    """A fixed set of validation frames as display images, labels and predictions (N, H, W)."""
    model.eval()
    items = [dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // n))][:n]
    x = torch.stack([it["image"] for it in items]).to(device)
    preds = model(x).argmax(dim=1).cpu().numpy().astype(np.uint8)
    p = config.preprocess
    shown = ((x[:, 0].cpu().numpy() * p.std + p.mean) * 255).clip(0, 255).astype(np.uint8)
    labels = torch.stack([it["label"] for it in items]).numpy().astype(np.uint8)
    return shown, labels, preds


def make_loader(dataset, config: TrainConfig, shuffle: bool, epoch: int, device: torch.device) -> DataLoader:
    # The order depends only on (seed, epoch), so a resumed run sees the same batches.
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.workers,
        generator=generator,
        pin_memory=device.type == "cuda",
        drop_last=shuffle and len(dataset) > config.batch_size,
        persistent_workers=False,
    )


def main(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train; returns a summary (out_dir, best_metric, best_epoch, metrics, mlflow_run_id).

    `on_epoch_end(epoch, metrics)` runs after each epoch's checkpoints are written (Modal uses
    it to commit its volume).
    """
    if config.resume and config.init_from:
        raise ValueError("--init-from starts a new run and --resume continues one; give only one")
    resumed = None
    if config.resume:
        resumed = load_checkpoint(config.resume)
        if "optimizer_state" not in resumed:
            raise CheckpointError(f"{config.resume} holds weights only, not a training state to resume")
        stored = TrainConfig.from_dict(resumed["train_config"])
        if stored.alpha_span is None:  # a checkpoint from before alpha_span: its decay ran over its epochs
            stored = dataclasses.replace(stored, alpha_span=min(125, stored.epochs))
        # the eyes it trained on, "narrow" for a run from before styles (inference.train_style)
        stored = dataclasses.replace(
            stored, data=dataclasses.replace(stored.data, synthetic_style=train_style(resumed))
        )
        given = {k: getattr(config, k) for k in ("max_steps", "time_limit", "workers", "device")}
        given.update({k: v for k in ("epochs", "mlflow") if (v := getattr(config, k)) is not None})
        config = dataclasses.replace(
            stored, **given, resume=config.resume, out_dir=str(Path(config.resume).parent)
        )
    source = None
    if config.init_from and not resumed:  # a resumed fine-tuning run keeps its own weights
        path = model_file(config.init_from, ".pt")
        source = load_checkpoint(path)
        if config.model not in (None, source["model_name"]):
            raise CheckpointError(
                f"{path} holds a {source['model_name']!r} model, not {config.model!r} (--model); "
                f"drop --model to fine-tune it"
            )
        config = dataclasses.replace(
            config,
            init_from=str(path.resolve()),
            model=source["model_name"],
            preprocess=PreprocessConfig.from_dict(source["preprocess"]),
        )
    elif config.model is None:
        raise ValueError("TrainConfig.model is None: name a model, or a checkpoint to start from (init_from)")
    if config.alpha_span is None:  # fixed now, so that extending the run keeps alpha's decay
        config = dataclasses.replace(config, alpha_span=min(125, config.epochs))
    device = pick_device(config.device)
    run_name = f"{config.model}-{datetime.now():%Y%m%d-%H%M%S}"
    out_dir = Path(config.out_dir or Path("runs") / run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    train_set, val_set = build_datasets(config.data, config.preprocess, config.augment, config.seed)
    stored_model = resumed or source  # its model config (widths, depths) rebuilds the same network
    model = build_model(config.model, **(stored_model["model_config"] if stored_model else {}))
    if source:
        model.load_state_dict(source["model_state"])
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    start_epoch, best, best_epoch, history, run_id = 0, -1.0, 0, [], None
    if resumed:
        model.load_state_dict(resumed["model_state"])
        optimizer.load_state_dict(resumed["optimizer_state"])
        scheduler.load_state_dict(resumed["scheduler_state"])
        scaler.load_state_dict(resumed["scaler_state"])
        torch.set_rng_state(resumed["rng_state"])
        start_epoch, best, best_epoch = resumed["epoch"], resumed["best_metric"], resumed["best_epoch"]
        history, run_id = list(resumed["history"]), resumed.get("mlflow_run_id")
    forward_model = torch.compile(model) if config.compile else model
    loss_fn = CombinedLoss()

    tracker = MlflowRun(config.experiment, out_dir.name, run_id) if config.mlflow else None
    if tracker:
        try:
            tracker.log_params(
                {
                    **config.to_dict(),
                    "params_trainable": model.get_num_trainable_params(),
                    "params_total": model.get_num_total_params(),
                    "dataset": {
                        "source": train_set.source_name,
                        "train": len(train_set),
                        "val": len(val_set),
                    },
                    "env": {
                        "device": str(device),
                        "torch": torch.__version__,
                        "python": platform.python_version(),
                    },
                }
            )
            tags = {"model": config.model, "dataset": train_set.source_name}
            tracker.set_tags(tags | ({"init_from": config.init_from} if config.init_from else {}))
        except BaseException:
            tracker.end("FAILED")
            raise

    def state(epoch: int, metrics: dict) -> dict:
        return {
            "model_name": config.model,
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
            "preprocess": config.preprocess.to_dict(),
            "img_size": list(config.data.img_size),
            "num_params": model.get_num_trainable_params(),
            "train_config": config.to_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "scaler_state": scaler.state_dict(),
            "rng_state": torch.get_rng_state(),
            "epoch": epoch,
            "best_metric": best,
            "best_epoch": best_epoch,
            "metrics": metrics,
            "history": history,
            "mlflow_run_id": tracker.run_id if tracker else run_id,
        }

    if config.init_from:
        print(f"Starting from the weights of {config.init_from}")
    print(
        f"Training {config.model} ({model.get_num_trainable_params():,} params) on {device}, "
        f"{train_set.source_name} data: {len(train_set)} train / {len(val_set)} val, "
        f"epochs {start_epoch + 1}-{config.epochs}, out {out_dir}"
    )
    epoch, metrics, status, saved = start_epoch, (history[-1] if history else {}), "FINISHED", start_epoch
    deadline = time.perf_counter() + 60 * config.time_limit if config.time_limit else math.inf
    try:
        for epoch in range(start_epoch, config.epochs):
            alpha = alpha_schedule(epoch, config.alpha_span, config.alpha_floor, span=config.alpha_span)
            train_set.set_epoch(epoch)
            train_loader = make_loader(train_set, config, True, epoch, device)
            val_loader = make_loader(val_set, config, False, epoch, device)
            metrics = train_one_epoch(
                forward_model,
                train_loader,
                optimizer,
                scaler,
                loss_fn,
                alpha,
                device,
                config,
                epoch,
                deadline,
            )
            metrics.update(evaluate(forward_model, val_loader, loss_fn, alpha, device, config.max_steps))
            metrics.update({"lr": optimizer.param_groups[0]["lr"], "alpha": alpha, "epoch": epoch + 1})
            # The total falls by itself as alpha shifts weight from Dice to the (negative) surface
            # term, which would hide a plateau: watch the alpha-free part of the validation loss.
            scheduler.step(metrics["val/ce"] + metrics["val/dice"])
            history.append(metrics)
            improved = metrics["val/pupil_iou"] > best
            if improved:
                best, best_epoch = metrics["val/pupil_iou"], epoch + 1
                save_checkpoint(state(epoch + 1, metrics), out_dir / "best.pt")
            save_checkpoint(state(epoch + 1, metrics), out_dir / "last.pt")
            saved = epoch + 1
            print(
                f"epoch {epoch + 1}/{config.epochs}  "
                f"loss {metrics['train/loss']:.4f}/{metrics['val/loss']:.4f}  "
                f"pupil IoU {metrics['train/pupil_iou']:.4f}/{metrics['val/pupil_iou']:.4f}  "
                f"mIoU {metrics['val/miou']:.4f}  lr {metrics['lr']:.1e}  "
                f"{metrics['train/images_per_s']:.1f} img/s{'  *best' if improved else ''}"
            )
            if tracker:
                tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch + 1)
            if epoch == start_epoch or (epoch + 1) % config.grid_every == 0 or epoch + 1 == config.epochs:
                frames = grid_frames(model, val_set, device, config)
                grid = prediction_grid(*frames, out_dir / f"predictions_epoch{epoch + 1:03d}.png")
                if tracker:
                    tracker.log_artifact(grid, "predictions")
            if on_epoch_end:
                on_epoch_end(epoch + 1, metrics)
            if config.early_stop and epoch + 1 - best_epoch >= config.early_stop:
                print(f"Early stop: no better validation pupil IoU for {config.early_stop} epochs.")
                break
            if time.perf_counter() > deadline:
                print(f"Time limit of {config.time_limit:g} min reached after epoch {epoch + 1}.")
                break
    except KeyboardInterrupt:
        # last.pt holds the last finished epoch; the one cut short is redone on resume, so a
        # resumed run still ends as an uninterrupted one would.
        status, metrics = "KILLED", (history[-1] if history else {})
        if saved > 0:
            print(
                f"\nInterrupted; {out_dir / 'last.pt'} holds epoch {saved}. "
                f"Resume with: python train_efficientvit.py --resume {out_dir / 'last.pt'}"
            )
        else:
            print("\nInterrupted during the first epoch: no checkpoint to resume from.")
    except TrainingError as exc:
        status = "FAILED"
        raise TrainingError(f"{exc}; the last good checkpoint is kept in {out_dir}") from None
    except BaseException:
        status = "FAILED"
        raise
    finally:
        try:
            curves = plot_curves(history, out_dir / "curves.png") if history else None
            if tracker and curves:
                tracker.log_artifact(curves)
            if tracker and (out_dir / "best.pt").exists() and status == "FINISHED":
                tracker.log_artifact(out_dir / "best.pt", "checkpoints")
        finally:  # whatever failed above, the MLflow run must not stay RUNNING
            if tracker:
                tracker.end(status)
    if status == "FINISHED":
        print(f"Best validation pupil IoU {best:.4f} at epoch {best_epoch}: {out_dir / 'best.pt'}")
    return {
        "out_dir": str(out_dir),
        "best_metric": best,
        "best_epoch": best_epoch,
        "metrics": metrics,
        "history": history,
        "mlflow_run_id": tracker.run_id if tracker else run_id,
        "interrupted": status == "KILLED",
    }


RUN_SETTINGS = {  # flags a resumed run takes from its checkpoint
    "--batch-size", "--lr", "--model", "--data-dir", "--synthetic-train", "--synthetic-val", "--img-size",
    "--seed", "--out-dir", "--early-stop", "--alpha-floor", "--grid-every", "--no-augment", "--experiment",
    "--compile", "--init-from", "--synthetic-style",
}  # fmt: skip


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (None, a switch's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    d, dd = TrainConfig(), DataConfig()
    count, amount = positive_int_argument, positive_argument(float)
    p = argparse.ArgumentParser(
        description="Train a pupil-segmentation model.",
        formatter_class=DefaultsHelp,
        allow_abbrev=False,  # --resume's check of what was given reads whole flag names
    )
    p.add_argument("--epochs", type=count, help=f"(default: {d.epochs}; on resume: the run's own)")
    p.add_argument("--batch-size", type=count, default=d.batch_size, help="frames per step")
    p.add_argument("--lr", type=amount, default=d.lr, help="Adam learning rate")
    p.add_argument(
        "--model", choices=MODEL_NAMES, help=f"(default: {d.model}; with --init-from: the checkpoint's)"
    )
    p.add_argument("--data-dir", help="OpenEDS or pupil-mask dataset root (default: synthetic eyes)")
    p.add_argument("--synthetic-train", type=count, default=dd.synthetic_train, help="frames")
    p.add_argument("--synthetic-val", type=count, default=dd.synthetic_val, help="frames")
    p.add_argument(
        "--synthetic-style", choices=STYLES, default=dd.synthetic_style, help="full, or an ablation of it"
    )
    p.add_argument("--img-size", type=size_argument, default="x".join(map(str, dd.img_size)), help="HxW")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    p.add_argument("--seed", type=int, default=d.seed, help="weights, data order and synthetic frames")
    p.add_argument("--out-dir", help="(default: runs/<model>-<time>)")
    p.add_argument("--resume", help="continue the run of this last.pt")
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start a new run from this checkpoint's weights ('pretrained': the shipped model)",
    )
    p.add_argument("--max-steps", type=count, help="batches per epoch (smoke tests)")
    p.add_argument("--time-limit", type=amount, help="minutes; the epoch running then is the last")
    p.add_argument("--experiment", default=d.experiment, help="MLflow experiment name")
    p.add_argument(
        "--no-mlflow",
        action="store_const",
        const=True,
        help="do not log to MLflow (on resume: as the run did)",
    )
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--early-stop", type=int, default=d.early_stop, help="patience in epochs; 0 = off")
    p.add_argument("--alpha-floor", type=float, default=d.alpha_floor, help="lowest Dice weight")
    p.add_argument("--grid-every", type=count, default=d.grid_every, help="prediction grid every K")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    a = p.parse_args(argv)
    if a.resume:  # the run's stored settings win; asking for others would silently not happen
        flags = {t.split("=")[0] for t in (sys.argv[1:] if argv is None else argv) if t.startswith("--")}
        if fixed := sorted(flags & RUN_SETTINGS):
            p.error(f"--resume continues a run with its stored settings; drop {', '.join(fixed)}")
    if a.seed < 0:
        p.error(f"argument --seed: must be >= 0, got {a.seed}")
    if a.workers < 0:
        p.error(f"argument --workers: must be >= 0, got {a.workers}")
    if not 0.0 <= a.alpha_floor <= 1.0:
        p.error(f"argument --alpha-floor: must be in [0, 1], got {a.alpha_floor}")
    return TrainConfig(
        epochs=a.epochs if a.epochs or a.resume else d.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        model=a.model or (None if a.init_from or a.resume else d.model),
        seed=a.seed,
        workers=a.workers,
        device=a.device,
        out_dir=a.out_dir,
        resume=a.resume,
        init_from=a.init_from,
        max_steps=a.max_steps,
        time_limit=a.time_limit,
        early_stop=a.early_stop,
        alpha_floor=a.alpha_floor,
        compile=a.compile,
        mlflow=None if a.no_mlflow is None and a.resume else not a.no_mlflow,
        experiment=a.experiment,
        grid_every=a.grid_every,
        data=DataConfig(
            data_dir=str(Path(a.data_dir).resolve()) if a.data_dir else None,  # export and evaluate find it
            img_size=a.img_size,
            synthetic_train=a.synthetic_train,
            synthetic_val=a.synthetic_val,
            synthetic_style=a.synthetic_style,
        ),
        augment=AugmentConfig(enabled=not a.no_augment),
    )


if __name__ == "__main__":
    try:
        main(parse_args())
    except (ValueError, OSError, TrackingError, TrainingError) as exc:  # CheckpointError, DataError too
        sys.exit(f"error: {exc}")
