"""Train a pupil-segmentation model (default: TinyEfficientViT) with CombinedLoss and MLflow.

    python train_efficientvit.py --epochs 2                      # built-in synthetic eyes
    python train_efficientvit.py --data-dir /data/openeds --epochs 50
    python train_efficientvit.py --resume runs/<run>/last.pt --epochs 80
    python train_efficientvit.py --init-from pretrained --data-dir MY_DATA --epochs 20   # fine-tune
    python train_efficientvit.py --nproc-per-node 4 --data-dir /data/openeds --batch-size 64  # 4 GPUs

Every flag is a field of config.TrainConfig (`--help` lists them). Writes OUT_DIR/best.pt (best
validation pupil IoU) and OUT_DIR/last.pt (every epoch), both atomically, and logs every epoch to
MLflow. On resume the run's stored settings are kept and may not be given again; --epochs and
--no-mlflow default to the run's own; --workers, --device, --max-steps and --time-limit come from
the command line. --init-from starts a new run from another checkpoint's weights, model and
preprocessing (a fresh optimiser, schedule and MLflow run; any --img-size). The body is
`main(config)`, which tests and modal_app.py call directly. --nproc-per-node N starts N processes
(`training.distributed.launch`) once the command line, the batch's split, the device and the run folder are
checked, so a mistake is one line before any starts; under torchrun, which starts them first,
rank 0 alone says what is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch

from config import DataConfig, TrainConfig
from config.flags import Flag, add_settings, given, positive_int_argument, train_config
from core.errors import one_line
from core.runfolder import (
    claim,
    new_run_folder,
    no_second_interrupt,
    sigterm_as_interrupt,
    stop_point,
    stop_requested,
)
from data import build_datasets, folder_frames
from data.folders import is_folder
from data.loading import close_loader, make_loader, set_epoch
from inference import model_file
from models import pick_device
from models.card import ModelCard
from models.checkpoint import CheckpointError, load_checkpoint, non_finite_tensors
from reports.gallery import prediction_grid
from training.distributed import any_rank, from_main, is_main, process_group, rank, world_size, wrap
from training.loop import Run, TrainingError, check_memory, grid_frames, run_epoch
from training.losses import CombinedLoss, alpha_schedule
from training.mlflow_log import MlflowRun, plot_curves, start_tracking

# ---- a run: settings, model and optimiser, progress ----


def relocated(stored: DataConfig, given: str, counts: dict | None) -> str:
    """The folder a resumed run's data moved to: allowed when its own folder is gone, and only to
    one with the same splits (and, where the run recorded them, the same numbers of frames)."""
    is_folder(Path(given))  # a symlink loop is a DataError naming it
    new = str(Path(given).resolve())
    if new == stored.data_dir:
        return new
    if stored.data_dir is None:
        raise ValueError(f"--data-dir {given}: the run trained on synthetic eyes; drop --data-dir")
    if Path(stored.data_dir).exists():
        raise ValueError(f"--data-dir {given}: the run's data is still at {stored.data_dir}; drop --data-dir")
    found = {split: len(folder_frames(new, split)) for split in ("train", "validation")}
    if counts and found != counts:
        raise ValueError(f"--data-dir {given}: {found} frames, but the run trained on {counts}")
    return new


def resumed_settings(config: TrainConfig) -> tuple[TrainConfig, dict]:
    """A resumed run's settings, its stored ones (older runs' gaps filled) with what this command
    line may change, and its checkpoint."""
    state = load_checkpoint(config.resume)
    if "optimizer_state" not in state:
        raise CheckpointError(f"{config.resume} holds weights only, not a training state to resume")
    if config.epochs is not None and config.epochs < state["epoch"]:
        raise ValueError(f"--epochs {config.epochs}: {config.resume} already holds {state['epoch']} epochs")
    stored = TrainConfig.from_dict(state["train_config"])
    if stored.alpha_span is None:  # from before alpha_span: its decay ran over its epochs
        stored = stored.replace(alpha_span=min(125, stored.epochs))
    data = stored.data.replace(synthetic_style=ModelCard.from_checkpoint(state, config.resume).train_style)
    if config.data.data_dir is not None:  # the run's data moved
        data = data.replace(data_dir=relocated(data, config.data.data_dir, state.get("data_counts")))
    return config.resumed(stored.replace(data=data)).replace(out_dir=str(Path(config.resume).parent)), state


def settle(config: TrainConfig) -> tuple[TrainConfig, dict | None, dict | None]:
    """The run's complete settings, and the checkpoint it resumes (or the one it starts from).

    A resumed run takes its stored settings (config.TrainConfig.resumed); a fine-tuning run the
    model and preprocessing of its source; alpha's decay span is fixed now, so extending a run
    keeps it."""
    if config.resume and config.init_from:
        raise ValueError("--init-from starts a new run and --resume continues one; give only one")
    resumed = source = None
    if config.resume:
        config, resumed = resumed_settings(config)
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
    if config.schedule is None:  # fine-tuning ends settled at any number of frames; a run of old, plateau
        config = config.replace(schedule="cosine" if config.init_from and not resumed else "plateau")
    if config.alpha_span is None:
        config = config.replace(alpha_span=min(125, config.epochs))
    if config.data.data_dir:  # absolute, so that export and evaluate find it from anywhere
        is_folder(Path(config.data.data_dir))  # a symlink loop is a DataError, not resolve's RuntimeError
        config = config.replace(data=config.data.replace(data_dir=str(Path(config.data.data_dir).resolve())))
    return config, resumed, source


# ---- the training loop ----


def say(text: str) -> None:
    """Print, in one process only (rank 0 under torchrun)."""
    if is_main():
        print(text)


def report_epoch(
    run: Run, metrics: dict, *, first: bool, improved: bool, out_dir: Path, tracker, val_set
) -> None:
    """Rank 0's part of an epoch's end: the line printed, MLflow, the prediction grid (after the
    `first` epoch of this session, every config.grid_every epochs, and the last)."""
    config, epoch = run.config, metrics["epoch"]
    print(
        f"epoch {epoch}/{config.epochs}  loss {metrics['train/loss']:.4f}/{metrics['val/loss']:.4f}  "
        f"pupil IoU {metrics['train/pupil_iou']:.4f}/{metrics['val/pupil_iou']:.4f}  "
        f"mIoU {metrics['val/miou']:.4f}  lr {metrics['lr']:.1e}  "
        f"{metrics['train/images_per_s']:.1f} img/s{'  *best' if improved else ''}"
    )
    if tracker:
        tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
    if first or epoch % config.grid_every == 0 or epoch == config.epochs:
        path = out_dir / f"predictions_epoch{epoch:03d}.png"
        grid = prediction_grid(*grid_frames(run.model, val_set), path=path)
        if tracker:
            tracker.log_artifact(grid, "predictions")


def train_epochs(run: Run, loaders: list, val_set, *, out_dir: Path, tracker, on_epoch_end) -> None:
    """Train, validate, schedule, checkpoint and log each epoch; stop at the last epoch, an early
    stop or the time limit. `loaders`: (train, validation) of data.loading.make_loader."""
    config, loss_fn = run.config, CombinedLoss()
    trainer = wrap(run.model, run.device)  # DistributedDataParallel under torchrun, else the model
    validator = run.model  # unwrapped: validation has no gradients to share, and ranks' shares differ
    if config.compile:
        validator = torch.compile(run.model)
        trainer = validator if trainer is run.model else torch.compile(trainer)
    deadline = time.perf_counter() + 60 * config.time_limit if config.time_limit else math.inf
    first = run.epoch
    for epoch in range(first, config.epochs):
        alpha = alpha_schedule(epoch, config.alpha_span, floor=config.alpha_floor)
        set_epoch(loaders[0], epoch)
        update = {"optimizer": run.optimizer, "scaler": run.scaler, "grad_clip": config.grad_clip}
        try:
            metrics = run_epoch(
                trainer, loaders[0], loss_fn, alpha=alpha, train=True, max_steps=config.max_steps,
                deadline=deadline, desc=f"epoch {epoch + 1} train", **update,
            )  # fmt: skip
        except TrainingError as exc:
            raise TrainingError(f"epoch {epoch + 1}: {exc}") from None
        metrics |= run_epoch(
            validator, loaders[1], loss_fn, alpha=alpha, train=False, max_steps=config.max_steps
        )
        diverged = not math.isfinite(metrics["val/loss"]) or non_finite_tensors(run.model.state_dict())
        if diverged:  # raised before the epoch is saved: checkpoints hold finite weights only
            raise TrainingError(
                f"epoch {epoch + 1}: the run diverged (non-finite validation loss or weights)"
            )
        metrics |= {"lr": run.optimizer.param_groups[0]["lr"], "alpha": alpha, "epoch": epoch + 1}
        # The total falls by itself as alpha shifts weight from Dice to the (negative) surface
        # term, which would hide a plateau: watch the alpha-free part of the validation loss.
        if config.schedule == "cosine":
            run.scheduler.step()
        else:
            run.scheduler.step(metrics["val/ce"] + metrics["val/dice"])
        improved = run.finish_epoch(metrics, out_dir)
        if is_main():
            shown = {"out_dir": out_dir, "tracker": tracker, "val_set": val_set}
            report_epoch(run, metrics, first=epoch == first, improved=improved, **shown)
            if on_epoch_end:
                on_epoch_end(epoch + 1, metrics)
        stop, late = any_rank(stop_requested(), time.perf_counter() > deadline)
        stop_point(stop)  # a SIGTERM during the epoch's end stops the run now, the epoch saved
        if config.early_stop and epoch + 1 - run.best_epoch >= config.early_stop:
            say(f"Early stop: no better validation pupil IoU for {config.early_stop} epochs.")
            return
        if late:
            say(f"Time limit of {config.time_limit:g} min reached in epoch {epoch + 1}; it was the last.")
            return


def close_run(run: Run, out_dir: Path, *, tracker: MlflowRun | None, status: str) -> None:
    """Curves, and for a finished run best.pt, to MLflow; the MLflow run ends whatever happens.
    After a failure, a problem here is a warning: the error that stopped the run is the one to see."""
    try:
        curves = plot_curves(run.history, out_dir / "curves.png") if run.history else None
        if tracker and curves:
            tracker.log_artifact(curves)
        if tracker and status == "FINISHED" and (out_dir / "best.pt").exists():
            tracker.log_artifact(out_dir / "best.pt", "checkpoints")
    except Exception as exc:
        if status == "FINISHED":
            raise
        print(f"warning: closing the run: {one_line(exc)}", file=sys.stderr)
    finally:  # whatever failed above, the MLflow run must not stay RUNNING
        if tracker:
            tracker.end(status)


def resume_command(config: TrainConfig, last: Path) -> str:
    """The command that continues an interrupted run as it was going (its step and time limits too)."""
    extra = "".join(
        f" --{k.replace('_', '-')} {getattr(config, k):g}"
        for k in ("max_steps", "time_limit")
        if getattr(config, k)
    )
    runner = f"torchrun --nproc-per-node {world_size()}" if world_size() > 1 else "python"
    return f"{runner} train_efficientvit.py --resume {last}{extra}"


def stopped(run: Run, out_dir: Path) -> None:
    """Say what an interrupted run kept; last.pt holds the last finished epoch, the one cut short is
    redone on resume, so a resumed run still ends as an uninterrupted one would."""
    if run.epoch > 0:
        last = out_dir / "last.pt"
        print(
            f"\nInterrupted; {last} holds epoch {run.epoch}. Resume with: {resume_command(run.config, last)}"
        )
    else:
        print("\nInterrupted during the first epoch: no checkpoint to resume from.")


def check_split(batch_size: int, processes: int) -> None:
    """The global batch splits evenly over the processes; a ValueError saying so."""
    if batch_size % processes:
        raise ValueError(f"--batch-size {batch_size} does not split over {processes} processes")


def main(config: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train; returns a summary (out_dir, best_metric, best_epoch, metrics, history,
    mlflow_run_id, interrupted). `on_epoch_end(epoch, metrics)` runs after each epoch's
    checkpoints are written (Modal commits its volume there). Under torchrun each process runs
    this, on its own GPU (training/distributed.py); rank 0 picks, holds and writes the run folder."""
    config, resumed, source = settle(config)
    check_split(config.batch_size, world_size())  # before the processes wait on each other
    with process_group(pick_device(config.device)) as device:
        out_dir = Path(config.out_dir) if config.out_dir else None
        if out_dir is None:  # every rank's out_dir is the folder rank 0 made
            out_dir = Path(from_main(new_run_folder(Path("runs"), config.model) if is_main() else None))
        held = claim(out_dir, resuming=resumed is not None) if is_main() else contextlib.nullcontext()
        with held, sigterm_as_interrupt():
            return train(config, device, out_dir, resumed=resumed, source=source, on_epoch_end=on_epoch_end)


