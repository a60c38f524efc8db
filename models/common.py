"""Building blocks shared by every model: the Conv+BatchNorm unit and the segmentation wrapper.

Every model here is an encoder (image -> list of multi-scale features), a decoder (features ->
one feature map) and a 1x1 head (feature map -> class logits), upsampled to the input size.
BatchNorm only ever appears inside `ConvBN`, so `fuse_model` can fold all of it away for
inference and export.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d; `fuse()` folds the BN into the conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "conv",
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        )
        self.add_module("bn", nn.BatchNorm2d(out_channels))
        # Residual branches start at zero (bn_weight_init=0), so each block begins as identity.
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        ).to(conv.weight.device, conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


def fuse_model(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of `model` with every ConvBN replaced by its fused Conv2d."""
    fused = copy.deepcopy(model).eval()

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, ConvBN):
                setattr(parent, name, child.fuse())
            else:
                replace(child)

    replace(fused)
    return fused


class SegmentationModel(nn.Module):
    """Encoder -> decoder -> head, logits resized to the input's height and width.

    Subclasses build the three parts and set `self.config` (a dataclass stored in checkpoints).
    """

    config: object

    def __init__(self, encoder: nn.Module, decoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)  # list of (B, C_i, H / s_i, W / s_i)
        logits = self.head(self.decoder(features))
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits  # (B, num_classes, H, W)

    def get_num_trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def get_num_total_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def param_split(self) -> dict[str, int]:
        """Trainable parameters of each part: encoder, decoder, head."""
        return {
            part: sum(p.numel() for p in getattr(self, part).parameters() if p.requires_grad)
            for part in ("encoder", "decoder", "head")
        }
