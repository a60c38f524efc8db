"""Several processes, one per GPU: what `torchrun --nproc-per-node N train_efficientvit.py` needs.

torchrun starts N copies of the script with RANK, LOCAL_RANK and WORLD_SIZE set; `start` joins
them into a process group (NCCL on CUDA, gloo on CPU) and gives each its device. Everything here
is a no-op for a single process, so the training code calls it unconditionally. Rank 0 alone
writes checkpoints, logs to MLflow and prints; every rank trains on its share of each global
batch (data.loading.EpochSampler), and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=10)  # a rank that stops answering fails the others after this
GRACE_S = 120  # launch: how long the other ranks may run on once rank 0 has ended
_DEVICE = [torch.device("cpu")]  # where tensors for collectives live: this rank's GPU under NCCL


def world_size() -> int:
    """The number of processes: the process group's, else what torchrun set (before the group exists)."""
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank: the process group's, else what torchrun set (before the group exists)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the process that writes files and logs: rank 0, or the only one."""
    return rank() == 0


def launched() -> bool:
    """Started by torchrun (or another launcher setting WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the run and yield this rank's device (cuda:LOCAL_RANK on
    GPUs); without torchrun, `device` itself and nothing else happens."""
    if not launched():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device {device.type}: several processes need CUDA GPUs or the CPU")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    _DEVICE[0] = device
    try:
        yield device
    finally:
        dist.destroy_process_group()
        _DEVICE[0] = torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """`tensor` summed (or maxed) over the ranks, in place; unchanged for a single process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def any_rank(*flags: bool) -> list[bool]:
    """Each flag, true where it is true on any rank: the same verdict everywhere (every rank must
    call this at the same point), so that all stop at the same step."""
    if not dist.is_initialized():
        return list(flags)
    verdict = all_reduce(torch.tensor(flags, dtype=torch.float32, device=_DEVICE[0]), "max")
    return [bool(v) for v in verdict.tolist()]


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (a run folder it created, say); `value` for a single process."""
    if not dist.is_initialized():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(sum) with its gradient: each rank's input feeds every rank's output, so the
    gradient of an input is the sum of the output gradients over the ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return all_reduce(x.clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return all_reduce(grad.clone())


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any device: each
    rank's per-channel sums are added up across the ranks, gradients too. What torch's
    SyncBatchNorm does on GPUs, for the CPU (gloo), which it refuses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        stats = _SumOverRanks.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0)  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))  # unbiased, as BatchNorm keeps
        shape = (1, c, 1, 1)
        scale = (self.weight / torch.sqrt(var + self.eps)).view(shape)
        return (x - mean.view(shape)) * scale + self.bias.view(shape)


def _global_batchnorms(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with every BatchNorm2d swapped, in place, for a GlobalBatchNorm2d sharing its tensors
    (as torch's convert_sync_batchnorm shares them)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            swapped = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum)
            swapped.weight, swapped.bias = child.weight, child.bias  # the optimiser's parameters
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(swapped, buffer, getattr(child, buffer))
            setattr(module, name, swapped)
        else:
            _global_batchnorms(child)
    return module


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model DistributedDataParallel-wrapped across the ranks, its BatchNorms synchronised (the
    statistics of the global batch, as one process sees them), or `model` itself. `model` is changed
    in place, so its state_dict (same keys) is the trained one."""
    if not dist.is_initialized():
        return model
    if device.type == "cuda":  # replaces the children of `model` itself, not the model
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return torch.nn.parallel.DistributedDataParallel(_global_batchnorms(model))


def _run_rank(local_rank: int, world: int, port: int, fn: Callable, args: tuple, result: str) -> None:
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    value = fn(*args)
    if local_rank == 0:  # a file, not a queue: a large result would block the rank's exit on a pipe
        Path(result).write_bytes(pickle.dumps(value))


def launch(
    world: int, fn: Callable, *args: Any, tick: Callable[[], None] = lambda: None, every_s: float = 60
) -> Any:
    """`torchrun --nproc-per-node world` from Python: fn(*args) in `world` fresh processes, each
    with the environment torchrun gives; this one waits, calling `tick` every `every_s` seconds
    (Modal commits its volume there), and returns rank 0's result. A rank that raises stops the
    others and raises here (torch.multiprocessing.ProcessRaisedException); once rank 0 has ended
    (with a result that reports a failure, say), the others get GRACE_S to end before they are
    stopped; a rank 0 interrupted is a KeyboardInterrupt here. `fn` must be importable by name: the
    processes are spawned, not forked."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:  # a free port for the ranks to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="ranks-") as tmp:
        result = Path(tmp) / "rank0.pickle"
        context = mp.spawn(_run_rank, args=(world, port, fn, args, str(result)), nprocs=world, join=False)
        try:
            _wait(context, tick, every_s)
        except mp.ProcessExitedException:
            if not result.exists():  # stopped by a signal before rank 0 had a result
                raise
        if not result.exists():  # torch's spawn wrapper ends an interrupted rank quietly
            raise KeyboardInterrupt("rank 0 was interrupted")
        return pickle.loads(result.read_bytes())


def _wait(context: Any, tick: Callable[[], None], every_s: float) -> None:
    """Join the ranks, calling `tick` meanwhile; the others are stopped GRACE_S after rank 0 ended."""
    ended = None
    while not context.join(timeout=every_s):
        tick()
        if context.processes[0].exitcode is not None:  # the other ranks may wait on it forever
            ended = ended or time.monotonic()
            if time.monotonic() - ended > GRACE_S:
                for process in context.processes[1:]:
                    process.terminate()
