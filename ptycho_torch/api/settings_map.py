"""Ptychodus' PtychoPINN-Torch settings -> this package's configuration, in one place.

Every field of :mod:`ptycho_torch.config_params` falls in one of four groups
(``specs/ptychodus_api_spec.md`` §5 lists them):

* **mapped**: becomes a field of :class:`ptycho.config.config.TrainingConfig`, or a trainer,
  stitching or data-selection option of :mod:`ptycho_torch.api.base_api`;
* **fixed**: names a choice of the original code; this package implements one value of it
  (e.g. ``neighbor_function='Nearest'``), any other is refused;
* **no counterpart**: a knob of a component this package's network or pipeline does not
  have (CBAM attention, staged fine-tuning, ...). Ptychodus' default value is accepted (it
  is not a request the user made; :func:`describe_defaults` logs which apply); any other
  value is refused;
* **inactive**: only read when another setting selects its feature (``K_quadrant`` with
  ``neighbor_function='4_quadrant'``), which is itself refused.

Refusals are collected and raised together as one :class:`UnsupportedSettingError`, each
line naming the Ptychodus setting, the value found and what this package accepts, so a
user fixes them all at once rather than one traceback at a time.

Standard library and :mod:`ptycho.config.config` only (no torch).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho.config import config as core
from ptycho_torch.config_params import DataConfig, InferenceConfig, ModelConfig, TrainingConfig

GROUPS = {DataConfig: 'PtychoPINNTorchData', ModelConfig: 'PtychoPINNTorchModel',
          TrainingConfig: 'PtychoPINNTorchTraining', InferenceConfig: 'PtychoPINNTorchInference'}
"""Ptychodus settings group of each config class (the INI section a user edits)."""

SETTING_NAMES = {
    (DataConfig, 'N'): 'model_size', (DataConfig, 'C'): 'num_channels',
    (DataConfig, 'K'): 'num_nearest_neighbors_for_lookup',
    (DataConfig, 'K_quadrant'): 'num_nearest_neighbors_for_quadrant_lookup',
    (DataConfig, 'n_subsample'): 'coordinate_subsampling_factor',
    (DataConfig, 'grid_size'): 'grid_size_y/grid_size_x',
    (DataConfig, 'neighbor_function'): 'neighbor_lookup_method',
    (DataConfig, 'normalize'): 'data_normalization_mode',
    (DataConfig, 'probe_normalize'): 'normalize_probe',
    (DataConfig, 'data_scaling'): 'data_scaling_method',
    (DataConfig, 'phase_subtraction'): 'subtract_mean_phase',
    (DataConfig, 'x_bounds'): 'x_lower_bound/x_upper_bound',
    (DataConfig, 'y_bounds'): 'y_lower_bound/y_upper_bound',
    (ModelConfig, 'amp_activation'): 'amplitude_activation_function',
    (ModelConfig, 'n_filters_scale'): 'num_filters_scale',
    (ModelConfig, 'C_model'): 'num_channels', (ModelConfig, 'C_forward'): 'num_channels',
    (ModelConfig, 'decoder_last_amp_channels'): 'num_channels',
    (ModelConfig, 'batch_norm'): 'use_batch_normalization',
    (ModelConfig, 'amp_loss'): 'auxiliary_amplitude_loss',
    (ModelConfig, 'phase_loss'): 'auxiliary_phase_loss',
    (ModelConfig, 'amp_loss_coeff'): 'auxiliary_amplitude_loss_coeff',
    (ModelConfig, 'phase_loss_coeff'): 'auxiliary_phase_loss_coeff',
    (ModelConfig, 'probe_reference_coeff'): 'probe_reference_loss_coeff',
    (TrainingConfig, 'nll'): 'use_negative_log_likelihood_loss',
    (TrainingConfig, 'num_workers'): 'num_dataloader_workers',
    (TrainingConfig, 'accum_steps'): 'gradient_accumulation_steps',
    (TrainingConfig, 'strategy'): 'distributed_strategy',
    (TrainingConfig, 'scheduler'): 'learning_rate_scheduler',
    (TrainingConfig, 'warmup_epochs'): 'learning_rate_warmup_epochs',
    (TrainingConfig, 'min_lr_ratio'): 'minimum_learning_rate_ratio',
    (TrainingConfig, 'epochs_fine_tune'): 'epochs_finetune',
    (TrainingConfig, 'fine_tune_gamma'): 'finetune_gamma',
    (TrainingConfig, 'finetune_val_split'): 'finetune_validation_split',
    (InferenceConfig, 'patch_weighting'): 'patch_weighting_method',
}

# "mapped": honoured, translated by Request below (and by base_api for the data window).
MAPPED: dict[type, tuple[str, ...]] = {
    DataConfig: ('N', 'C', 'K', 'grid_size', 'x_bounds', 'y_bounds', 'nphotons',
                 'subsample_seed'),
    ModelConfig: ('mode', 'object_big', 'probe_big', 'pad_object', 'loss_function',
                  'amp_activation', 'n_filters_scale', 'probe_mask', 'intensity_scale_trainable',
                  'C_model', 'C_forward', 'decoder_last_amp_channels'),
    TrainingConfig: ('epochs', 'batch_size', 'learning_rate', 'nll', 'device', 'n_devices',
                     'strategy', 'num_workers'),
    InferenceConfig: ('batch_size', 'middle_trim', 'patch_weighting'),
}

# "recorded": descriptive text kept in the checkpoint with the configs; no behaviour.
RECORDED: dict[type, tuple[str, ...]] = {TrainingConfig: ('experiment_name', 'notes',
                                                         'model_name')}

# "fixed": the one value this package implements of a choice the original code offered.
FIXED: dict[tuple[type, str], tuple[Any, str]] = {
    (DataConfig, 'neighbor_function'): ('Nearest', 'groups are a position and its nearest '
                                                   'neighbours'),
    (DataConfig, 'normalize'): ('Batch', 'one normalisation factor for the whole dataset'),
    (DataConfig, 'data_scaling'): ('Parseval', 'amplitudes scaled by total diffracted energy'),
    (DataConfig, 'probe_normalize'): (True, 'the probe is normalised by its energy'),
    (DataConfig, 'probe_scale'): (core.PROBE_SCALE, 'the probe is normalised by its energy, '
                                                    'not scaled'),
    (DataConfig, 'probe_ramp_removal'): (False, 'the probe is used as given'),
    (TrainingConfig, 'framework'): ('Lightning', 'training runs on Lightning'),
    (TrainingConfig, 'orchestrator'): ('Lightning', 'training runs on Lightning'),
    (TrainingConfig, 'scheduler'): ('Default', "the learning rate is halved after "
                                               "lr_plateau_patience flat epochs"),
}

# "no counterpart": knobs of components this package does not have.
NO_COUNTERPART: dict[type, tuple[str, ...]] = {
    DataConfig: ('n_subsample', 'phase_subtraction'),
    ModelConfig: ('gaussian_smoothing_sigma', 'intensity_scale', 'max_position_jitter',
                  'num_datasets', 'use_shared_decoder', 'batch_norm', 'edge_pad',
                  'decoder_last_c_outer_fraction', 'offset', 'cbam_encoder', 'cbam_bottleneck',
                  'cbam_decoder', 'eca_encoder', 'eca_decoder', 'spatial_decoder', 'amp_loss',
                  'phase_loss', 'probe_reference_coeff', 'amplitude_variance_loss'),
    TrainingConfig: ('accum_steps', 'gradient_clip_val', 'epochs_fine_tune',
                     'enable_staged_finetuning'),
    InferenceConfig: ('experiment_number', 'pad_eval', 'window'),
}

# "inactive": (class, field) -> the setting that would switch it on. Not checked: every
# switch is itself fixed or without counterpart above, so turning one on is refused there.
INACTIVE_UNLESS: dict[tuple[type, str], tuple[type, str]] = {
    (DataConfig, 'K_quadrant'): (DataConfig, 'neighbor_function'),
    (DataConfig, 'min_neighbor_distance'): (DataConfig, 'neighbor_function'),
    (DataConfig, 'max_neighbor_distance'): (DataConfig, 'neighbor_function'),
    (DataConfig, 'scan_pattern'): (DataConfig, 'neighbor_function'),
    (ModelConfig, 'decoder_spatial_kernel'): (ModelConfig, 'spatial_decoder'),
    (ModelConfig, 'amp_loss_coeff'): (ModelConfig, 'amp_loss'),
    (ModelConfig, 'phase_loss_coeff'): (ModelConfig, 'phase_loss'),
    (ModelConfig, 'amplitude_variance_coeff'): (ModelConfig, 'amplitude_variance_loss'),
    (TrainingConfig, 'warmup_epochs'): (TrainingConfig, 'scheduler'),
    (TrainingConfig, 'min_lr_ratio'): (TrainingConfig, 'scheduler'),
    (TrainingConfig, 'fine_tune_gamma'): (TrainingConfig, 'epochs_fine_tune'),
    **{(TrainingConfig, name): (TrainingConfig, 'enable_staged_finetuning')
       for name in ('finetune_stage1_epochs', 'finetune_stage2_epochs', 'finetune_stage3_epochs',
                    'finetune_stage1_lr_decoder', 'finetune_stage2_lr_encoder_top',
                    'finetune_stage2_lr_decoder', 'finetune_stage2_lr_phase_head',
                    'finetune_stage3_lr_encoder_bottom', 'finetune_stage3_lr_encoder_top',
                    'finetune_stage3_lr_decoder', 'finetune_stage3_lr_phase_head',
                    'finetune_skip_stage3', 'finetune_early_stop_patience',
                    'finetune_val_split')},
}

MODES = {'unsupervised': 'pinn', 'supervised': 'supervised'}
ACTIVATIONS = {'silu': 'swish', 'swish': 'swish', 'sigmoid': 'sigmoid', 'softplus': 'softplus',
               'relu': 'relu'}
LOSSES = ('Poisson', 'MAE')
DEVICES = ('cuda', 'gpu', 'cpu', 'auto')
STRATEGIES = ('ddp_spawn', 'ddp', 'auto')
PATCH_WEIGHTINGS = ('probe', 'uniform')


class UnsupportedSettingError(ValueError):
    """One or more PtychoPINN-Torch settings this package cannot honour (all are listed)."""


def setting_name(cls: type, name: str) -> str:
    """``PtychoPINNTorchModel.cbam_encoder``: how a user finds it in Ptychodus' settings."""
    return f'{GROUPS[cls]}.{SETTING_NAMES.get((cls, name), name)}'


