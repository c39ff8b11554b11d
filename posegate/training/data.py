"""The training dataset and the port's persistent loader, made resumable.

The port keeps data-loader workers alive across epochs by iterating one endless batch sampler instead
of rebuilding the loader each epoch. Here that sampler also shards like DistributedSampler (shuffle
with seed + epoch, drop_last, rank::world) and hands each index its own augmentation seed, so a run
that resumes at (epoch, batch) sees exactly the samples an uninterrupted run would.
"""
from __future__ import annotations

import copy
import random
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from posegate.training import augment, targets


class CocoTrainDataset(Dataset):
    """Prepared labels + an image folder -> encoded samples; an item is requested as (index, seed)."""

    def __init__(self, labels: list[dict], images_folder: Path, transforms=None, stride=targets.STRIDE,
                 sigma=targets.SIGMA, thickness=targets.PAF_THICKNESS):
        self.labels, self.images_folder = labels, Path(images_folder)
        self.transforms = augment.train_chain() if transforms is None else transforms
        self.stride, self.sigma, self.thickness = stride, sigma, thickness

    def __len__(self):
        return len(self.labels)

    def read_image(self, label) -> np.ndarray:
        path = self.images_folder / label["img_paths"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{path}: training image missing or unreadable (label of image "
                                    f"{label.get('image_id')}); check --images")
        return image

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, item)
        label = copy.deepcopy(self.labels[index])  # the transforms mutate it
        image = self.read_image(label)
        mask = targets.crowd_mask(label["segmentations"], *image.shape[:2])
        sample = augment.apply({"image": image, "mask": mask, "label": label}, self.transforms, random.Random(seed))
        return {k: torch.from_numpy(v) for k, v in
                targets.encode(sample, self.stride, self.sigma, self.thickness).items()}


class EndlessShardSampler(Sampler):
    """Yields lists of (index, seed) batches forever: epoch after epoch, from (start_epoch, start_batch)."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle: bool = True, start_epoch: int = 0, start_batch: int = 0, multiple: int = 1):
        if size < batch_size * world * multiple:
            raise ValueError(f"{size} training samples cannot fill {multiple} batch(es) of {batch_size} on "
                             f"{world} process(es)")
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.shuffle = seed, shuffle
        self.start_epoch, self.start_batch = start_epoch, start_batch
        self.multiple = multiple  # batches per optimizer step: an epoch never ends inside an accumulation

    @property
    def batches_per_epoch(self) -> int:
        whole = self.size // (self.batch_size * self.world)  # drop_last on every process alike
        return whole // self.multiple * self.multiple

    def epoch_indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        usable = self.batches_per_epoch * self.batch_size * self.world
        return order[:usable][self.rank::self.world]

    def __iter__(self):
        epoch, skip = self.start_epoch, self.start_batch
        while True:
            idx = self.epoch_indices(epoch)
            for b in range(skip, self.batches_per_epoch):
                chunk = idx[b * self.batch_size:(b + 1) * self.batch_size]
                # A seed unique to (epoch, sample), independent of rank, worker and batch position.
                yield [(i, (self.seed * 1_000_003 + epoch) * 10_000_019 + i) for i in chunk]
            epoch, skip = epoch + 1, 0

    def __len__(self):
        return self.batches_per_epoch  # per epoch; the iterator itself never ends


def make_loader(dataset: Dataset, sampler: EndlessShardSampler, workers: int = 0) -> DataLoader:
    """One loader for the whole run: with workers they persist, since its single iterator never ends."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0)
