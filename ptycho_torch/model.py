"""The PtychoPINN network, its physics forward model and the Lightning module.

Layout follows architecture.md section 5 literally, so the TensorFlow twin has the same
layers and parameter count; the physics and loss follow section 6. Tensors are
channels-first inside torch: diffraction (B, C, N, N), offsets (B, C, 2) as (x, y).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn

from ptycho.config.config import with_legacy_model_defaults
from ptycho.photons import nphotons_or_default
from ptycho.network_layout import decoder_steps, input_channels, level_widths, skip_plan
from ptycho_torch import config_params, physics
from ptycho_torch.torch_config import (MODES, TORCH_ACTIVATIONS, ModelConfig, TrainingConfig,
                                        view_from_dict)

logger = logging.getLogger(__name__)

POISSON_EPS = 1e-6


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


def _activation(name: str) -> nn.Module:
    table: dict[str, type[nn.Module]] = {'sigmoid': nn.Sigmoid, 'silu': nn.SiLU,
                                         'swish': nn.SiLU, 'softplus': nn.Softplus,
                                         'relu': nn.ReLU}
    if name not in table:
        raise ValueError(f'amp_activation: expected one of {list(TORCH_ACTIVATIONS)}, found {name!r}')
    return table[name]()


class PiTanh(nn.Module):
    """Phase activation: ``pi * tanh``, bounded to (-pi, pi)."""

    def forward(self, x: Tensor) -> Tensor:
        return math.pi * torch.tanh(x)


def _conv_pair(c_in: int, width: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]


class Encoder(nn.Module):
    """Pairs of 3x3 convs and 2x max-pooling down to an 8x8 bottleneck.

    Returns the bottleneck and each level's features before pooling (for skip connections).
    """

    def __init__(self, channels: int, widths: list[int]) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        c_in = channels
        for width in widths:
            self.levels.append(nn.Sequential(*_conv_pair(c_in, width)))
            c_in = width
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
            x = self.pool(x)
        return x, features


def _centre_crop(x: Tensor, size: int) -> Tensor:
    start = (x.shape[-1] - size) // 2
    return x[..., start:start + size, start:start + size]


class Decoder(nn.Module):
    """Upsampling decoder with an output activation and an optional periphery head."""

    def __init__(self, c_in: int, steps: list[int], channels: int, activation: nn.Module,
                 N: int, pad_object: bool, probe_big: bool,
                 skips: list[tuple[int, int] | None] | None = None,
                 skip_widths: list[int] | None = None) -> None:
        super().__init__()
        self.skips = skips or [None] * len(steps)
        self.up = nn.Upsample(scale_factor=2, mode='nearest')
        self.steps = nn.ModuleList()
        for width, skip in zip(steps, self.skips):
            extra = skip_widths[skip[0]] if skip is not None and skip_widths else 0
            self.steps.append(nn.Sequential(*_conv_pair(c_in + extra, width)))
            c_in = width
        self.head = nn.Conv2d(c_in, channels, 3, padding=1)
        self.activation = activation
        self.pad = N // 4 if pad_object else 0
        self.periphery: nn.Module | None = None
        if pad_object and probe_big:
            self.periphery = nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'),
                                           nn.Conv2d(c_in, channels, 3, padding=1))
            self.register_buffer('outer', 1.0 - physics.central_window_mask(N), persistent=False)

    def forward(self, z: Tensor, encoder_features: list[Tensor] | None = None) -> Tensor:
        features = z
        for step, skip in zip(self.steps, self.skips):
            features = self.up(features)
            if skip is not None and encoder_features is not None:
                features = torch.cat([features, _centre_crop(encoder_features[skip[0]], skip[1])],
                                     dim=1)
            features = step(features)
        out = self.activation(self.head(features))
        if self.pad:
            out = nn.functional.pad(out, (self.pad,) * 4)
        if self.periphery is not None:
            out = out + self.activation(self.periphery(features)) * self.outer
        return out


class PtychoNet(nn.Module):
    """Encoder and two decoders: network input (B, C_in, N, N) -> amplitude, phase (B, C, N, N)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_widths(config.N, config.n_filters_scale)
        steps = decoder_steps(widths, config.pad_object)
        C = config.C
        skips = (skip_plan(config.N, widths, steps, config.pad_object)
                 if config.skip_connections else None)
        self.encoder = Encoder(input_channels(C, config.input_features), widths)
        self.decoder_amp = Decoder(widths[-1], steps, C, _activation(config.amp_activation),
                                   config.N, config.pad_object, config.probe_big, skips, widths)
        self.decoder_phase = Decoder(widths[-1], steps, C, PiTanh(), config.N,
                                     config.pad_object, config.probe_big, skips, widths)
        self.precision = config.network_precision
        self.reset_parameters()
        self.set_channels_last(True)

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases for every conv (the Keras default).

        Same initial distribution as the TensorFlow twin, so both backends start alike.
        torch's own default (Kaiming-uniform, a=sqrt(5)) shrinks the signal so much over
        the 12+ layers that the initial output barely depends on the input (measured
        spread across inputs 2e-5 vs 3e-3 with Glorot).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def set_channels_last(self, enabled: bool) -> None:
        """channels_last convolutions run ~1.5x faster on CPU (oneDNN); see bench/speed.py."""
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor, precision: str | None = None) -> tuple[Tensor, Tensor]:
        """``precision`` overrides the configured one for this call (an inference choice)."""
        dtype = autocast_dtype(precision or self.precision, x.device)
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            z, features = self.encoder(x.contiguous(memory_format=self.memory_format))
            amp = self.decoder_amp(z, features)
            phase = self.decoder_phase(z, features)
        return amp.float().contiguous(), phase.float().contiguous()


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bfloat16() -> bool:
    """Asked once per process: autocast_dtype runs on every forward pass."""
    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The lower-precision dtype for the network's convolutions, or None (float32).

    'auto' takes bfloat16 only where it is native and faster: CPUs with AMX or AVX512-BF16
    (measured 2x per training step of the network on such a CPU) and CUDA devices that
    support it; elsewhere emulated bfloat16 would be slower than float32.
    """
    if precision == 'float32':
        return None
    if precision == 'bfloat16':
        return torch.bfloat16
    if device.type == 'cpu':
        return torch.bfloat16 if _cpu_has_native_bfloat16() else None
    if device.type == 'cuda' and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _probe_as_real(probe: np.ndarray | Tensor | None, N: int) -> Tensor:
    if probe is None:
        # Checkpoint and bundle loading construct without a probe and then restore the
        # trained one from the state dict, so this is not worth a warning.
        logger.debug('No probe given: starting from a flat probe (sum |P|^2 = (N/2)^2)')
        probe = np.full((N, N), 0.5, dtype=np.complex64)
    tensor = torch.as_tensor(np.asarray(probe) if not isinstance(probe, Tensor) else probe)
    tensor = tensor.detach().to(torch.complex64)
    if tuple(tensor.shape) != (N, N):
        raise ValueError(f'probe: expected shape ({N}, {N}), found {tuple(tensor.shape)}')
    return torch.view_as_real(tensor).clone()


def overlap_support(model: ModelConfig) -> Tensor:
    """Where a predicted patch carries object, for the gridsize > 1 merge.

    architecture.md section 6 says "central window (pad_object) or ones". With probe_big the
    periphery head fills the whole patch, and the merge divides by support coverage only,
    so a window support would add neighbours' periphery values without counting them
    (ground-truth patches then mismatch the data by ~30%, and training stalls). The window
    is therefore used only when the patch really is zero outside it: pad_object without
    probe_big.
    """
    if model.pad_object and not model.probe_big:
        return physics.central_window_mask(model.N)
    return torch.ones(model.N, model.N)


class PtychoPINN(nn.Module):
    """Network plus physics: learned photon scale, probe, overlap constraint, far field."""

    def __init__(self, model: ModelConfig, nphotons: float | None,
                 probe: np.ndarray | Tensor | None = None,
                 probe_trainable: bool = False, intensity_scale_trainable: bool = True) -> None:
        super().__init__()
        if model.mode not in MODES:
            raise ValueError(f'mode: expected one of {list(MODES)}, found {model.mode!r}')
        self.config = model
        self.N = model.N
        self.C = model.C
        self.s0 = physics.photon_scale(nphotons_or_default(nphotons), model.N)  # None: no data
        self.net = PtychoNet(model)
        self.log_scale = nn.Parameter(torch.tensor(math.log(self.s0), dtype=torch.float32),
                                      requires_grad=intensity_scale_trainable)
        probe_real = _probe_as_real(probe, model.N)
        if probe_trainable:
            self.probe_real = nn.Parameter(probe_real)
        else:
            self.register_buffer('probe_real', probe_real)
        self.register_buffer('support', overlap_support(model), persistent=False)
        mask = physics.disk_mask(model.N) if model.probe_mask else torch.ones(model.N, model.N)
        self.register_buffer('probe_aperture', mask, persistent=False)

    def set_probe(self, probe: np.ndarray | Tensor) -> None:
        """Replace the probe (N, N) in place, keeping it a buffer or a parameter as it was."""
        with torch.no_grad():
            self.probe_real.copy_(_probe_as_real(probe, self.N).to(self.probe_real.device))

    @property
    def probe(self) -> Tensor:
        """The complex probe the physics uses (aperture applied)."""
        return torch.view_as_complex(self.probe_real) * self.probe_aperture

    @property
    def intensity_scale(self) -> Tensor:
        """The trained photon scale ``s = exp(log_scale)``."""
        return torch.exp(self.log_scale)

    def gain(self) -> Tensor:
        return torch.exp(self.log_scale) / self.s0

    def backprojection(self, X: Tensor, offsets_xy: Tensor | None) -> Tensor:
        """The physics input channels: real and imaginary parts of the group back-projection.

        Depends on the data and the probe only, so with a fixed probe it carries no gradient
        and training may compute it once per dataset (``features`` of :meth:`object_patches`).
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.probe.requires_grad):
            estimate = physics.backprojection(X, self.probe, offsets_xy,
                                              self.config.backprojection_iterations)
        return torch.cat([estimate.real, estimate.imag], dim=1).to(X.dtype)

    def network_input(self, X: Tensor, offsets_xy: Tensor | None = None,
                      features: Tensor | None = None) -> Tensor:
        """What the encoder sees: X, plus the back-projection when the config asks for it."""
        if self.config.input_features != 'backprojection':
            return X
        if features is None:
            features = self.backprojection(X, offsets_xy)
        return torch.cat([X, features], dim=1)

    def object_patches(self, X: Tensor, offsets_xy: Tensor | None = None,
                       features: Tensor | None = None, precision: str | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """Gained amplitude, phase and complex object patches (B, C, N, N) for normalised X.

        ``features``: precomputed :meth:`backprojection` of this batch (optional);
        ``precision``: the network's arithmetic for this call (default: the model's).
        """
        amp, phase = self.net(self.network_input(X, offsets_xy, features), precision)
        amp = self.gain() * amp
        return amp, phase, torch.polar(amp, phase)

    def exit_patches(self, obj: Tensor, offsets_xy: Tensor | None) -> Tensor:
        """Object patches after the overlap constraint (gridsize > 1 with object_big)."""
        if self.C > 1 and self.config.object_big and offsets_xy is not None:
            obj = physics.enforce_overlap(obj, offsets_xy, self.support)
        return obj

    def predicted_intensity(self, obj: Tensor, offsets_xy: Tensor | None) -> Tensor:
        """``|A_hat|^2`` of the gained object, (B, C, N, N)."""
        return physics.far_field_intensity(self.probe * self.exit_patches(obj, offsets_xy))

    def forward(self, X: Tensor, offsets_xy: Tensor | None = None) -> Tensor:
        """Predicted far-field amplitude (B, C, N, N) for normalised diffraction X."""
        _, _, obj = self.object_patches(X, offsets_xy)
        return physics.far_field_amplitude(self.probe * self.exit_patches(obj, offsets_xy))

    def reconstruct(self, X: Tensor, offsets_xy: Tensor | None = None,
                    precision: str | None = None) -> Tensor:
        """Complex object per group (B, N, N): the patch (C = 1) or the merged group."""
        _, _, obj = self.object_patches(X, offsets_xy, precision=precision)
        if self.C == 1 or offsets_xy is None:
            return obj[:, 0]
        return physics.group_object(obj, offsets_xy, self.support)


class DiffractionToObject(nn.Module):
    """Inference model: ``X * s`` and local offsets -> complex object (B, N, N, 1).

    The input carries the trained intensity scale ``s`` (the TensorFlow convention); it is
    divided back out before the network, so callers feed ``container.X * intensity_scale``.
    """

    def __init__(self, model: PtychoPINN) -> None:
        super().__init__()
        self.model = model

    def forward(self, scaled_X: Tensor, offsets_xy: Tensor | None = None,
                precision: str | None = None) -> Tensor:
        X = scaled_X / self.model.intensity_scale
        return self.model.reconstruct(X, offsets_xy, precision).unsqueeze(-1)


def poisson_nll(pred_intensity: Tensor, X: Tensor, s0: float) -> Tensor:
    """``mean(lam - y log(lam + eps)) / s0**2`` with ``lam = s0**2 |A_hat|**2``, ``y = (s0 X)**2``."""
    lam = (s0 * s0) * pred_intensity
    y = (s0 * s0) * X.square()
    return torch.mean(lam - y * torch.log(lam + POISSON_EPS)) / (s0 * s0)


def supervised_loss(amp: Tensor, phase: Tensor, Y: Tensor, realspace_mae_weight: float = 0.0,
                    realspace_weight: float = 0.0) -> Tensor:
    """``mean|amp - |Y|| + mean|wrap(phase - angle(Y))|``
    ``+ realspace_mae_weight * mean(|Re(O - Y)| + |Im(O - Y)|)``
    ``+ realspace_weight * mean|O - Y|**2`` with ``O = amp * exp(i phase)``.

    The TensorFlow backend's ``ptycho.tf.model.supervised_loss`` is the same formula.
    """
    wrapped = torch.remainder(phase - torch.angle(Y) + math.pi, 2 * math.pi) - math.pi
    loss = torch.mean(torch.abs(amp - torch.abs(Y))) + torch.mean(torch.abs(wrapped))
    if realspace_mae_weight or realspace_weight:
        diff = torch.polar(amp, phase) - Y
        if realspace_mae_weight:
            loss = loss + realspace_mae_weight * torch.mean(diff.real.abs() + diff.imag.abs())
        if realspace_weight:
            loss = loss + realspace_weight * torch.mean(diff.real.square() + diff.imag.square())
    return loss


def _as_dataclass(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f'{cls.__name__}: expected a {cls.__name__} or a dict, found {type(value).__name__}')
    data = dict(value)
    if cls is ModelConfig:  # checkpoints written before these settings existed
        data = with_legacy_model_defaults(data)
    return view_from_dict(cls, data)


def _plain(config: Any) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    for key, value in out.items():
        if isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
    return out


def _from_api_configs(data: Any, model: Any, training: Any, inference: Any,
                      core_config: Mapping[str, Any] | None
                      ) -> tuple[ModelConfig, TrainingConfig, dict[str, Any], dict[str, Any]]:
    """This backend's configs from Ptychodus' four PtychoPINN-Torch configs (given as
    dataclasses or as the dicts a checkpoint stores)."""
    from ptycho.config.config import TrainingConfig as CoreTrainingConfig
    from ptycho.config.config import as_recorded, from_dict, to_dict
    from ptycho_torch import config_bridge
    from ptycho_torch.api.settings_map import Request

    request = Request(*(_as_api(cls, value) for cls, value in zip(
        config_params.CONFIG_CLASSES, (data, model, training, inference)))).check()
    if core_config:
        core = from_dict(CoreTrainingConfig, as_recorded(core_config, 'checkpoint core_config'),
                         source='checkpoint core_config')
        wanted = to_dict(request.model_config())
        recorded = to_dict(core.model)
        differ = sorted(k for k, v in wanted.items() if recorded.get(k) != v)
        if differ:
            raise ValueError(f'PtychoPINN-Torch configs disagree with the checkpoint\'s network '
                             f'on {differ}: ' + ', '.join(
                                 f'{k} {wanted[k]!r} vs {recorded.get(k)!r}' for k in differ))
    else:
        core = request.training_config(nphotons=request.data.nphotons or 1e9,
                                       output_dir=Path('.'))
    _, torch_model, torch_training = config_bridge.to_torch(core)
    api = {name: _plain(value) for name, value in zip(
        ('data_config', 'api_model_config', 'api_training_config', 'inference_config'),
        (request.data, request.model, request.training, request.inference))}
    return torch_model, torch_training, to_dict(core), api


def _as_api(cls: type, value: Any) -> Any:
    """A ``config_params`` dataclass from itself or from a checkpoint's dict of it."""
    if isinstance(value, cls) or not isinstance(value, Mapping):
        return value
    data = {k: tuple(v) if isinstance(v, list) and k in ('grid_size', 'x_bounds', 'y_bounds',
                                                          'image_size') else v
            for k, v in value.items()}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f'{cls.__name__}: unknown keys {unknown}')
    return cls(**data)