def train(config: TrainConfig, device: torch.device, out_dir: Path, *, resumed, source, on_epoch_end) -> dict:
    """main's body, in a folder it holds: model, data, tracking, the epochs, and the end of the run."""
    torch.backends.cudnn.benchmark = device.type == "cuda"  # one input size: find its fastest kernels once
    torch.manual_seed(config.seed)
    run = Run.create(config, device, resumed=resumed, source=source)
    check_memory(run, device)
    train_set, val_set = build_datasets(config.data, config.preprocess, config.augment, seed=config.seed)
    run.data_counts = {"train": len(train_set), "validation": len(val_set)}
    before = (resumed or {}).get("data_counts")
    if before and before != run.data_counts and is_main():  # frames added or removed in place
        print(
            f"warning: {config.data.data_dir} now holds {run.data_counts} frames, but the run trained "
            f"on {before}; it goes on with these",
            file=sys.stderr,
        )
    share = {"device": device, "rank": rank(), "world": world_size()}
    loaders = [make_loader(d, config, shuffle=d is train_set, **share) for d in (train_set, val_set)]
    tracker = start_tracking(run, out_dir, train_set=train_set, val_set=val_set) if is_main() else None
    if source:
        say(f"Starting from the weights of {config.init_from}")
    where = f"{train_set.source_name} data: {len(train_set)} train / {len(val_set)} val, out {out_dir}"
    if run.epoch >= config.epochs:
        say(f"{out_dir / 'last.pt'} holds {run.epoch} epochs, --epochs is {config.epochs}: nothing to train")
    else:
        params, epochs = run.model.get_num_trainable_params(), f"{run.epoch + 1}-{config.epochs}"
        on = f"{device} x {world_size()} processes" if world_size() > 1 else str(device)
        say(f"Training {config.model} ({params:,} params) on {on}, {where}, epochs {epochs}")
    status = "FAILED"
    try:
        train_epochs(run, loaders, val_set, out_dir=out_dir, tracker=tracker, on_epoch_end=on_epoch_end)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        if is_main():
            stopped(run, out_dir)
    except TrainingError as exc:
        kept = (
            f"{out_dir / 'last.pt'} holds epoch {run.epoch}, the last with finite weights"
            if run.epoch
            else "no checkpoint was written"
        )
        raise TrainingError(f"{exc}; {kept}") from None
    finally:
        for loader in loaders:
            close_loader(loader)
        if is_main():
            with no_second_interrupt():
                close_run(run, out_dir, tracker=tracker, status=status)
    if status == "FINISHED":
        say(f"Best validation pupil IoU {run.best:.4f} at epoch {run.best_epoch}: {out_dir / 'best.pt'}")
    summary = {"out_dir": str(out_dir), "best_metric": run.best, "best_epoch": run.best_epoch}
    return summary | {
        "metrics": run.history[-1] if run.history else {},
        "history": run.history,
        "mlflow_run_id": run.mlflow_run_id,
        "interrupted": status == "KILLED",
    }


