"""One training step and one epoch, shared by train_efficientvit.py and benchmark.py.

`run_epoch` serves training and validation alike: batches to the device, the forward pass (AMP
on CUDA), CombinedLoss, and for training `train_step`'s backward, clipping and Adam; it returns
the epoch's metrics. `make_loader` fixes the batch order by (seed, epoch) so a resumed run sees
the same batches.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import TrainConfig
from data import EyeDataset
from metrics import ConfusionCounter
from models import SegmentationModel, build_model
from models.card import ModelCard
from models.checkpoint import model_from_checkpoint, save_checkpoint
from runfolder import stop_point

LOSS_PARTS = {"loss": "total", "ce": "ce", "dice": "dice", "surface": "surface"}  # metric -> loss key


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and what is kept."""


def forward(model, batch: dict, loss_fn, *, alpha: float) -> tuple:
    """The model (AMP on CUDA) and CombinedLoss on a batch: (logits, loss parts)."""
    device = batch["image"].device
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        logits = model(batch["image"])
    return logits, loss_fn(logits, batch, alpha=alpha)


def train_step(model, batch: dict, loss_fn, *, alpha: float, optimizer, scaler, grad_clip: float) -> tuple:
    """`forward`, then backward, gradient clipping and an Adam step: (logits, loss parts)."""
    logits, losses = forward(model, batch, loss_fn, alpha=alpha)
    if not torch.isfinite(losses["total"]):
        raise TrainingError("non-finite loss")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return logits, losses