class PtychoPINN_Lightning(pl.LightningModule):
    """Lightning wrapper: PINN (Poisson NLL + optional MAE) or supervised training.

    Hyperparameters are plain dicts saved with ``save_hyperparameters``, and the probe and
    log-scale live in the state dict, so ``load_from_checkpoint(path)`` needs no arguments.
    """

    loss_name = 'train_loss'
    """Logged per-epoch training loss (Ptychodus' PtychoPINN-Torch library reads the name)."""
    val_loss_name = 'val_loss'

    def __init__(self, model_config: ModelConfig | Mapping[str, Any] | Any,
                 training_config: TrainingConfig | Mapping[str, Any] | Any,
                 probe: np.ndarray | Tensor | None = None,
                 core_config: Mapping[str, Any] | None = None,
                 data_config: Any = None, inference_config: Any = None,
                 api_model_config: Any = None, api_training_config: Any = None) -> None:
        """``model_config``/``training_config``: this backend's view (:mod:`ptycho_torch.
        torch_config`) or, with ``data_config`` and ``inference_config``, Ptychodus'
        PtychoPINN-Torch configs (:mod:`ptycho_torch.config_params`), as its
        ``load_from_checkpoint(path, model_config=..., data_config=..., ...)`` passes them.
        Those are translated by :mod:`ptycho_torch.api.settings_map`; a checkpoint's own
        ``core_config`` decides the network, and configs that disagree with it are refused.
        ``api_model_config``/``api_training_config`` are where a checkpoint keeps the
        PtychoPINN-Torch model and training configs beside this backend's own.
        """
        super().__init__()
        api_configs = None
        if data_config is not None:
            api_model = (model_config if isinstance(model_config, config_params.ModelConfig)
                         else api_model_config)
            api_training = (training_config
                            if isinstance(training_config, config_params.TrainingConfig)
                            else api_training_config)
            model_config, training_config, core_config, api_configs = _from_api_configs(
                data_config, api_model, api_training, inference_config, core_config)
        self.model_config: ModelConfig = _as_dataclass(ModelConfig, model_config)
        self.training_config: TrainingConfig = _as_dataclass(TrainingConfig, training_config)
        self.save_hyperparameters({'model_config': _plain(self.model_config),
                                   'training_config': _plain(self.training_config),
                                   'core_config': dict(core_config) if core_config else None,
                                   **(api_configs or {})},
                                  ignore=['probe'])
        tc = self.training_config
        self.model = PtychoPINN(self.model_config, tc.nphotons, probe, tc.probe_trainable,
                                tc.intensity_scale_trainable)
        self.monitor = 'train_loss'

    # -- inference -------------------------------------------------------------------------
    def forward(self, X: Tensor, offsets_xy: Tensor | None = None) -> Tensor:
        return self.model(X, offsets_xy)

    def diffraction_to_obj(self) -> DiffractionToObject:
        """The inference model sharing this module's weights."""
        return DiffractionToObject(self.model)

    @property
    def intensity_scale(self) -> float:
        return float(self.model.intensity_scale.detach())

    # -- training --------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, Tensor]) -> Tensor:
        X, offsets = batch['X'], batch['offsets']
        tc = self.training_config
        amp, phase, obj = self.model.object_patches(X, offsets, batch.get('features'))
        if self.model_config.mode == 'supervised':
            if 'Y' not in batch:
                raise ValueError('supervised mode: the batch has no ground-truth patches "Y" '
                                 '(the dataset needs objectGuess)')
            return supervised_loss(amp, phase, batch['Y'], tc.realspace_mae_weight,
                                   tc.realspace_weight)
        exit_wave = self.model.probe * self.model.exit_patches(obj, offsets)
        loss = X.new_zeros(())
        if tc.nll_weight > 0:
            intensity = physics.far_field_intensity(exit_wave)
            loss = loss + tc.nll_weight * poisson_nll(intensity, X, self.model.s0)
        if tc.mae_weight > 0:
            loss = loss + tc.mae_weight * torch.mean(torch.abs(physics.far_field_amplitude(exit_wave) - X))
        return loss

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f'non-finite training loss ({float(loss)}) at epoch {self.current_epoch}, batch '
                f'{batch_idx}; training stopped (lower learning_rate, check the data); the last '
                f'good checkpoint was kept')
        # sync_dist: in a DDP run the logged epoch loss (and so the history) is the mean
        # over all ranks' shards, not rank 0's alone.
        self.log('train_loss', loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch['X'].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.compute_loss(batch)
        self.log('val_loss', loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch['X'].shape[0], sync_dist=True)
        return loss

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int,
                     dataloader_idx: int = 0) -> Tensor:
        return self.model.reconstruct(batch['X'], batch['offsets'])

    def configure_optimizers(self) -> Any:
        tc = self.training_config
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=tc.learning_rate)
        if tc.lr_plateau_patience <= 0:
            return optimizer
        # Halve after `lr_plateau_patience` epochs without any decrease, as Keras does (torch
        # counts patience + 1). Absolute threshold 0: the PINN loss is negative with a large
        # constant offset, and torch's default relative threshold then took slightly worse
        # epochs for improvements, so the rate never fell.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode='min', factor=0.5, patience=tc.lr_plateau_patience - 1,
            threshold=0.0, threshold_mode='abs')
        return {'optimizer': optimizer,
                'lr_scheduler': {'scheduler': scheduler, 'monitor': self.monitor,
                                 'interval': 'epoch'}}


def count_parameters(module: nn.Module) -> int:
    """Trainable + frozen network weights (the number the TF twin must match)."""
    return sum(p.numel() for p in module.parameters())
