"""Tiny shared inputs for the torch backend tests (kept small: 2 shared CPU cores)."""

from __future__ import annotations

import functools
from pathlib import Path

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.simulation import simulate_dataset


@functools.lru_cache(maxsize=None)
def tiny_raw(n_positions: int = 64, seed: int = 0):
    """A small simulated scan (N=64) with ground truth."""
    return simulate_dataset(N=64, n_positions=n_positions, seed=seed, object_size=140)


def tiny_config(output_dir: Path, *, gridsize: int = 1, nepochs: int = 2, **overrides
                ) -> TrainingConfig:
    """A fast training config: narrow network, few groups, CSV logger, CPU."""
    values = dict(model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1),
                  nepochs=nepochs, batch_size=16, n_groups=48, output_dir=output_dir,
                  backend='pytorch', nphotons=1e9, validation_split=0.0,
                  accelerator='cpu')
    values.update(overrides)
    return TrainingConfig(**values)
