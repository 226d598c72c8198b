"""TensorFlow workflows: train, save, load and reconstruct (architecture.md section 9).

These are the TensorFlow twins of ``ptycho_torch.workflows.components`` and the functions
Ptychodus 1.7.0's built-in integration calls in its worker process (under their legacy path
``ptycho.workflows.components``, an alias of this module):
``run_cdi_example`` -> ``ptycho.model_manager.save(out_dir)`` -> ``save_outputs`` for
training, and ``load_inference_bundle`` (which restores ``params.cfg['intensity_scale']``)
for reconstruction.

``ptycho.params.cfg``, the legacy mirror that integration reads, is written by
:func:`mirror_legacy_params` alone, on the way in to each entry point here and to
:meth:`ptycho.tf.backend.TensorFlowBackend.predict`. TensorFlow itself is imported only
when a function needs it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ptycho import figures, params, physics, progress
from ptycho.config.config import (InferenceConfig, TrainingConfig, mirror_legacy_params,
                                  to_dict)
from ptycho.loader import PtychoDataContainer, container_from_raw
from ptycho.phase_alignment import align_group_phases
from ptycho.photons import resolve_nphotons
from ptycho.workflows.training_files import uses_output_dir

logger = logging.getLogger(__name__)

BACKEND = 'tensorflow'
AMPLITUDE_PNG = 'reconstructed_amplitude.png'
PHASE_PNG = 'reconstructed_phase.png'
LOSS_PNG = 'loss_curve.png'
PREDICT_BATCH = 256


_Config = TypeVar('_Config', TrainingConfig, InferenceConfig)


def with_data_size(config: _Config, raw: Any) -> _Config:
    """A copy of ``config`` whose ``model.N`` is the data's pattern size when it was 0."""
    if config.model.N:
        return config
    N = int(np.shape(raw.diff3d)[-1])
    logger.info('config.model.N was 0 (unset): using the pattern size N=%d of the data', N)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, N=N))


def _inference_grouping(config: TrainingConfig | InferenceConfig
                        ) -> TrainingConfig | InferenceConfig:
    """After training, test data use every scan position, in scan order; an
    ``InferenceConfig`` groups as it says (n_groups, sequential_sampling, subsample_seed),
    as in the torch backend."""
    if isinstance(config, InferenceConfig):
        return config
    return dataclasses.replace(config, n_groups=None, sequential_sampling=True)


