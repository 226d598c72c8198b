"""The PtychoPINN-Torch configuration API, as Ptychodus 1.7.0's built-in library builds it.

Ptychodus (``ptychodus/model/ptychopinn_torch/reconstructor.py``) constructs these five
dataclasses in its GUI process from its ``PtychoPINNTorch*`` settings groups, pickles them
into a child process and hands them to :mod:`ptycho_torch.api.base_api`. Field names and
defaults follow Ptychodus' settings, so a payload built by stock Ptychodus constructs
them unchanged.

They are a *request*, not this package's configuration: :mod:`ptycho_torch.api.settings_map`
translates them into :class:`ptycho.config.config.TrainingConfig` (the one source of
truth) and refuses, with one error naming every setting, what this package cannot honour
(``specs/ptychodus_api_spec.md`` §5 lists each field and what it maps to).

Standard library only: the Ptychodus parent process imports this module to build a payload,
and the child unpickles it before any framework is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """How scans become grouped training samples (Ptychodus group ``PtychoPINNTorchData``)."""

    N: int = 128
    C: int = 4
    K: int = 6
    K_quadrant: int = 30
    n_subsample: int = 7
    subsample_seed: int | None = None
    grid_size: tuple[int, int] = (2, 2)
    neighbor_function: str = 'Nearest'
    min_neighbor_distance: float = 0.0
    max_neighbor_distance: float = 3.0
    scan_pattern: str = 'Isotropic'
    normalize: str = 'Batch'
    probe_scale: float = 4.0
    probe_normalize: bool = True
    data_scaling: str = 'Parseval'
    phase_subtraction: bool = True
    probe_ramp_removal: bool = False
    x_bounds: tuple[float, float] = (0.1, 0.9)
    y_bounds: tuple[float, float] = (0.1, 0.9)
    nphotons: float | None = None
    """Photons per pattern; None: the mean detector count of the training patterns."""


@dataclass
class ModelConfig:
    """Network and loss (Ptychodus group ``PtychoPINNTorchModel``)."""

    mode: str = 'Unsupervised'
    object_big: bool = True
    probe_big: bool = True
    pad_object: bool = True
    gaussian_smoothing_sigma: float = 0.0
    loss_function: str = 'Poisson'
    amp_activation: str = 'silu'
    n_filters_scale: int = 2
    probe_mask: bool | None = None
    intensity_scale_trainable: bool = False
    intensity_scale: float = 10000.0
    max_position_jitter: int = 10
    num_datasets: int = 1
    C_model: int = 4
    C_forward: int = 4
    decoder_last_amp_channels: int = 4
    use_shared_decoder: bool = False
    batch_norm: bool = False
    edge_pad: int = 10
    decoder_last_c_outer_fraction: float = 0.125
    offset: int = 6
    cbam_encoder: bool = True
    cbam_bottleneck: bool = False
    cbam_decoder: bool = False
    eca_encoder: bool = False
    eca_decoder: bool = False
    spatial_decoder: bool = False
    decoder_spatial_kernel: int = 7
    amp_loss: str | None = None
    phase_loss: str | None = None
    amp_loss_coeff: float = 1.0
    phase_loss_coeff: float = 1.0
    probe_reference_coeff: float = 0.0
    amplitude_variance_loss: bool = False
    amplitude_variance_coeff: float = 0.01


@dataclass
class TrainingConfig:
    """Optimisation and devices (Ptychodus group ``PtychoPINNTorchTraining``)."""

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    nll: bool = True
    device: str = 'cuda'
    n_devices: int = 1
    strategy: str | None = 'ddp_spawn'
    num_workers: int = 4
    accum_steps: int = 1
    gradient_clip_val: float | None = None
    framework: str = 'Lightning'
    orchestrator: str = 'Lightning'
    scheduler: str = 'Default'
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.1
    epochs_fine_tune: int = 0
    fine_tune_gamma: float = 0.1
    enable_staged_finetuning: bool = False
    finetune_stage1_epochs: int = 7
    finetune_stage2_epochs: int = 7
    finetune_stage3_epochs: int = 5
    finetune_stage1_lr_decoder: float = 0.1
    finetune_stage2_lr_encoder_top: float = 0.01
    finetune_stage2_lr_decoder: float = 0.05
    finetune_stage2_lr_phase_head: float = 0.1
    finetune_stage3_lr_encoder_bottom: float = 0.005
    finetune_stage3_lr_encoder_top: float = 0.01
    finetune_stage3_lr_decoder: float = 0.02
    finetune_stage3_lr_phase_head: float = 0.05
    finetune_skip_stage3: bool = True
    finetune_early_stop_patience: int = 3
    finetune_val_split: float = 0.05
    experiment_name: str = ''
    notes: str = ''
    model_name: str = 'PtychoPINNv2'


@dataclass
class InferenceConfig:
    """Reconstruction and stitching (Ptychodus group ``PtychoPINNTorchInference``)."""

    batch_size: int = 1000
    middle_trim: int = 32
    experiment_number: int = 0
    patch_weighting: str = 'probe'
    pad_eval: bool = True
    window: int = 20


@dataclass
class DatagenConfig:
    """Synthetic-data generation of the original code; Ptychodus passes the defaults."""

    objects_per_probe: int = 4
    diff_per_object: int = 7000
    object_class: str = 'dead_leaves'
    image_size: tuple[int, int] = (250, 250)
    probe_paths: list[str] = field(default_factory=list)
    beamstop_diameter: int = 4


CONFIG_CLASSES = (DataConfig, ModelConfig, TrainingConfig, InferenceConfig)
"""The four configs a checkpoint records (``PtychoModel._extract_configs_from_checkpoint``)."""
