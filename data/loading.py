"""DataLoaders for training: made once per run, workers kept alive, the epoch told by the sampler.

`EpochSampler` yields `(epoch, index)` pairs that data.EyeDataset reads, so persistent workers
augment each epoch as a fresh copy of the dataset would. Its order depends only on (seed, epoch),
so a resumed run sees the same batches; with several processes (DistributedDataParallel) each
rank takes every world-th index of that order, so batch k of the N ranks together is batch k of
one process with their global batch size.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from config import TrainConfig
from data.dataset import EyeDataset


class EpochSampler(Sampler):
    """`(epoch, index)` pairs of a dataset of n frames for one rank of `world`.

    shuffle: a permutation seeded by (seed, epoch), trimmed to whole global batches of
    `batch_size` when there is more than one (the last, partial one would weigh its few frames as
    much as a full batch); else every index in order, the ranks' shares differing by at most one.
    """

    def __init__(
        self, n: int, *, shuffle: bool, seed: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.n, self.shuffle, self.seed, self.batch_size = n, shuffle, seed, batch_size
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def kept(self) -> int:
        """Frames of the epoch, all ranks together."""
        whole = self.shuffle and self.n > self.batch_size
        return self.n // self.batch_size * self.batch_size if whole else self.n

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()[: self.kept]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self._order()[self.rank :: self.world])

    def __len__(self) -> int:
        return len(range(self.rank, self.kept, self.world))


class SizedBatches(Sampler):
    """Multi-scale training: `sampler`'s pairs in batches of `batch_size`, each batch's frames
    as `(epoch, index, (h, w))` at one of `sizes`, drawn by (seed, epoch, batch) alone, so every
    rank's batch k has the same size and a resumed run the same batches."""

    def __init__(self, sampler: EpochSampler, batch_size: int, sizes: tuple[tuple[int, int], ...]) -> None:
        self.sampler, self.batch_size, self.sizes = sampler, batch_size, sizes

    def __iter__(self) -> Iterator[list[tuple[int, int, tuple[int, int]]]]:
        pairs = list(self.sampler)
        rng = np.random.default_rng((self.sampler.seed, self.sampler.epoch, 7))
        picks = rng.integers(len(self.sizes), size=len(self))
        for k, start in enumerate(range(0, len(pairs), self.batch_size)):
            size = self.sizes[picks[k]]
            yield [(epoch, index, size) for epoch, index in pairs[start : start + self.batch_size]]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a make_loader loader's sampler the epoch (plain or multi-scale)."""
    multi_scale = isinstance(loader.batch_sampler, SizedBatches)
    (loader.batch_sampler.sampler if multi_scale else loader.sampler).set_epoch(epoch)


def worker_init(worker: int) -> None:
    """Each DataLoader worker: one OpenCV thread (workers are the parallelism; a thread pool per
    worker would oversubscribe the cores), and SIGTERM left to the main process, which stops the
    run and its workers (Slurm and `docker stop` signal every process of the job).

    A forked worker inherits the one thread from make_loader: cv2.setNumThreads in a forked child
    whose parent ran OpenCV's pool deadlocks. Spawned workers (macOS, Windows) start fresh."""
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: EyeDataset,
    config: TrainConfig,
    *,
    shuffle: bool,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """This rank's loader of `dataset` for training on `device`, its batches `config.batch_size /
    world` frames (a training loader's at `config.data`'s train_sizes, if any: SizedBatches); call
    `set_epoch(loader, epoch)` before each epoch. Workers persist across
    epochs; batches come in pinned memory for a GPU."""
    if config.workers:  # the workers do the OpenCV work, each on one core (see worker_init)
        cv2.setNumThreads(1)
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=config.seed, batch_size=config.batch_size, rank=rank, world=world
    )
    sizes = config.data.sizes() if shuffle else ()  # validation: every frame at img_size
    batching: dict = {"batch_size": config.batch_size // world, "sampler": sampler}
    if sizes:
        batching = {"batch_sampler": SizedBatches(sampler, config.batch_size // world, sizes)}
    return DataLoader(
        dataset,
        **batching,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if config.workers else None,
        persistent_workers=config.workers > 0,
        prefetch_factor=4 if config.workers else None,
    )


def close_loader(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now. Left to the garbage collector, they would outlive
    an error's traceback and, ignoring SIGTERM (worker_init), hang the interpreter's exit, where
    multiprocessing terminates and joins its children."""
    iterator = loader._iterator  # where torch keeps the iterator that owns persistent workers
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
