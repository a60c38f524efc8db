"""Train a pupil-segmentation model (default: TinyEfficientViT) with CombinedLoss and MLflow.

    python train_efficientvit.py --epochs 2                      # built-in synthetic eyes
    python train_efficientvit.py --data-dir /data/openeds --epochs 50
    python train_efficientvit.py --resume runs/<run>/last.pt --epochs 80
    python train_efficientvit.py --init-from pretrained --data-dir MY_DATA --epochs 20   # fine-tune

Every flag is a field of config.TrainConfig (`--help` lists them). Writes OUT_DIR/best.pt (best
validation pupil IoU) and OUT_DIR/last.pt (every epoch), both atomically, and logs every epoch to
MLflow. On resume the run's stored settings are kept and may not be given again; --epochs and
--no-mlflow default to the run's own; --workers, --device, --max-steps and --time-limit come from
the command line. --init-from starts a new run from another checkpoint's weights, model and
preprocessing (a fresh optimiser, schedule and MLflow run; any --img-size). The body is
`main(config)`, which tests and modal_app.py call directly.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from cli import Flag, add_settings, given, train_config
from config import TrainConfig
from data import EyeDataset, build_datasets
from gallery import prediction_grid
from inference import model_file
from losses import CombinedLoss, alpha_schedule
from models import SegmentationModel, build_model, pick_device
from models.card import ModelCard
from models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from tracking import MlflowRun, TrackingError, plot_curves
from training import TrainingError, grid_frames, make_loader, make_optimiser, place, run_epoch

# ---- a run: settings, model and optimiser, progress ----


def settle(config: TrainConfig) -> tuple[TrainConfig, dict | None, dict | None]:
    """The run's complete settings, and the checkpoint it resumes (or the one it starts from).

    A resumed run takes its stored settings (config.TrainConfig.resumed); a fine-tuning run the
    model and preprocessing of its source; alpha's decay span is fixed now, so extending a run
    keeps it."""
    if config.resume and config.init_from:
        raise ValueError("--init-from starts a new run and --resume continues one; give only one")
    resumed = source = None
    if config.resume:
        resumed = load_checkpoint(config.resume)
        if "optimizer_state" not in resumed:
            raise CheckpointError(f"{config.resume} holds weights only, not a training state to resume")
        stored = TrainConfig.from_dict(resumed["train_config"])
        if stored.alpha_span is None:  # from before alpha_span: its decay ran over its epochs
            stored = stored.replace(alpha_span=min(125, stored.epochs))
        style = ModelCard.from_checkpoint(resumed, config.resume).train_style  # "narrow" for old runs
        stored = stored.replace(data=stored.data.replace(synthetic_style=style))
        config = config.resumed(stored).replace(out_dir=str(Path(config.resume).parent))
    elif config.init_from:
        path = model_file(config.init_from, ".pt")
        source = load_checkpoint(path)
        card = ModelCard.from_checkpoint(source, path)
        if config.model not in (None, card.model_name):
            raise CheckpointError(
                f"{path} holds a {card.model_name!r} model, not {config.model!r} (--model); "
                "drop --model to fine-tune it"
            )
        config = config.replace(
            init_from=str(path.resolve()), model=card.model_name, preprocess=card.preprocess
        )
    elif config.model is None:
        raise ValueError("TrainConfig.model is None: name a model, or a checkpoint to start from (init_from)")
    if not resumed:
        config = config.started()
    if config.alpha_span is None:
        config = config.replace(alpha_span=min(125, config.epochs))
    if config.data.data_dir:  # absolute, so that export and evaluate find it from anywhere
        config = config.replace(data=config.data.replace(data_dir=str(Path(config.data.data_dir).resolve())))
    return config, resumed, source


@dataclass
class Run:
    """A training run's model, optimiser and progress: what a checkpoint saves and resume restores."""

    config: TrainConfig
    model: SegmentationModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs finished
    best: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    mlflow_run_id: str | None = None

    @classmethod
    def create(
        cls, config: TrainConfig, device: torch.device, *, resumed: dict | None, source: dict | None
    ) -> Run:
        """The model (a resumed run's or a fine-tuning source's, weights and all) and its optimiser."""
        if resumed or source:  # the stored card rebuilds the same network (widths, depths)
            model = model_from_checkpoint(resumed or source, config.resume or config.init_from)
        else:
            model = build_model(config.model)
        model = place(model, device)
        run = cls(config, model, *make_optimiser(model, config))
        if resumed:
            for part in ("optimizer", "scheduler", "scaler"):
                getattr(run, part).load_state_dict(resumed[f"{part}_state"])
            torch.set_rng_state(resumed["rng_state"])
            run.epoch, run.best, run.best_epoch = (resumed[k] for k in ("epoch", "best_metric", "best_epoch"))
            run.history, run.mlflow_run_id = list(resumed["history"]), resumed.get("mlflow_run_id")
        return run

    def checkpoint(self, metrics: dict) -> dict:
        """The model card, weights and everything resuming needs (models.checkpoint.RESUME_KEYS)."""
        c = self.config
        card = ModelCard.of(
            self.model,
            c.model,
            c.data.img_size,
            preprocess=c.preprocess,
            epoch=self.epoch,
            metrics={k: v for k, v in metrics.items() if k.startswith("val/")},
            train_seed=c.seed,
            train_style=c.data.synthetic_style,
            train_data_dir=c.data.data_dir,
        )
        return {
            **card.to_checkpoint(),
            "model_state": self.model.state_dict(),
            "train_config": c.to_dict(),
            **{
                f"{part}_state": getattr(self, part).state_dict()
                for part in ("optimizer", "scheduler", "scaler")
            },
            "rng_state": torch.get_rng_state(),
            "best_metric": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def finish_epoch(self, metrics: dict, out_dir: Path) -> bool:
        """Record an epoch, write last.pt (and best.pt if it is the best); True if it is."""
        self.epoch += 1
        self.history.append(metrics)
        improved = metrics["val/pupil_iou"] > self.best
        if improved:
            self.best, self.best_epoch = metrics["val/pupil_iou"], self.epoch
            save_checkpoint(self.checkpoint(metrics), out_dir / "best.pt")
        save_checkpoint(self.checkpoint(metrics), out_dir / "last.pt")
        return improved


def start_tracking(
    run: Run, out_dir: Path, *, train_set: EyeDataset, val_set: EyeDataset
) -> MlflowRun | None:
    """The MLflow run (continued on resume) with the settings, sizes and environment as params."""
    config = run.config
    if not config.mlflow:
        return None
    tracker = MlflowRun(config.experiment, out_dir.name, run.mlflow_run_id)
    try:
        dataset = {"source": train_set.source_name, "train": len(train_set), "val": len(val_set)}
        env = {"device": str(next(run.model.parameters()).device), "torch": torch.__version__}
        tracker.log_params(
            {
                **config.to_dict(),
                "params_trainable": run.model.get_num_trainable_params(),
                "params_total": run.model.get_num_total_params(),
                "dataset": dataset,
                "env": {**env, "python": platform.python_version()},
            }
        )
        tags = {"model": config.model, "dataset": train_set.source_name}
        tracker.set_tags(tags | ({"init_from": config.init_from} if config.init_from else {}))
    except BaseException:
        tracker.end("FAILED")
        raise
    run.mlflow_run_id = tracker.run_id
    return tracker


# ---- the training loop ----


def train_epochs(run: Run, train_set, val_set, *, out_dir: Path, tracker, on_epoch_end) -> None:
    """Train, validate, schedule, checkpoint and log each epoch; stop at the last epoch, an early
    stop or the time limit."""
    config, loss_fn = run.config, CombinedLoss()
    model = torch.compile(run.model) if config.compile else run.model
    deadline = time.perf_counter() + 60 * config.time_limit if config.time_limit else math.inf
    first = run.epoch
    for epoch in range(first, config.epochs):
        alpha = alpha_schedule(epoch, config.alpha_span, floor=config.alpha_floor)
        train_set.set_epoch(epoch)
        loaders = [make_loader(d, config, shuffle=d is train_set, epoch=epoch) for d in (train_set, val_set)]
        try:
            metrics = run_epoch(
                model,
                loaders[0],
                loss_fn,
                alpha=alpha,
                train=True,
                optimizer=run.optimizer,
                scaler=run.scaler,
                grad_clip=config.grad_clip,
                max_steps=config.max_steps,
                deadline=deadline,
                desc=f"epoch {epoch + 1} train",
            )
        except TrainingError as exc:
            raise TrainingError(f"epoch {epoch + 1}: {exc}") from None
        metrics |= run_epoch(model, loaders[1], loss_fn, alpha=alpha, train=False, max_steps=config.max_steps)
        metrics |= {"lr": run.optimizer.param_groups[0]["lr"], "alpha": alpha, "epoch": epoch + 1}
        # The total falls by itself as alpha shifts weight from Dice to the (negative) surface
        # term, which would hide a plateau: watch the alpha-free part of the validation loss.
        run.scheduler.step(metrics["val/ce"] + metrics["val/dice"])
        improved = run.finish_epoch(metrics, out_dir)
        print(
            f"epoch {epoch + 1}/{config.epochs}  loss {metrics['train/loss']:.4f}/{metrics['val/loss']:.4f}  "
            f"pupil IoU {metrics['train/pupil_iou']:.4f}/{metrics['val/pupil_iou']:.4f}  "
            f"mIoU {metrics['val/miou']:.4f}  lr {metrics['lr']:.1e}  "
            f"{metrics['train/images_per_s']:.1f} img/s{'  *best' if improved else ''}"
        )
        if tracker:
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch + 1)
        if epoch == first or (epoch + 1) % config.grid_every == 0 or epoch + 1 == config.epochs:
            path = out_dir / f"predictions_epoch{epoch + 1:03d}.png"
            grid = prediction_grid(*grid_frames(run.model, val_set), path=path)
            if tracker:
                tracker.log_artifact(grid, "predictions")
        if on_epoch_end:
            on_epoch_end(epoch + 1, metrics)
        if config.early_stop and epoch + 1 - run.best_epoch >= config.early_stop:
            print(f"Early stop: no better validation pupil IoU for {config.early_stop} epochs.")
            return
        if time.perf_counter() > deadline:
            print(f"Time limit of {config.time_limit:g} min reached in epoch {epoch + 1}; it was the last.")
            return


