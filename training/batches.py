"""Training batches: each epoch a new shuffle of the training images, split across
processes, moved to the run's device without a wait for it.

The order is ``DistributedSampler``'s (seeded by the run's seed and the epoch, the same on
every process), so a run resumed from ``(epoch, batch_in_epoch)`` sees the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from .distributed import DistContext


class TrainingBatches:
    """This process's batches, epoch after epoch, from ``(epoch, batch_in_epoch)`` on.

    ``epoch`` and ``batch_in_epoch`` are where the next batch comes from (checkpoints save
    them; a resumed run sets them). Incomplete batches at the end of an epoch are dropped.
    """

    def __init__(self, dataset, ctx: DistContext, batch_size: int, seed: int, use_labels: bool):
        self.sampler = DistributedSampler(
            range(len(dataset)),
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.batch_size = batch_size
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(
                f"batch_size {batch_size} x {ctx.world_size} processes exceeds the "
                f"{len(dataset)} training images"
            )
        self.device = DeviceBatches(dataset, ctx.device, use_labels)
        self.epoch, self.batch_in_epoch = 0, 0
        self._order: torch.Tensor | None = None

    def __iter__(self) -> TrainingBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.batch_in_epoch >= self.per_epoch:  # also when resumed at the end of an epoch
            self.epoch, self.batch_in_epoch, self._order = self.epoch + 1, 0, None
        if self._order is None:
            self.sampler.set_epoch(self.epoch)
            self._order = self.device.epoch_order(list(iter(self.sampler)))
        first = self.batch_in_epoch * self.batch_size
        self.batch_in_epoch += 1
        return self.device(self._order[first : first + self.batch_size])


class DeviceBatches:
    """Training batches on the run's device without a wait for the GPU per step.

    A copy from ordinary (pageable) host memory to a GPU waits for the GPU's stream, so on
    CUDA the training images move to the GPU once when they fit (up to 4 GiB and a quarter
    of the free memory: Fashion-MNIST is 47 MB, CIFAR-10 150 MB); otherwise each batch is
    gathered into pinned memory and copied without waiting. On CPU nothing moves.
    """

    LIMIT = 4 * 2**30

    def __init__(self, dataset, device: torch.device, use_labels: bool):
        self.device = device
        self.images = dataset.images
        self.labels = dataset.labels if use_labels else None
        self.resident = device.type != "cuda"
        if device.type == "cuda":
            size = self.images.nbytes + (self.labels.nbytes if self.labels is not None else 0)
            free, _ = torch.cuda.mem_get_info(device)
            if size <= min(self.LIMIT, free // 4):
                self.images = self.images.to(device)
                self.labels = self.labels.to(device) if self.labels is not None else None
                self.resident = True

    def epoch_order(self, indices: list[int]) -> torch.Tensor:
        """An epoch's image order, where the images are (one copy per epoch)."""
        order = torch.tensor(indices)
        return order.to(self.device) if self.resident else order

    def __call__(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.images[indices]
        labels = self.labels[indices] if self.labels is not None else None
        if not self.resident:
            x = x.pin_memory().to(self.device, non_blocking=True)
            if labels is not None:
                labels = labels.pin_memory().to(self.device, non_blocking=True)
        return x, labels