def _default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default if f.default is not dataclasses.MISSING else f.default_factory()
    raise KeyError(name)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(value, (int, float)):
        return math.isclose(float(value), expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, tuple):
        return tuple(value) == expected
    return value == expected


@dataclass(frozen=True)
class Request:
    """The four configs Ptychodus sends, checked and translated together."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    inference: InferenceConfig

    def _configs(self) -> dict[type, Any]:
        return {DataConfig: self.data, ModelConfig: self.model, TrainingConfig: self.training,
                InferenceConfig: self.inference}

    def problems(self) -> list[str]:
        """Every setting this package cannot honour, one line each (empty: all fine)."""
        configs = self._configs()
        out: list[str] = []
        for cls, config in configs.items():
            if not isinstance(config, cls):
                out.append(f'{GROUPS[cls]}: expected a ptycho_torch.config_params.{cls.__name__}, '
                           f'found {type(config).__name__}')
        if out:
            return out

        for (cls, name), (value, meaning) in FIXED.items():
            found = getattr(configs[cls], name)
            if not _same(found, value):
                out.append(f'{setting_name(cls, name)} = {found!r}: this package implements '
                           f'only {value!r} ({meaning})')
        for cls, names in NO_COUNTERPART.items():
            for name in names:
                found, default = getattr(configs[cls], name), _default(cls, name)
                if not _same(found, default) and not (name == 'gradient_clip_val' and not found):
                    out.append(f'{setting_name(cls, name)} = {found!r}: no counterpart in this '
                               f'package (specs/ptychodus_api_spec.md §5); leave it at '
                               f'{default!r}')
        out += self._mapped_problems()
        return out

    def _mapped_problems(self) -> list[str]:
        d, m, t, i = self.data, self.model, self.training, self.inference
        out: list[str] = []
        grid = tuple(d.grid_size)
        if len(grid) != 2 or grid[0] != grid[1] or int(grid[0]) < 1:
            out.append(f'{setting_name(DataConfig, "grid_size")} = {grid!r}: expected a square '
                       f'grid (g, g)')
        else:
            C = int(grid[0]) ** 2
            for cls, name, value in ((DataConfig, 'C', d.C), (ModelConfig, 'C_model', m.C_model),
                                     (ModelConfig, 'C_forward', m.C_forward),
                                     (ModelConfig, 'decoder_last_amp_channels',
                                      m.decoder_last_amp_channels)):
                if value != C:
                    out.append(f'{cls.__name__}.{name} ({setting_name(cls, name)}) = {value!r}: '
                               f'expected grid_size_x * grid_size_y = {C}')
        if d.N not in core.PATCH_SIZES:
            out.append(f'{setting_name(DataConfig, "N")} = {d.N!r}: expected one of '
                       f'{list(core.PATCH_SIZES)}')
        for name in ('x_bounds', 'y_bounds'):
            lo, hi = (float(v) for v in getattr(d, name))
            if not 0.0 <= lo < hi <= 1.0:
                out.append(f'{setting_name(DataConfig, name)} = {(lo, hi)!r}: expected '
                           f'0 <= lower < upper <= 1')
        if str(m.mode).casefold() not in MODES:
            out.append(f'{setting_name(ModelConfig, "mode")} = {m.mode!r}: expected '
                       f'Unsupervised or Supervised')
        if m.amp_activation not in ACTIVATIONS:
            out.append(f'{setting_name(ModelConfig, "amp_activation")} = {m.amp_activation!r}: '
                       f'expected one of {sorted(ACTIVATIONS)}')
        if m.loss_function not in LOSSES:
            out.append(f'{setting_name(ModelConfig, "loss_function")} = {m.loss_function!r}: '
                       f'expected one of {list(LOSSES)}')
        elif (m.loss_function == 'Poisson') != bool(t.nll):
            out.append(f'{setting_name(TrainingConfig, "nll")} = {t.nll!r} contradicts '
                       f'{setting_name(ModelConfig, "loss_function")} = {m.loss_function!r}: the '
                       f'Poisson loss is the negative log-likelihood (set both Poisson/True or '
                       f'MAE/False)')
        if str(t.device).casefold() not in DEVICES:
            out.append(f'{setting_name(TrainingConfig, "device")} = {t.device!r}: expected one of '
                       f'{list(DEVICES)}')
        if t.n_devices < 1:
            out.append(f'{setting_name(TrainingConfig, "n_devices")} = {t.n_devices!r}: '
                       f'expected >= 1')
        if t.strategy not in (*STRATEGIES, None):
            out.append(f'{setting_name(TrainingConfig, "strategy")} = {t.strategy!r}: expected '
                       f'one of {list(STRATEGIES)}')
        if i.patch_weighting not in PATCH_WEIGHTINGS:
            out.append(f'{setting_name(InferenceConfig, "patch_weighting")} = '
                       f'{i.patch_weighting!r}: expected one of {list(PATCH_WEIGHTINGS)}')
        if not 0 <= i.middle_trim <= d.N:
            out.append(f'{setting_name(InferenceConfig, "middle_trim")} = {i.middle_trim!r}: '
                       f'expected 0 (the default crop) .. N = {d.N}')
        return out

    def check(self) -> 'Request':
        """Raise :class:`UnsupportedSettingError` listing every problem; else self."""
        problems = self.problems()
        if problems:
            raise UnsupportedSettingError(
                'PtychoPINN-Torch settings this package cannot honour (change them in '
                'Ptychodus\' settings):\n  - ' + '\n  - '.join(problems))
        return self

    # -- translation ------------------------------------------------------------------
    @property
    def gridsize(self) -> int:
        return int(self.data.grid_size[0])

    def model_config(self) -> core.ModelConfig:
        """This package's network for the request (other model fields keep their defaults)."""
        m = self.model
        return core.ModelConfig(
            N=int(self.data.N), gridsize=self.gridsize, n_filters_scale=int(m.n_filters_scale),
            model_type=MODES[str(m.mode).casefold()],
            amp_activation=ACTIVATIONS[m.amp_activation], object_big=bool(m.object_big),
            probe_big=bool(m.probe_big), probe_mask=bool(m.probe_mask),
            pad_object=bool(m.pad_object))

    def training_config(self, *, nphotons: float, output_dir: Path) -> core.TrainingConfig:
        """The core training config (``backend='pytorch'``); ``nphotons`` from the data unless
        the request sets it."""
        d, m, t = self.data, self.model, self.training
        poisson = m.loss_function == 'Poisson'
        devices, strategy = self.trainer_devices()
        return core.TrainingConfig(
            model=self.model_config(), batch_size=int(t.batch_size), nepochs=int(t.epochs),
            learning_rate=float(t.learning_rate), nll_weight=1.0 if poisson else 0.0,
            mae_weight=0.0 if poisson else 1.0,
            nphotons=float(d.nphotons) if d.nphotons is not None else float(nphotons),
            neighbor_count=int(d.K), intensity_scale_trainable=bool(m.intensity_scale_trainable),
            output_dir=Path(output_dir), backend='pytorch', subsample_seed=d.subsample_seed,
            accelerator=self.accelerator(), devices=devices, strategy=strategy,
            num_workers=int(t.num_workers))

    def accelerator(self) -> str:
        """Lightning accelerator for ``device``; 'cuda' falls back to the CPU, as Ptychodus'
        own child process announces, when no GPU is visible."""
        device = str(self.training.device).casefold()
        if device in ('cuda', 'gpu'):
            import importlib.util
            if importlib.util.find_spec('torch') is not None:
                import torch
                if torch.cuda.is_available():
                    return 'gpu'
            return 'cpu'
        return device

    def trainer_devices(self) -> tuple[int, str]:
        """``(devices, strategy)`` for Lightning: ``n_devices`` (Ptychodus clamps it to the
        visible GPUs) and, with more than one, the requested DDP strategy."""
        devices = int(self.training.n_devices) if self.accelerator() == 'gpu' else 1
        strategy = self.training.strategy or 'auto'
        return devices, strategy if devices > 1 else 'auto'

    def stitch_crop(self) -> int | None:
        """Central crop of each group used in stitching (None: the package default)."""
        return int(self.inference.middle_trim) or None


