"""CombinedLoss: boundary-weighted cross-entropy + generalised Dice + surface loss.

The loss of the ShallowNet / RITnet training this project is compared against:

    total = CE + alpha * Dice + (1 - alpha) * Surface

with alpha decaying linearly from 1 toward 0 over `span` epochs (training: min(125, epochs)) and
then held at a floor. Early on, Dice drives region overlap; later, the surface loss pulls the predicted
boundary onto the true one. The surface term is a mean of probability x signed distance, which
is negative wherever the prediction sits inside its class region, so the total can go below
zero: that is expected, not a bug.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def alpha_schedule(epoch: int, span: int, *, floor: float = 0.0) -> float:
    """Dice weight for 0-based `epoch`: 1 at the start, linear down to `floor` over `span` epochs."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"alpha floor must be in [0, 1], got {floor}")
    return max(floor, 1.0 - epoch / max(1, span))


def weighted_cross_entropy(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel CE scaled by (1 + boundary weight map); logits (B, C, H, W), label/weight (B, H, W)."""
    return (F.cross_entropy(logits, label, reduction="none") * (1.0 + weight)).mean()


def generalised_dice_loss(probs: torch.Tensor, label: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - generalised Dice with class weights 1 / (pixel count)^2, per image, averaged.

    A class absent from an image gets weight 0 (its weight would be undefined), so a closed-eye
    frame is scored on its background alone.
    """
    onehot = F.one_hot(label, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    counts = onehot.sum(dim=(2, 3))  # (B, C)
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1.0) ** 2, torch.zeros_like(counts))
    intersection = (weights * (probs * onehot).sum(dim=(2, 3))).sum(dim=1)
    union = (weights * (probs + onehot).sum(dim=(2, 3))).sum(dim=1)
    return (1.0 - 2.0 * intersection / union.clamp(min=eps)).mean()


def surface_loss(probs: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Mean over pixels and classes of probability x signed distance (negative inside a class)."""
    return (probs * dist).mean()


class CombinedLoss(nn.Module):
    """Returns a dict: `total` (to backpropagate) and `ce`, `dice`, `surface` (for logging).

    `targets` is a batch of data.EyeDataset items: label (B, H, W) int64, weight (B, H, W) boundary
    map, dist (B, C, H, W) signed distance maps over the image diagonal.
    """

    def forward(self, logits: torch.Tensor, targets: dict[str, torch.Tensor], *, alpha: float) -> dict:
        logits = logits.float()  # (B, C, H, W); losses in fp32 even under autocast
        probs = logits.softmax(dim=1)
        ce = weighted_cross_entropy(logits, targets["label"], targets["weight"])
        dice = generalised_dice_loss(probs, targets["label"])
        surface = surface_loss(probs, targets["dist"])
        total = ce + alpha * dice + (1.0 - alpha) * surface
        return {"total": total, "ce": ce, "dice": dice, "surface": surface}
