"""Save and load TensorFlow PtychoPINN models as ``{out_dir}/wts.h5.zip`` bundles.

Legacy path: ``ptycho.model_manager`` (an alias of this module).

The bundle (architecture.md section 8) holds ``autoencoder.weights.h5`` and
``diffraction_to_obj.weights.h5`` (Keras 3 weight files), ``probe.npy``, ``params.json`` (the legacy
``params.cfg``) and a manifest with the training config and the trained intensity scale,
written atomically by :mod:`ptycho.bundle`. Loading rebuilds both models from the
manifest's config with :func:`ptycho.tf.model.create_model` and restores the weights.

Ptychodus 1.7.0 calls the legacy :func:`save` with only ``out_dir`` right after
``run_cdi_example``. That call needs "the model just trained", so
:func:`ptycho.tf.workflows.run_cdi_example` records it with :func:`register_trained` in
``_last_trained``: the one deliberate piece of module state in the TensorFlow backend,
kept for that legacy call alone (empty at import, one entry at most, replaced by the next
run, emptied by :func:`clear_registry`). Everything else passes models explicitly:
:func:`save_models`, :func:`load` and the backend contract never read it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho import bundle as bundle_io
from ptycho import params
from ptycho.config.config import TrainingConfig, from_dict, to_dict
from ptycho.photons import nphotons_or_default
from ptycho.tf.model import PtychoModels, create_model

logger = logging.getLogger(__name__)

BACKEND = 'tensorflow'
MODEL_NAMES = ['autoencoder', 'diffraction_to_obj']
PROBE_FILE = 'probe.npy'


@dataclass
class _Trained:
    models: PtychoModels
    config: TrainingConfig


_last_trained: dict[str, _Trained] = {}
"""The model :func:`save` writes (see the module docstring); only the functions below touch it."""


def register_trained(models: PtychoModels, config: TrainingConfig) -> None:
    """Record the models a workflow just trained, for the legacy :func:`save`."""
    _last_trained['last'] = _Trained(models, config)


def last_trained() -> tuple[PtychoModels, TrainingConfig]:
    """The most recently registered models and config (RuntimeError if none)."""
    try:
        entry = _last_trained['last']
    except KeyError:
        raise RuntimeError('ptycho.model_manager: no trained TensorFlow model is registered; '
                           'run ptycho.workflows.components.run_cdi_example first, or use '
                           'save_models(models, config, out_dir)') from None
    return entry.models, entry.config


def clear_registry() -> None:
    """Forget the registered model (its memory is freed once nothing else holds it)."""
    _last_trained.clear()


def _json_safe(cfg: dict[str, Any]) -> dict[str, Any]:
    """The JSON-representable part of the legacy dict (arrays such as the probe are skipped)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, (np.generic,)):
            value = value.item()
        if isinstance(value, Path):
            value = str(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def save(out_dir: str | os.PathLike[str]) -> Path:
    """Legacy entry: write the last trained model to ``out_dir/wts.h5.zip``."""
    models, config = last_trained()
    return save_models(models, config, out_dir)


def save_models(models: PtychoModels, config: TrainingConfig, out_dir: str | os.PathLike[str]
                ) -> Path:
    """Write both models' weights, the probe and the manifest to ``out_dir/wts.h5.zip`` (atomic)."""
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix='ptychopinn-tf-save-') as tmp:
        for name, model in models.as_dict().items():
            path = Path(tmp) / f'{name}.weights.h5'
            model.save_weights(path)
            files[path.name] = path.read_bytes()
    buffer = io.BytesIO()
    np.save(buffer, models.probe.astype(np.complex64), allow_pickle=False)
    files[PROBE_FILE] = buffer.getvalue()
    legacy = dict(params.cfg)
    legacy['intensity_scale'] = models.intensity_scale
    files['params.json'] = json.dumps(_json_safe(legacy), indent=2).encode()
    extra = {'nphotons': nphotons_or_default(config.nphotons), 's0': models.s0,
             'tensorflow_version': tf.__version__, 'keras_version': keras.__version__}
    return bundle_io.write_bundle(out_dir, BACKEND, files, config=to_dict(config),
                                  intensity_scale=models.intensity_scale,
                                  model_names=MODEL_NAMES, extra=extra)


def _read_probe(bundle: bundle_io.Bundle, N: int) -> np.ndarray:
    """The probe stored in the bundle (an untrainable probe is not among the weights)."""
    data = bundle.files.get(PROBE_FILE)
    if data is None:
        raise bundle_io.BundleError(f'{bundle.path}: TensorFlow bundle lacks {PROBE_FILE!r}; '
                                    f'found {sorted(bundle.files)}')
    try:
        probe = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise bundle_io.BundleError(f'{bundle.path}: member {PROBE_FILE} is not a numpy array '
                                    f'({exc})') from exc
    if probe.shape != (N, N):
        raise bundle_io.BundleError(f'{bundle.path}: member {PROBE_FILE}: expected shape '
                                    f'({N}, {N}), found {probe.shape}')
    return probe


def load(path: str | os.PathLike[str]) -> tuple[PtychoModels, TrainingConfig, bundle_io.Bundle]:
    """Rebuild the models stored in a bundle (directory or ``wts.h5.zip``).

    Raises :class:`ptycho.bundle.BundleError` (a ValueError) for a missing, corrupt or
    PyTorch bundle, naming the file and both backends.
    """
    bundle = bundle_io.read_bundle(path, expected_backend=BACKEND)
    missing = [f'{name}.weights.h5' for name in MODEL_NAMES
               if f'{name}.weights.h5' not in bundle.files]
    if missing:
        raise bundle_io.BundleError(f'{bundle.path}: TensorFlow bundle lacks {missing}; found '
                                    f'{sorted(bundle.files)}')
    try:
        config = from_dict(TrainingConfig, bundle.config, source=f'{bundle.path}:manifest.json')
    except (TypeError, ValueError) as exc:
        raise bundle_io.BundleError(f'{bundle.path}: manifest.json key "config" is not a valid '
                                    f'TrainingConfig ({exc})') from exc
    N = config.model.require_size()
    nphotons = float(bundle.manifest.get('nphotons', config.nphotons))
    probe = _read_probe(bundle, N)
    models = create_model(config, probe, nphotons=nphotons)
    with tempfile.TemporaryDirectory(prefix='ptychopinn-tf-load-') as tmp:
        for name, model in models.as_dict().items():
            member = f'{name}.weights.h5'
            target = Path(tmp) / member
            target.write_bytes(bundle.files[member])
            try:
                model.load_weights(target)
            except Exception as exc:
                raise bundle_io.BundleError(
                    f'{bundle.path}: member {member} does not fit the network described by the '
                    f'manifest config (N={N}, gridsize={config.model.gridsize}, n_filters_scale='
                    f'{config.model.n_filters_scale}): {exc}') from exc
    stored = bundle.intensity_scale
    if not np.isclose(models.intensity_scale, stored, rtol=1e-5):
        logger.warning('%s: manifest intensity_scale %.6g differs from the restored weights %.6g',
                       bundle.path, stored, models.intensity_scale)
    logger.info('Loaded TensorFlow model bundle %s (N=%d, gridsize=%d, intensity_scale=%.6g)',
                bundle.path, N, config.model.gridsize, models.intensity_scale)
    return models, config, bundle