def describe_defaults(request: Request) -> list[str]:
    """The settings accepted only because they hold Ptychodus' default (for the log)."""
    configs = request._configs()
    return [setting_name(cls, name) for cls, names in NO_COUNTERPART.items() for name in names
            if _same(getattr(configs[cls], name), _default(cls, name))]


def from_core(config: core.TrainingConfig | core.InferenceConfig
              ) -> tuple[DataConfig, ModelConfig, TrainingConfig, InferenceConfig]:
    """The request that reproduces ``config`` (for checkpoints trained outside Ptychodus)."""
    model = config.model
    C = model.gridsize ** 2
    data = DataConfig(N=model.N, C=C, K=config.neighbor_count,
                      grid_size=(model.gridsize, model.gridsize),
                      subsample_seed=config.subsample_seed, x_bounds=(0.0, 1.0),
                      y_bounds=(0.0, 1.0), nphotons=getattr(config, 'nphotons', None))
    activation = 'silu' if model.amp_activation == 'swish' else model.amp_activation
    training_core = config if isinstance(config, core.TrainingConfig) else None
    poisson = training_core is None or training_core.nll_weight > 0
    api_model = ModelConfig(
        mode='Supervised' if model.model_type == 'supervised' else 'Unsupervised',
        object_big=model.object_big, probe_big=model.probe_big, pad_object=model.pad_object,
        amp_activation=activation, n_filters_scale=model.n_filters_scale,
        probe_mask=model.probe_mask, loss_function='Poisson' if poisson else 'MAE',
        intensity_scale_trainable=bool(getattr(config, 'intensity_scale_trainable', True)),
        C_model=C, C_forward=C, decoder_last_amp_channels=C)
    training = TrainingConfig(nll=poisson, num_workers=int(getattr(config, 'num_workers', 0)))
    if training_core is not None:
        training = dataclasses.replace(training, epochs=training_core.nepochs,
                                       batch_size=training_core.batch_size,
                                       learning_rate=training_core.learning_rate)
    return data, api_model, training, InferenceConfig(middle_trim=0, patch_weighting='uniform')
