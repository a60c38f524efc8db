"""One training step and one epoch, shared by train_efficientvit.py and benchmark.py.

`run_epoch` serves training and validation alike: batches widened on the device
(data.expand_batch), the forward pass (AMP on CUDA), CombinedLoss, and for training
`train_step`'s backward, clipping and Adam; it returns the epoch's metrics. Losses and pixel
counts stay on the device: on a GPU the host waits for it every SYNC_EVERY steps, not every step.
Under torchrun those waits, and the epoch's metrics, span every rank (distributed.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import default_collate
from tqdm import tqdm

from config import TrainConfig
from core.errors import TrainingError
from core.runfolder import stop_point, stop_requested
from data import EyeDataset, expand_batch
from evaluation.metrics import ConfusionCounter, confusion_metrics
from models import SegmentationModel, build_model
from models.card import ModelCard
from models.checkpoint import model_from_checkpoint, save_checkpoint
from training.distributed import all_reduce, is_main, world_size

LOSS_PARTS = {"loss": "total", "ce": "ce", "dice": "dice", "surface": "surface"}  # metric -> loss key
SYNC_EVERY = 50  # GPU steps between looks at the loss (non-finite?), the clock and SIGTERM


def forward(model, batch: dict, loss_fn, *, alpha: float) -> tuple:
    """The model (AMP on CUDA) and CombinedLoss on a batch: (logits, loss parts)."""
    device = batch["image"].device
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        logits = model(batch["image"])
    return logits, loss_fn(logits, batch, alpha=alpha)


def train_step(model, batch: dict, loss_fn, *, alpha: float, optimizer, scaler, grad_clip: float) -> tuple:
    """`forward`, then backward, gradient clipping and an Adam step: (logits, loss parts). Nothing
    here waits for the GPU; a non-finite loss is caught by run_epoch's next look (on CUDA the
    scaler skips such a step; on the CPU the look is every step)."""
    logits, losses = forward(model, batch, loss_fn, alpha=alpha)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return logits, losses


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`: channels_last on CUDA, as `data.expand_batch` makes the images."""
    return model.to(
        device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format
    )


COSINE_FLOOR = 0.01  # the cosine schedule's last learning rate, of the first


def make_optimiser(model: nn.Module, config: TrainConfig) -> tuple:
    """Adam (lr, weight decay; fused on CUDA, where it takes the scaler's verdict without a wait),
    the schedule (ReduceLROnPlateau on the validation loss, or a cosine over the epochs, stepped
    once an epoch), and the AMP gradient scaler (on only on CUDA): (optimizer, scheduler, scaler)."""
    cuda = next(model.parameters()).device.type == "cuda"
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=cuda
    )
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, config.epochs - 1), eta_min=COSINE_FLOOR * config.lr
        )
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    return optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=cuda)


