"""Save and load the torch model bundle ``{output_dir}/wts.h5.zip`` (architecture.md section 8).

The zip is written by :func:`ptycho.bundle.write_bundle` (atomic, manifest checked on read).
Torch members: ``model.pt`` (state dict, loaded with ``weights_only=True``),
``hparams.json`` (the Lightning module's constructor arguments) and ``params.json``
(the legacy ``params.cfg`` mirror).
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ptycho.bundle import BundleError, read_bundle, write_bundle
from ptycho.config.config import (TrainingConfig, from_dict, mirror_legacy_params, to_dict,
                                  update_legacy_dict)
from ptycho_torch.model import PtychoPINN_Lightning

logger = logging.getLogger(__name__)

MODEL_FILE = 'model.pt'
HPARAMS_FILE = 'hparams.json'
PARAMS_FILE = 'params.json'
MODEL_NAMES = ['autoencoder', 'diffraction_to_obj']



def save_bundle_torch(module: PtychoPINN_Lightning, config: TrainingConfig,
                      output_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the trained module and its config to ``output_dir/wts.h5.zip``."""
    output_dir = Path(output_dir if output_dir is not None else config.output_dir)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f'save_bundle_torch: refusing to save non-finite weights {bad[:5]} to '
                         f'{output_dir}; the last good checkpoint is in {output_dir}/checkpoints')
    buffer = io.BytesIO()
    torch.save(state, buffer)
    legacy: dict[str, Any] = {}
    update_legacy_dict(legacy, config)
    legacy['intensity_scale'] = module.intensity_scale
    files = {MODEL_FILE: buffer.getvalue(),
             HPARAMS_FILE: json.dumps(dict(module.hparams), default=str).encode(),
             PARAMS_FILE: json.dumps(legacy, default=str).encode()}
    recorded = to_dict(config)
    recorded['backend'] = 'pytorch'  # whatever the caller's config said, these are torch weights
    return write_bundle(output_dir, 'pytorch', files, config=recorded,
                        intensity_scale=module.intensity_scale, model_names=MODEL_NAMES)


def _module_from_bundle(path: Path, files: dict[str, bytes]) -> PtychoPINN_Lightning:
    for name in (MODEL_FILE, HPARAMS_FILE):
        if name not in files:
            raise BundleError(f'{path}: pytorch bundle lacks {name!r} (found {sorted(files)})')
    try:
        hparams = json.loads(files[HPARAMS_FILE])
        state = torch.load(io.BytesIO(files[MODEL_FILE]), map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure means a bad bundle
        raise BundleError(f'{path}: cannot decode the pytorch weights ({exc})') from exc
    module = PtychoPINN_Lightning(**hparams)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f'{path}: weights do not fit the recorded architecture ({exc})') from exc
    module.eval()
    return module


def load_inference_bundle_torch(model_dir: str | os.PathLike[str]
                                ) -> tuple[dict[str, Any], TrainingConfig]:
    """Load ``model_dir/wts.h5.zip`` -> (models, config), no config arguments needed.

    ``models`` holds ``'lightning_module'``, ``'autoencoder'`` (the same module) and
    ``'diffraction_to_obj'``. The config is the training config recorded in the bundle,
    with ``backend='pytorch'`` and ``output_dir`` pointing at the bundle's directory.
    ``params.cfg`` receives the config and the trained ``intensity_scale``. Each call loads
    the file (no module-level cache): a caller that reconstructs many scans keeps the
    result, as the backend contract's ``LoadedModel`` does.
    """
    bundle = read_bundle(model_dir, expected_backend='pytorch')
    module = _module_from_bundle(bundle.path, bundle.files)
    config_dict = bundle.config
    config_dict['backend'] = 'pytorch'
    config_dict['output_dir'] = str(bundle.path.parent)
    try:
        config = from_dict(TrainingConfig, config_dict, source=f'{bundle.path}:manifest.json')
    except (TypeError, ValueError) as exc:
        raise BundleError(f'{bundle.path}: manifest config is invalid ({exc})') from exc
    built = module.model_config
    for key, value in (('N', built.N), ('gridsize', built.grid_size[0])):
        if getattr(config.model, key) != value:
            raise BundleError(f'{bundle.path}: manifest.json key "config.model.{key}": expected '
                              f'{value} (the network in {HPARAMS_FILE}), found '
                              f'{getattr(config.model, key)!r}')
    models = {'lightning_module': module, 'autoencoder': module,
              'diffraction_to_obj': module.diffraction_to_obj()}
    logger.info('Loaded pytorch model bundle %s (intensity_scale %.6g)', bundle.path,
                bundle.intensity_scale)
    mirror_legacy_params(config, bundle.intensity_scale)
    return models, config
