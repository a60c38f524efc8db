"""`python -m models [--json] [--size HxW]`: parameters, encoder / decoder split, MACs, output shape."""

from __future__ import annotations

import argparse
import copy
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from config.flags import size_argument
from models import MODEL_NAMES, SegmentationModel, build_model


def _counted_forward(model: SegmentationModel, size: tuple[int, int]) -> tuple[list[int], int]:
    """Output shape and MACs of one (1, C, H, W) forward pass in eval mode (convs and matmuls).

    On a copy on the meta device: shapes only, no arithmetic, so a 400x640 ShallowNet costs no
    more than a tiny model; the counts are those of the real forward.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        shape = list(meta(torch.zeros(1, meta.config.in_channels, *size, device="meta")).shape)
    return shape, counter.get_total_flops() // 2


def count_macs(model: SegmentationModel, size: tuple[int, int] = (400, 640)) -> int:
    """Multiply-accumulates of one (1, C, H, W) forward pass in eval mode (convs and matmuls)."""
    return _counted_forward(model, size)[1]


def describe(name: str, size: tuple[int, int] = (400, 640)) -> dict:
    """A model's parameters (all, encoder, decoder + head), MACs and output shape at (H, W) `size`."""
    model = build_model(name)
    output_shape, macs = _counted_forward(model, size)
    split = model.param_split()
    return {
        "name": name,
        "params": model.get_num_trainable_params(),
        "encoder_params": split["encoder"],
        "decoder_params": split["decoder"] + split["head"],
        "macs": macs,
        "output_shape": output_shape,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--size", type=size_argument, default=(400, 640), help="input HxW (default: 400x640)")
    args = parser.parse_args(argv)
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
