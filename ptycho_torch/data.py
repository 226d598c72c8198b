"""Torch views of the core data container, and the Lightning data module.

The core :class:`ptycho.loader.PtychoDataContainer` is channels-last numpy
((B, N, N, C), offsets (B, 1, 2, C)); the torch model is channels-first. The conversion
happens once here, copying (the core container is never modified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ptycho.loader import PtychoDataContainer, container_from_raw

logger = logging.getLogger(__name__)


@dataclass
class PtychoDataContainerTorch:
    """Channels-first tensors of one dataset.

    ``X`` (B, C, N, N) float32 normalised amplitudes; ``local_offsets`` (B, C, 2) and
    ``global_offsets`` (B, 2) as (x, y) float64; ``probe`` (N, N) complex64; ``Y``
    (B, C, N, N) complex64 ground-truth patches or None.
    """

    X: Tensor
    local_offsets: Tensor
    global_offsets: Tensor
    probe: Tensor
    norm_factor: float
    Y: Tensor | None = None
    core: PtychoDataContainer | None = None

    @classmethod
    def from_container(cls, container: PtychoDataContainer) -> 'PtychoDataContainerTorch':
        X = np.ascontiguousarray(np.transpose(np.asarray(container.X, np.float32), (0, 3, 1, 2)))
        local = np.asarray(container.local_offsets, np.float64)
        glob = np.asarray(container.global_offsets, np.float64)
        B, C = X.shape[0], X.shape[1]
        if local.shape != (B, 1, 2, C) or glob.shape != (B, 1, 2, 1):
            raise ValueError(f'PtychoDataContainerTorch: offsets expected (B, 1, 2, C) = '
                             f'{(B, 1, 2, C)} and (B, 1, 2, 1), found {local.shape} and {glob.shape}')
        Y = None
        if container.Y is not None:
            Y = torch.from_numpy(np.ascontiguousarray(
                np.transpose(np.asarray(container.Y, np.complex64), (0, 3, 1, 2))))
        return cls(X=torch.from_numpy(X),
                   local_offsets=torch.from_numpy(np.ascontiguousarray(local[:, 0].transpose(0, 2, 1))),
                   global_offsets=torch.from_numpy(np.ascontiguousarray(glob[:, 0, :, 0])),
                   probe=torch.from_numpy(np.asarray(container.probe, np.complex64).copy()),
                   norm_factor=float(container.norm_factor), Y=Y, core=container)

    @property
    def N(self) -> int:
        return int(self.X.shape[-1])

    @property
    def C(self) -> int:
        return int(self.X.shape[1])

    def __len__(self) -> int:
        return int(self.X.shape[0])


def as_torch_container(data: Any, config: Any) -> PtychoDataContainerTorch:
    """Accept a ``RawData``, a core container or a torch container; group/normalise as needed."""
    if isinstance(data, PtychoDataContainerTorch):
        return data
    if isinstance(data, PtychoDataContainer):
        return PtychoDataContainerTorch.from_container(data)
    if hasattr(data, 'generate_grouped_data'):
        return PtychoDataContainerTorch.from_container(container_from_raw(data, config))
    raise TypeError(f'expected RawData, PtychoDataContainer or PtychoDataContainerTorch, '
                    f'found {type(data).__name__}')


class PtychoDataset(Dataset):
    """Samples ``{'X', 'offsets'[, 'Y']}`` of a torch container."""

    def __init__(self, container: PtychoDataContainerTorch, with_truth: bool = False,
                 features: Tensor | None = None) -> None:
        if with_truth and container.Y is None:
            raise ValueError('supervised training needs ground-truth patches: the dataset has no '
                             'objectGuess (container.Y is None)')
        if features is not None and len(features) != len(container.X):
            raise ValueError(f'features: expected {len(container.X)} groups (one per sample), '
                             f'found {len(features)}')
        self.X = container.X
        self.offsets = container.local_offsets.to(torch.float32)
        self.Y = container.Y if with_truth else None
        self.features = features

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {'X': self.X[index], 'offsets': self.offsets[index]}
        if self.features is not None:
            item['features'] = self.features[index]
        if self.Y is not None:
            item['Y'] = self.Y[index]
        return item


class EpochSeededSampler(Sampler[int]):
    """Shuffles with a permutation fixed by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from a
    checkpoint sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


class PtychoDataModule(pl.LightningDataModule):
    """Train/validation loaders with seeded shuffling and a seeded hold-out split.

    Validation uses ``val`` when given, else ``validation_split`` of the training groups
    (chosen with the seed); with neither there is no validation loop.
    """

    def __init__(self, train: PtychoDataContainerTorch, val: PtychoDataContainerTorch | None,
                 batch_size: int, seed: int, validation_split: float = 0.0,
                 num_workers: int = 0, with_truth: bool = False,
                 features: Callable[[PtychoDataContainerTorch], Tensor | None] | None = None
                 ) -> None:
        """``features``: computes per-group network input features once (see
        :func:`ptycho_torch.workflows.training.backprojection_cache`); None: computed per step."""
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        full = PtychoDataset(train, with_truth, features(train) if features else None)
        self.val_set: Dataset | None = (
            PtychoDataset(val, with_truth, features(val) if features else None)
            if val is not None else None)
        self.train_set: Dataset = full
        n = len(full)
        n_val = int(round(validation_split * n)) if val is None else 0
        if n_val >= 1 and n - n_val >= 1:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
            self.val_set = Subset(full, sorted(order[:n_val]))
            self.train_set = Subset(full, sorted(order[n_val:]))
        logger.info('Data: %d training groups, %d validation groups', len(self.train_set),
                    0 if self.val_set is None else len(self.val_set))

    @property
    def has_validation(self) -> bool:
        return self.val_set is not None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=EpochSeededSampler(len(self.train_set), self.seed),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            return []  # type: ignore[return-value]
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 64), shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