def step_bytes(model: nn.Module, img_size: tuple[int, int], batch: int) -> int:
    """At least what one training step holds at (H, W) `img_size`: the batch with its loss targets
    (data.expand_batch: 24 bytes a pixel) and the float32 outputs of every module, kept for the
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


class Tally:
    """An epoch's sums: loss parts times images and pixel counts on the device, images on the host."""

    def __init__(self, device: torch.device) -> None:
        self.losses = torch.zeros(len(LOSS_PARTS), device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)  # a non-finite loss so far
        self.counter = ConfusionCounter(device)
        self.images = 0

    def add(self, logits: torch.Tensor, batch: dict, losses: dict) -> None:
        images = batch["image"].shape[0]
        parts = torch.stack([losses[name].detach().float() for name in LOSS_PARTS.values()])
        self.losses += parts * images
        self.bad |= ~torch.isfinite(parts[0])
        self.counter.update(logits.detach().argmax(dim=1), batch["label"])
        self.images += images

    def look(self, *, past_deadline: bool) -> tuple[bool, bool, bool, float]:
        """One wait for the device: (a non-finite loss so far, past the deadline, SIGTERM), each on
        any rank, and this rank's mean loss so far."""
        here = torch.tensor([past_deadline, stop_requested()], dtype=torch.float32, device=self.bad.device)
        flags = all_reduce(torch.cat([self.bad.float()[None], here]), "max")
        bad, late, stop, loss = torch.cat([flags, self.losses[:1]]).tolist()
        return bool(bad), bool(late), bool(stop), loss / max(1, self.images)

    def metrics(self, prefix: str) -> dict[str, float]:
        """The epoch's metrics over every rank: loss parts averaged per image, IoUs over all pixels,
        and the images seen. The epoch's one wait for the device (the second .tolist() finds the
        device done)."""
        counts = all_reduce(torch.cat([self.counter.counts, self.counter.counts.new_tensor([self.images])]))
        sums = all_reduce(self.losses)
        *pixels, images = counts.tolist()
        out = {f"{prefix}/{k}": v / max(1, images) for k, v in zip(LOSS_PARTS, sums.tolist(), strict=True)}
        return out | {f"{prefix}/{k}": v for k, v in confusion_metrics(*pixels).items()} | {"images": images}


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
    """One pass over `loader` (of data.EyeDataset items), training (optimizer and scaler needed) or
    validating; returns train/* or val/* metrics: loss parts averaged per image, IoUs over all
    pixels, images/s. Training stops early after `max_steps` batches or at `deadline` (a
    perf_counter time); a non-finite loss raises TrainingError, a SIGTERM KeyboardInterrupt."""
    prefix, device = ("train" if train else "val"), next(model.parameters()).device
    model.train(train)
    tally, preprocess_config = Tally(device), loader.dataset.preprocess_config
    every = 1 if device.type == "cpu" else SYNC_EVERY  # a look costs nothing on the CPU
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    bar = tqdm(total=steps, desc=desc or prefix, leave=False, dynamic_ncols=True, disable=not is_main())
    start = tick = time.perf_counter()
    wait = 0.0
    with torch.set_grad_enabled(train):
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            wait += time.perf_counter() - tick  # time spent waiting on the data loader
            batch = expand_batch(batch, device, preprocess_config)
            if train:
                update = {"optimizer": optimizer, "scaler": scaler, "grad_clip": grad_clip}
                logits, losses = train_step(model, batch, loss_fn, alpha=alpha, **update)
            else:
                logits, losses = forward(model, batch, loss_fn, alpha=alpha)
            tally.add(logits, batch, losses)
            bar.update()
            # training only: the ranks' validation shares may differ by a batch, so they must not meet
            # per step (validation has no deadline, and a SIGTERM is seen at the epoch's end)
            if train and ((step + 1) % every == 0 or step + 1 == steps):
                bad, late, stop, loss = tally.look(past_deadline=train and time.perf_counter() > deadline)
                stop_point(stop)  # a SIGTERM (on any rank) since the last look stops the run here
                if bad:  # validation's shows in val/loss, which the caller checks
                    raise TrainingError(f"non-finite loss {'at' if every == 1 else 'by'} step {step + 1}")
                bar.set_postfix(loss=f"{loss:.3f}")
                if late:
                    break
            tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    metrics = tally.metrics(prefix)
    metrics[f"{prefix}/images_per_s"] = metrics.pop("images") / elapsed
    if train:
        metrics["train/data_wait_fraction"] = wait / elapsed
    return metrics


@torch.no_grad()
def grid_frames(model, dataset: EyeDataset, n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed set of validation frames as display images, labels and predictions (N, H, W)."""
    model.eval()
    items = default_collate([dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // n))][:n])
    batch = expand_batch(items, next(model.parameters()).device, dataset.preprocess_config)
    preds = model(batch["image"]).argmax(dim=1).cpu().numpy().astype(np.uint8)
    return items["image"][:, 0].numpy(), items["label"].numpy(), preds  # shown as the model sees them


@dataclass
class Run:
    """A training run's model, optimiser and progress: what a checkpoint saves and resume restores."""

    config: TrainConfig
    model: SegmentationModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
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
            if resumed.get("cuda_rng_state") is not None and device.type == "cuda":
                torch.cuda.set_rng_state(resumed["cuda_rng_state"], device)
            run.epoch, run.best, run.best_epoch = (resumed[k] for k in ("epoch", "best_metric", "best_epoch"))
            run.history, run.mlflow_run_id = list(resumed["history"]), resumed.get("mlflow_run_id")
        return run

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
            "cuda_rng_state": torch.cuda.get_rng_state(device)
            if (device := self.device).type == "cuda"
            else None,
            "best_metric": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "mlflow_run_id": self.mlflow_run_id,
            "data_counts": self.data_counts,
        }

    def finish_epoch(self, metrics: dict, out_dir: Path) -> bool:
        """Record an epoch, write last.pt, then best.pt if it is the best; True if it is. last.pt
        first: a stop between the two leaves a run that resumes (best.pt then the previous best).
        Under torchrun every rank records, rank 0 alone writes."""
        before = (self.epoch, self.best, self.best_epoch)
        improved = metrics["val/pupil_iou"] > self.best
        self.epoch += 1
        self.history.append(metrics)
        if improved:
            self.best, self.best_epoch = metrics["val/pupil_iou"], self.epoch
        if not is_main():
            return improved
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
    batch = c.batch_size // world_size()  # this process's share of the batch
    largest = max((c.data.img_size, *c.data.sizes()), key=lambda size: size[0] * size[1])
    needed, free = step_bytes(run.model, largest, batch), available_bytes(device)
    if free is not None and needed > free:
        (h, w), gb = largest, 1e9
        raise ValueError(
            f"--img-size {h}x{w} with --batch-size {c.batch_size} needs at least {needed / gb:.1f} GB for "
            f"one training step, and {device} has {free / gb:.1f} GB free: use a smaller size or batch"
        )