def close_run(run: Run, out_dir: Path, *, tracker: MlflowRun | None, status: str) -> None:
    """Curves, and for a finished run best.pt, to MLflow; the MLflow run ends whatever happens."""
    try:
        curves = plot_curves(run.history, out_dir / "curves.png") if run.history else None
        if tracker and curves:
            tracker.log_artifact(curves)
        if tracker and status == "FINISHED" and (out_dir / "best.pt").exists():
            tracker.log_artifact(out_dir / "best.pt", "checkpoints")
    finally:  # whatever failed above, the MLflow run must not stay RUNNING
        if tracker:
            tracker.end(status)


def main(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train; returns a summary (out_dir, best_metric, best_epoch, metrics, history,
    mlflow_run_id, interrupted). `on_epoch_end(epoch, metrics)` runs after each epoch's
    checkpoints are written (Modal commits its volume there)."""
    config, resumed, source = settle(config)
    device = pick_device(config.device)
    out_dir = Path(config.out_dir or Path("runs") / f"{config.model}-{datetime.now():%Y%m%d-%H%M%S}")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train_set, val_set = build_datasets(config.data, config.preprocess, config.augment, seed=config.seed)
    run = Run.create(config, device, resumed=resumed, source=source)
    tracker = start_tracking(run, out_dir, train_set=train_set, val_set=val_set)
    if source:
        print(f"Starting from the weights of {config.init_from}")
    if run.epoch >= config.epochs:
        print(
            f"{out_dir / 'last.pt'} holds {run.epoch} epochs, --epochs is {config.epochs}: nothing to train"
        )
    else:
        print(
            f"Training {config.model} ({run.model.get_num_trainable_params():,} params) on {device}, "
            f"{train_set.source_name} data: {len(train_set)} train / {len(val_set)} val, "
            f"epochs {run.epoch + 1}-{config.epochs}, out {out_dir}"
        )
    status = "FAILED"
    try:
        train_epochs(run, train_set, val_set, out_dir=out_dir, tracker=tracker, on_epoch_end=on_epoch_end)
        status = "FINISHED"
    except KeyboardInterrupt:
        # last.pt holds the last finished epoch; the one cut short is redone on resume, so a
        # resumed run still ends as an uninterrupted one would.
        status = "KILLED"
        if run.epoch > 0:
            print(
                f"\nInterrupted; {out_dir / 'last.pt'} holds epoch {run.epoch}. "
                f"Resume with: python train_efficientvit.py --resume {out_dir / 'last.pt'}"
            )
        else:
            print("\nInterrupted during the first epoch: no checkpoint to resume from.")
    except TrainingError as exc:
        raise TrainingError(f"{exc}; the last good checkpoint is kept in {out_dir}") from None
    finally:
        close_run(run, out_dir, tracker=tracker, status=status)
    if status == "FINISHED":
        print(f"Best validation pupil IoU {run.best:.4f} at epoch {run.best_epoch}: {out_dir / 'best.pt'}")
    return {
        "out_dir": str(out_dir),
        "best_metric": run.best,
        "best_epoch": run.best_epoch,
        "metrics": run.history[-1] if run.history else {},
        "history": run.history,
        "mlflow_run_id": run.mlflow_run_id,
        "interrupted": status == "KILLED",
    }


def build_parser() -> tuple[argparse.ArgumentParser, list[Flag]]:
    """The command line: a flag per config.TrainConfig setting (cli.add_settings)."""
    parser = argparse.ArgumentParser(description="Train a pupil-segmentation model.", allow_abbrev=False)
    return parser, add_settings(parser, TrainConfig)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser, added = build_parser()
    try:
        return train_config(given(parser.parse_args(argv), added), added)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    try:
        main(parse_args())
    except (ValueError, OSError, TrackingError, TrainingError) as exc:  # CheckpointError, DataError too
        sys.exit(f"error: {exc}")