def to_device(batch: dict, device: torch.device) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if device.type == "cuda":
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`: channels_last on CUDA, as `to_device` makes the images."""
    return model.to(
        device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format
    )


def make_optimiser(model: nn.Module, config: TrainConfig) -> tuple:
    """Adam (lr, weight decay), ReduceLROnPlateau on the validation loss, and the AMP gradient
    scaler (on only on CUDA): (optimizer, scheduler, scaler)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
    )
    device = next(model.parameters()).device
    return optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=device.type == "cuda")


def step_bytes(model: nn.Module, img_size: tuple[int, int], batch: int) -> int:
    """At least what one training step holds at (H, W) `img_size`: the batch with its loss targets
    (data.EyeDataset: 24 bytes a pixel) and the float32 outputs of every module, kept for the
    backward pass (counted on a small frame, scaled by area). A lower bound: gradients and
    workspace come on top (ShallowNet at 400x640, batch 8: 7.4 GB here, 10 GB measured)."""
    small, counted = (64, 96), []
    hooks = [m.register_forward_hook(lambda m, i, o: counted.append(o.numel())) for m in model.modules()
             if not list(m.children())]  # fmt: skip
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, *small, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    stored = 2 if next(model.parameters()).device.type == "cuda" else 4  # float16 under autocast
    per_pixel = 24 + stored * sum(counted) / (small[0] * small[1])
    return int(batch * img_size[0] * img_size[1] * per_pixel)


def available_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, or the machine's available memory (Linux); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def run_epoch(
    model,
    loader,
    loss_fn,
    *,
    alpha: float,
    train: bool,
    optimizer=None,
    scaler=None,
    grad_clip: float = 1.0,
    max_steps: int | None = None,
    deadline: float = math.inf,
    desc: str = "",
) -> dict[str, float]:
    """One pass over `loader`, training (optimizer and scaler needed) or validating; returns
    train/* or val/* metrics: loss parts averaged per batch, IoUs over all pixels, images/s.
    Training stops early after `max_steps` batches or at `deadline` (a perf_counter time)."""
    prefix, device = ("train" if train else "val"), next(model.parameters()).device
    model.train(train)
    totals, counter, batches, images, wait = dict.fromkeys(LOSS_PARTS, 0.0), ConfusionCounter(), 0, 0, 0.0
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    bar = tqdm(total=steps, desc=desc or prefix, leave=False, dynamic_ncols=True)
    start = tick = time.perf_counter()
    with torch.set_grad_enabled(train):
        for step, batch in enumerate(loader):
            stop_point()  # a SIGTERM since the last batch stops the run here
            if step >= steps or (train and time.perf_counter() > deadline):
                break
            wait += time.perf_counter() - tick  # time spent waiting on the data loader
            batch = to_device(batch, device)
            try:
                if train:
                    update = {"optimizer": optimizer, "scaler": scaler, "grad_clip": grad_clip}
                    logits, losses = train_step(model, batch, loss_fn, alpha=alpha, **update)
                else:
                    logits, losses = forward(model, batch, loss_fn, alpha=alpha)
            except TrainingError as exc:
                raise TrainingError(f"{exc} at step {step + 1}") from None
            counter.update(logits.detach().argmax(dim=1), batch["label"])
            for key, name in LOSS_PARTS.items():
                totals[key] += losses[name].item()
            batches, images = batches + 1, images + batch["image"].shape[0]
            bar.set_postfix(loss=f"{totals['loss'] / batches:.3f}")
            bar.update()
            tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    metrics = {f"{prefix}/{k}": v / max(1, batches) for k, v in totals.items()}
    metrics.update({f"{prefix}/{k}": v for k, v in counter.compute().items()})
    metrics[f"{prefix}/images_per_s"] = images / elapsed
    if train:
        metrics["train/data_wait_fraction"] = wait / elapsed
    return metrics


def ignore_sigterm(worker: int) -> None:
    """A DataLoader worker leaves SIGTERM to the main process, which stops the run and its workers
    (Slurm and `docker stop` signal every process of the job)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: EyeDataset, config: TrainConfig, *, shuffle: bool, epoch: int) -> DataLoader:
    # The order depends only on (seed, epoch), so a resumed run sees the same batches.
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.workers,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        drop_last=shuffle and len(dataset) > config.batch_size,
        worker_init_fn=ignore_sigterm if config.workers else None,
    )


@torch.no_grad()
def grid_frames(model, dataset: EyeDataset, n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed set of validation frames as display images, labels and predictions (N, H, W)."""
    model.eval()
    items = [dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // n))][:n]
    x = torch.stack([it["image"] for it in items]).to(next(model.parameters()).device)
    preds = model(x).argmax(dim=1).cpu().numpy().astype(np.uint8)
    p = dataset.preprocess_config
    shown = ((x[:, 0].cpu().numpy() * p.std + p.mean) * 255).clip(0, 255).astype(np.uint8)
    labels = torch.stack([it["label"] for it in items]).numpy().astype(np.uint8)
    return shown, labels, preds


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
    data_counts: dict[str, int] | None = None  # frames per split: a resumed run's data checked by it

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
            "data_counts": self.data_counts,
        }

    def finish_epoch(self, metrics: dict, out_dir: Path) -> bool:
        """Record an epoch, write last.pt, then best.pt if it is the best; True if it is. last.pt
        first: a stop between the two leaves a run that resumes (best.pt then the previous best)."""
        before = (self.epoch, self.best, self.best_epoch)
        improved = metrics["val/pupil_iou"] > self.best
        self.epoch += 1
        self.history.append(metrics)
        if improved:
            self.best, self.best_epoch = metrics["val/pupil_iou"], self.epoch
        state = self.checkpoint(metrics)
        try:
            save_checkpoint(state, out_dir / "last.pt")
        except BaseException:  # not saved: the epoch is not done
            (self.epoch, self.best, self.best_epoch), _ = before, self.history.pop()
            raise
        if improved:
            save_checkpoint(state, out_dir / "best.pt")
        return improved


def check_memory(run: Run, device: torch.device) -> None:
    """Refuse a size and batch whose training step cannot fit here, before the kernel kills it."""
    c = run.config
    needed, free = step_bytes(run.model, c.data.img_size, c.batch_size), available_bytes(device)
    if free is not None and needed > free:
        (h, w), gb = c.data.img_size, 1e9
        raise ValueError(
            f"--img-size {h}x{w} with --batch-size {c.batch_size} needs at least {needed / gb:.1f} GB for "
            f"one training step, and {device} has {free / gb:.1f} GB free: use a smaller size or batch"
        )