# --------------------------------------------------------------------------- training
def train_cdi_model(train_data: Any, test_data: Any | None, config: TrainingConfig, *,
                    max_time: float | timedelta | None = None,
                    callbacks: list[Any] | None = None,
                    resume_from: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Group and normalise the data, build a fresh model, fit it (for at most ``max_time``).

    ``resume_from``: a ``checkpoints/last.npz`` to continue from (the model is built afresh,
    then takes the checkpoint's state; see :func:`ptycho.tf.training.train`).

    Returns ``results`` with ``history``, ``models`` (``autoencoder``, ``diffraction_to_obj``
    and ``ptycho_models``, the :class:`ptycho.tf.model.PtychoModels` holding both and the
    trained intensity scale), ``ptycho_models``, ``train_container``,
    ``test_container``, ``intensity_scale``, ``config`` and ``backend``. ``callbacks``:
    extra Keras callbacks for the fit.
    """
    from ptycho.tf.model import create_model
    from ptycho.tf.training import NonFiniteLossError, seed_everything, train

    config = resolve_nphotons(with_data_size(config, train_data), train_data)
    mirror_legacy_params(config)
    train_container = container_from_raw(train_data, config)
    test_container = None
    if test_data is not None:
        test_container = container_from_raw(test_data, _inference_grouping(config))
    seed_everything(config.seed)
    models = create_model(config, train_container.probe)
    try:
        history = train(models, train_container, config, test_container, callbacks=callbacks,
                        max_time=max_time, resume_from=resume_from)
    except NonFiniteLossError as exc:
        exc.models = models  # weights already restored to the last finite epoch
        exc.config = config
        raise
    mirror_legacy_params(config, models.intensity_scale)
    return {
        'history': history,
        'models': {**models.as_dict(), 'ptycho_models': models},
        'ptycho_models': models,
        'train_container': train_container,
        'test_container': test_container,
        'intensity_scale': models.intensity_scale,
        'config': config,
        'backend': BACKEND,
    }


def _should_autosave(output_dir: Path | None) -> bool:
    # Ptychodus passes output_dir=Path() ("unused") and saves through model_manager.save.
    return uses_output_dir(output_dir)


def run_cdi_example(train_data: Any, test_data: Any | None, config: TrainingConfig,
                    flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                    M: int | None = None, do_stitching: bool = False
                    ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, save ``{output_dir}/wts.h5.zip``, and optionally reconstruct ``test_data``.

    Returns ``(amplitude, phase, results)``; amplitude and phase are None unless
    ``do_stitching`` and ``test_data`` are given. ``M`` defaults to ``physics.default_crop(N)`` (20 for N = 64).
    """
    from ptycho.tf import persistence
    from ptycho.tf.training import NonFiniteLossError

    try:
        results = train_cdi_model(train_data, test_data, config)
    except NonFiniteLossError as exc:
        good = getattr(exc, 'models', None)
        if good is not None and _should_autosave(config.output_dir):
            path = persistence.save_models(good, exc.config, config.output_dir)
            logger.error('Training diverged; the last finite-epoch model was saved to %s', path)
        raise
    config = results['config']
    models = results['ptycho_models']
    persistence.register_trained(models, config)
    if _should_autosave(config.output_dir):
        results['bundle_path'] = persistence.save_models(models, config, config.output_dir)
    else:
        logger.info('output_dir is unset: model kept in memory; call '
                    'ptycho.model_manager.save(out_dir) to write wts.h5.zip')
    amplitude = phase = None
    if do_stitching and test_data is not None:
        amplitude, phase, recon = reassemble_cdi_image(
            test_data, config, flip_x, flip_y, transpose, M, models=models,
            container=results['test_container'])
        results.update({k: v for k, v in recon.items() if k != 'backend'})
    elif do_stitching:
        logger.warning('run_cdi_example: do_stitching=True but no test data: nothing to stitch')
    results['backend'] = BACKEND
    return amplitude, phase, results


# --------------------------------------------------------------------------- inference
def _resolve_models(models: Any, config: TrainingConfig | InferenceConfig) -> Any:
    """A :class:`PtychoModels` (or bare diffraction_to_obj Keras model) to predict with."""
    from ptycho.tf import persistence

    if models is None:
        model_path = getattr(config, 'model_path', None)
        if model_path is not None and str(model_path) not in ('', '.'):
            return persistence.load(model_path)[0]
        return persistence.last_trained()[0]
    if isinstance(models, dict):
        if 'ptycho_models' in models:
            return models['ptycho_models']
        if 'diffraction_to_obj' in models:
            return models['diffraction_to_obj']
        raise ValueError(f'reassemble_cdi_image: models dict has keys {sorted(models)}; '
                         f'expected "diffraction_to_obj"')
    return models


def model_intensity_scale(net: Any) -> float:
    """The trained intensity scale held by a ``diffraction_to_obj`` Keras model."""
    try:
        layer = net.get_layer('intensity_scale')
    except ValueError:
        return float(params.get('intensity_scale'))
    return float(np.exp(float(np.asarray(layer.log_scale))))


MIN_PADDED_BATCH = 8
"""The smallest batch a prediction call is padded to."""


def prediction_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """How ``n`` groups go through the network: ``(groups, padded size)`` per call.

    On a CPU the XLA back-projection runs in fixed chunks (``ptycho.tf.model.
    backprojection_chunk``) and compiles once, and Keras traces its prediction for any
    batch size after the second one, so the groups go as they are: whole batches of
    ``batch_size`` and the rest in one call. Where the back-projection takes the whole
    batch in one call (a GPU) it compiles per batch shape: :func:`padded_batches`.
    """
    from ptycho.tf.model import backprojection_workers

    if backprojection_workers() == 1:
        return padded_batches(n, batch_size)
    return [(min(batch_size, n - start),) * 2 for start in range(0, n, batch_size)]


def padded_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """How ``n`` groups go through the network when every batch shape compiles.

    Whole batches of ``batch_size`` first; the rest in the largest powers of two that fit,
    the last few padded (with empty groups) to :data:`MIN_PADDED_BATCH`. So the calls
    take a few input shapes only (``batch_size`` and the powers of two below it: the
    graph is traced and the XLA back-projection compiled a few times per process, not once
    per chunk size a stream happens to send), and the padding is under 8 groups where
    padding the rest to one power of two wasted up to half the call (a live N = 128 chunk
    of 18 groups ran as 32: 1.1 s against 0.6 s for 11 groups as 16).
    """
    calls = [(batch_size, batch_size)] * (n // batch_size)
    rest = n % batch_size
    while rest:
        size = 1 << (rest.bit_length() - 1)
        if size < MIN_PADDED_BATCH:
            calls.append((rest, min(MIN_PADDED_BATCH, batch_size)))
            break
        calls.append((size, size))
        rest -= size
    return calls


def predict_objects(models: Any, container: PtychoDataContainer,
                    intensity_scale: float | None = None, *,
                    batch_size: int = PREDICT_BATCH, precision: str | None = None
                    ) -> np.ndarray:
    """Complex object patches (B, N, N, 1) for a container, one forward pass per group.

    The input is scaled by the model's own trained intensity scale unless one is given
    (``params.cfg`` may hold the untrained photon scale after ``update_legacy_dict``).
    ``precision``: the network's arithmetic for this run (``PtychoModels.inference_model``;
    None: as trained); needs the ``PtychoModels``, not a bare Keras model.
    """
    if hasattr(models, 'inference_model'):
        net = models.inference_model(precision)
    elif precision is not None:
        raise TypeError('predict_objects: a precision override needs the PtychoModels of the '
                        f'model, found {type(models).__name__}')
    else:
        net = models.diffraction_to_obj if hasattr(models, 'diffraction_to_obj') else models
    scale = model_intensity_scale(net) if intensity_scale is None else intensity_scale
    X = np.asarray(container.X, dtype=np.float32) * np.float32(scale)
    offsets = np.asarray(container.local_offsets, dtype=np.float32)
    parts = []
    with progress.bar(len(X), 'Reconstructing', 'group') as shown:
        start = 0
        for count, padded in prediction_batches(len(X), batch_size):
            stop, pad = start + count, padded - count
            X_batch, off_batch = X[start:stop], offsets[start:stop]
            if pad:
                X_batch = np.concatenate([X_batch, np.zeros((pad, *X.shape[1:]), X.dtype)])
                off_batch = np.concatenate([off_batch, np.zeros((pad, *offsets.shape[1:]),
                                                                offsets.dtype)])
            out = np.asarray(net.predict_on_batch([X_batch, off_batch]))
            parts.append(out[:count])
            shown.update(count)
            start = stop
    if not parts:
        return np.asarray(net.predict([X, offsets], verbose=0))  # the right empty shape
    return np.concatenate(parts)


def reassemble_cdi_image(test_data: Any, config: TrainingConfig | InferenceConfig,
                         flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                         M: int | None = None, *, models: Any = None,
                         container: PtychoDataContainer | None = None, align_phase: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reconstruct ``test_data`` with a trained model and stitch it.

    ``align_phase`` removes the groups' inconsistent constant phases before stitching
    (:mod:`ptycho.phase_alignment`).

    ``models`` defaults to the bundle at ``config.model_path`` (InferenceConfig) or the
    last trained model. ``flip_x``/``flip_y`` negate the x/y global offsets and
    ``transpose`` swaps the patch axes (legacy orientation fixes). Returns
    ``(amplitude, phase, results)`` with ``reconstruction`` (complex), ``coverage``,
    ``origin_xy``, ``obj_patches`` (the model's output, before phase alignment),
    ``container`` and ``backend``.
    """
    config = with_data_size(config, test_data)
    mirror_legacy_params(config)
    net = _resolve_models(models, config)
    if container is None:
        container = container_from_raw(test_data, _inference_grouping(config))
    patches = predict_objects(net, container, batch_size=(
        config.batch_size if isinstance(config, InferenceConfig) else PREDICT_BATCH))
    offsets = np.array(container.global_offsets, dtype=np.float64, copy=True)
    if flip_x:
        offsets[:, 0, 0, :] = -offsets[:, 0, 0, :]
    if flip_y:
        offsets[:, 0, 1, :] = -offsets[:, 0, 1, :]
    if transpose:
        patches = np.transpose(patches, (0, 2, 1, 3))
    N = patches.shape[1]
    M = physics.default_crop(N) if M is None else int(M)
    stitched = patches
    if align_phase:  # each group's data leave its constant phase free: agree with neighbours
        stitched = align_group_phases(patches[..., 0], offsets.reshape(-1, 2), M)[..., None]
    from ptycho.tf.physics import reassemble_position

    image, coverage = reassemble_position(stitched, offsets, M=M, return_coverage=True)
    _, origin_xy = physics.canvas_geometry(offsets.reshape(-1, 2), M)
    reconstruction = image[..., 0]
    results = {'reconstruction': reconstruction, 'coverage': coverage, 'origin_xy': origin_xy,
               'obj_patches': patches, 'container': container, 'M': M, 'backend': BACKEND}
    return np.abs(reconstruction), np.angle(reconstruction), results


def load_inference_bundle(model_dir: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Load ``model_dir/wts.h5.zip`` (or the zip itself) for inference.

    Returns ``(diffraction_to_obj, config_dict)``: a Keras model whose
    ``predict([X * intensity_scale, local_offsets])`` gives complex objects (B, N, N, 1),
    and the training config as a dict. Also restores ``params.cfg`` (model settings and the
    trained ``intensity_scale``), which Ptychodus' built-in integration reads.
    """
    from ptycho.tf import persistence

    models, config, bundle = persistence.load(model_dir)
    for key, value in (('N', config.model.N), ('gridsize', config.model.gridsize)):
        if key in params.cfg and params.cfg[key] not in (0, value):
            logger.warning('%s: the model was trained with %s=%s but the current settings say '
                           '%s=%s; using the model\'s value', bundle.path, key, value, key,
                           params.cfg[key])
    mirror_legacy_params(config.model, models.intensity_scale)
    config_dict = to_dict(config)
    return models.diffraction_to_obj, config_dict


def load_inference_models(model_dir: str | os.PathLike[str]) -> tuple[Any, TrainingConfig]:
    """Like :func:`load_inference_bundle` but returns the full :class:`PtychoModels` and config."""
    from ptycho.tf import persistence

    models, config, _ = persistence.load(model_dir)
    mirror_legacy_params(config.model, models.intensity_scale)
    return models, config


# --------------------------------------------------------------------------- outputs
def save_outputs(amplitude: np.ndarray | None, phase: np.ndarray | None,
                 results: dict[str, Any] | None, prefix: str | os.PathLike[str]) -> list[Path]:
    """Write the PNGs of a run under ``prefix`` (a directory) and return their paths.

    Amplitude and phase images are written when given (None after training without
    stitching, as Ptychodus calls it); the loss curve whenever ``results`` has a history.
    """
    out = Path(prefix)
    out.mkdir(parents=True, exist_ok=True)
    results = results or {}
    written: list[Path] = []
    coverage = results.get('coverage')
    mask = None if coverage is None else np.asarray(coverage) >= physics.COVERAGE_EPS
    for image, name, title, unit, cmap in ((amplitude, AMPLITUDE_PNG, 'Reconstructed amplitude',
                                            'amplitude', 'gray'),
                                           (phase, PHASE_PNG, 'Reconstructed phase',
                                            'phase (rad)', 'twilight')):
        if image is None:
            continue
        image = np.squeeze(np.asarray(image))
        shown_mask = mask if mask is not None and mask.shape == image.shape else None
        written.append(figures.image_png(image, out / name, title=title, unit=unit, cmap=cmap,
                                         mask=shown_mask))
    history = results.get('history')
    if history:
        written.append(figures.loss_curve_png(history, out / LOSS_PNG))
    if amplitude is None and phase is None:
        logger.info('save_outputs: no reconstruction to draw (training without stitching)')
    return written