class RankParser(argparse.ArgumentParser):
    """Under torchrun every process parses the command line: rank 0 alone prints usage and errors.
    torchrun stops every process once one fails, so another rank that finds the error first waits
    for rank 0 to say it (and to fail) rather than exit first and have rank 0 stopped unheard."""

    RANK_0_GRACE_S = 60.0  # never waited out: rank 0 parses the same command line and fails

    def _print_message(self, message: str, file: object = None) -> None:
        if is_main():
            super()._print_message(message, file)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status and not is_main():
            time.sleep(self.RANK_0_GRACE_S)
        super().exit(status, message)


def build_parser() -> tuple[argparse.ArgumentParser, list[Flag]]:
    """The command line: a flag per config.TrainConfig setting (cli.add_settings), and --nproc-per-node."""
    parser = RankParser(description="Train a pupil-segmentation model.", allow_abbrev=False)
    added = add_settings(parser, TrainConfig)
    parser.add_argument(
        "--nproc-per-node",
        type=positive_int_argument,
        default=1,
        metavar="N",
        help="train in N processes, one per GPU (or N on the CPU), as torchrun does, checked before "
        "they start; --batch-size is the global batch (default: %(default)s)",
    )
    return parser, added


def parse_command_line(argv: list[str] | None = None) -> tuple[TrainConfig, int]:
    """The run's settings and its number of processes; a usage error (exit 2) for a bad flag or a
    batch that does not split over the processes."""
    parser, added = build_parser()
    args = parser.parse_args(argv)
    try:
        config = train_config(given(args, added), added)
        check_split(config.batch_size, args.nproc_per_node)
    except ValueError as exc:
        parser.error(str(exc))
    return config, args.nproc_per_node


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return parse_command_line(argv)[0]


