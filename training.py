"""One training step and one epoch, shared by train_efficientvit.py and benchmark.py.

`run_epoch` serves training and validation alike: batches to the device, the forward pass (AMP
on CUDA), CombinedLoss, and for training `train_step`'s backward, clipping and Adam; it returns
the epoch's metrics. `make_loader` fixes the batch order by (seed, epoch) so a resumed run sees
the same batches.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import TrainConfig
from data import EyeDataset
from metrics import ConfusionCounter

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
