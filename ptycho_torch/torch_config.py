"""The torch backend's internal view of the run configuration.

The canonical run configuration is :mod:`ptycho.config.config`, shared with TensorFlow and
Ptychodus. These dataclasses are the torch backend's own view of it, split by concern
(data, model, training; inference reads the shared ``InferenceConfig`` itself) and named
the way the torch code uses them (``grid_size``, ``mode``, ``epochs``, ``K``, ``silu``).
:mod:`ptycho_torch.config_bridge` converts both ways; nothing else should build them from
scratch. (The PtychoPINN-Torch configuration API that Ptychodus builds is
:mod:`ptycho_torch.config_params`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODES: tuple[str, ...] = ('unsupervised', 'supervised')
TORCH_ACTIVATIONS: tuple[str, ...] = ('sigmoid', 'silu', 'softplus', 'relu')


@dataclass
class DataConfig:
    """How raw scans become grouped, normalised training samples."""

    N: int = 64
    grid_size: tuple[int, int] = (1, 1)
    K: int = 4
    n_groups: int | None = None
    nphotons: float = 1e9
    probe_scale: float = 4.0
    sequential_sampling: bool = False
    seed: int = 42

    @property
    def C(self) -> int:
        """Patterns per sample."""
        return self.grid_size[0] * self.grid_size[1]


@dataclass
class ModelConfig:
    """Network and physics layers (architecture.md sections 5 and 6)."""

    N: int = 64
    grid_size: tuple[int, int] = (1, 1)
    n_filters_scale: int = 2
    mode: str = 'unsupervised'
    amp_activation: str = 'sigmoid'
    object_big: bool = True
    probe_big: bool = True
    probe_mask: bool = False
    pad_object: bool = True
    probe_scale: float = 4.0
    gaussian_smoothing_sigma: float = 0.0
    input_features: str = 'backprojection'
    backprojection_iterations: int = 8
    skip_connections: bool = True
    network_precision: str = 'float32'

    @property
    def C(self) -> int:
        return self.grid_size[0] * self.grid_size[1]


@dataclass
class TrainingConfig:
    """Optimisation and Lightning trainer settings."""

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    nll_weight: float = 1.0
    mae_weight: float = 0.0
    realspace_mae_weight: float = 0.0
    realspace_weight: float = 0.0
    nphotons: float = 1e9
    probe_trainable: bool = False
    intensity_scale_trainable: bool = True
    output_dir: Path = Path('training_outputs')
    seed: int = 42
    validation_split: float = 0.05
    early_stopping_patience: int = 0
    lr_plateau_patience: int = 3
    logger: str = 'csv'
    accelerator: str = 'auto'
    num_workers: int = 0
    debug: bool = False