def launch_processes(config: TrainConfig, processes: int) -> dict:
    """`main(config)` in `processes` processes (`training.distributed.launch`), once what can be checked
    here is: the settings (`settle`), the device and the run folder (`claim`), each said once,
    before a process starts. A rank's error is raised here as a ValueError of its message."""
    import torch.multiprocessing as mp

    from training.distributed import launch

    settled, resumed, _ = settle(config)
    device = pick_device(settled.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else processes
    if device.type not in ("cuda", "cpu") or gpus < processes:
        have = f"{gpus} CUDA GPUs" if device.type == "cuda" else f"a {device.type} device"
        raise ValueError(
            f"--nproc-per-node {processes}: this machine has {have}; processes need a GPU each or the CPU"
        )
    if settled.out_dir:
        with claim(Path(settled.out_dir), resuming=resumed is not None):
            pass  # free, writable and not another run's: rank 0 claims it for the run
    try:
        return launch(processes, main, config)
    except mp.ProcessRaisedException as exc:  # the rank's traceback: its last line is the error
        raise ValueError(str(exc).strip().splitlines()[-1].split(": ", 1)[-1]) from None
    except mp.ProcessExitedException as exc:  # killed: out of memory, a crash
        raise RuntimeError(f"--nproc-per-node {processes}: {one_line(exc)}") from None


if __name__ == "__main__":
    config, processes = parse_command_line()
    try:
        summary = main(config) if processes == 1 else launch_processes(config, processes)
    # CheckpointError, DataError, TrackingError, TrainingError, a killed DataLoader worker, CUDA out of memory
    except (ValueError, OSError, RuntimeError) as exc:
        if is_main():  # under torchrun, rank 0 alone
            print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # before the first epoch started: nothing to keep
        sys.exit(130)
    sys.exit(130 if summary["interrupted"] else 0)
