"""`python -m models [--json] [--size HxW]`: parameters, encoder / decoder split, MACs, output shape."""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from config import size_argument
from models import MODEL_NAMES, SegmentationModel, build_model


def count_macs(model: SegmentationModel, size: tuple[int, int] = (400, 640)) -> int:
    """Multiply-accumulates of one (1, 1, H, W) forward pass in eval mode (convs and matmuls)."""
    x = torch.zeros(1, model.config.in_channels, *size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


def describe(name: str, size: tuple[int, int] = (400, 640)) -> dict:
    model = build_model(name).eval()
    with torch.no_grad():
        output_shape = list(model(torch.zeros(1, model.config.in_channels, *size)).shape)
    split = model.param_split()
    return {
        "name": name,
        "params": model.get_num_trainable_params(),
        "encoder_params": split["encoder"],
        "decoder_params": split["decoder"] + split["head"],
        "macs": count_macs(model, size),
        "output_shape": output_shape,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--size", type=size_argument, default=(400, 640), help="input HxW (default: 400x640)")
    args = parser.parse_args()
    rows = [describe(name, args.size) for name in MODEL_NAMES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    h, w = args.size
    print(f"| model | params | encoder | decoder + head | MACs ({h}x{w}) | output |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['params']:,} | {r['encoder_params']:,} | {r['decoder_params']:,} "
            f"| {r['macs'] / 1e6:,.1f} M | {tuple(r['output_shape'])} |"
        )


if __name__ == "__main__":
    main()
