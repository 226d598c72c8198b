"""Backend dispatcher: one entry point per workflow, routed by ``config.backend``.

Every function first mirrors the config into ``ptycho.params.cfg`` (legacy code reads it),
then validates the backend, and only then imports that backend's workflow module:
``'tensorflow'`` -> :mod:`ptycho.workflows.components` (torch is never imported),
``'pytorch'`` -> ``ptycho_torch.workflows.components`` (TensorFlow is never imported).
There is no silent fallback: a missing PyTorch install is a ``RuntimeError`` that says how
to install it, and a model bundle of the other backend is a ``ValueError`` naming both.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from types import ModuleType
from typing import Any

from ptycho import params
from ptycho.config.config import BACKENDS, update_legacy_dict

logger = logging.getLogger(__name__)

_MODULES = {
    'tensorflow': 'ptycho.workflows.components',
    'pytorch': 'ptycho_torch.workflows.components',
}
_FUNCTIONS = {
    'run': {'tensorflow': 'run_cdi_example', 'pytorch': 'run_cdi_example_torch'},
    'train': {'tensorflow': 'train_cdi_model', 'pytorch': 'train_cdi_model_torch'},
    'load': {'tensorflow': 'load_inference_bundle', 'pytorch': 'load_inference_bundle_torch'},
    'reassemble': {'tensorflow': 'reassemble_cdi_image',
                   'pytorch': '_reassemble_cdi_image_torch'},
}
_TORCH_FRAMEWORK = ('torch', 'lightning', 'lightning_fabric', 'pytorch_lightning')
TORCH_MISSING = (
    'PyTorch backend selected but torch module unavailable ({detail}). '
    'Install PyTorch with `pip install torch>=2.2` (or `pip install ptychopinn[torch]`, which '
    'also installs lightning), or set backend="tensorflow".'
)


def _backend(config: Any) -> str:
    """The validated backend name of ``config`` (ValueError listing the valid ones)."""
    backend = getattr(config, 'backend', 'tensorflow')
    if backend not in BACKENDS:
        raise ValueError(f'{type(config).__name__}.backend: expected one of {list(BACKENDS)}, '
                         f'found {backend!r}')
    return backend


def _require_torch() -> None:
    try:
        importlib.import_module('torch')
    except ImportError as exc:
        raise RuntimeError(TORCH_MISSING.format(detail=exc)) from exc


def backend_module(backend: str) -> ModuleType:
    """Import (lazily) and return the workflow module of ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f'backend: expected one of {list(BACKENDS)}, found {backend!r}')
    if backend == 'pytorch':
        _require_torch()
        try:
            return importlib.import_module(_MODULES[backend])
        except ImportError as exc:
            # Only a missing framework (torch, lightning) gets the install advice; any
            # other import failure (a broken install of this package) surfaces as itself.
            if exc.name is not None and exc.name.split('.')[0] not in _TORCH_FRAMEWORK:
                raise
            raise RuntimeError(TORCH_MISSING.format(detail=exc)) from exc
    return importlib.import_module(_MODULES[backend])


def _prepare(config: Any, job: str) -> tuple[str, Any]:
    """Sync params.cfg, choose the backend, import it, return (backend, function)."""
    update_legacy_dict(params.cfg, config)
    backend = _backend(config)
    module = backend_module(backend)
    name = _FUNCTIONS[job][backend]
    try:
        function = getattr(module, name)
    except AttributeError:
        raise RuntimeError(f'{module.__name__} has no {name}(); the {backend} backend '
                           f'installation is incomplete') from None
    logger.info('Dispatching %s to the %s backend (%s.%s)', job, backend, module.__name__, name)
    return backend, function


def _tag(results: Any, backend: str) -> Any:
    if isinstance(results, dict):
        results['backend'] = backend
    return results


def run_cdi_example_with_backend(train_data: Any, test_data: Any | None, config: Any,
                                 flip_x: bool = False, flip_y: bool = False,
                                 transpose: bool = False, M: int | None = None,
                                 do_stitching: bool = False
                                 ) -> tuple[Any, Any, dict[str, Any]]:
    """Train (+ save, + optional stitching) with ``config.backend``:
    ``(amplitude, phase, results)`` with ``results['backend']``."""
    backend, function = _prepare(config, 'run')
    amplitude, phase, results = function(train_data, test_data, config, flip_x=flip_x,
                                         flip_y=flip_y, transpose=transpose, M=M,
                                         do_stitching=do_stitching)
    return amplitude, phase, _tag(results, backend)


def train_cdi_model_with_backend(train_data: Any, test_data: Any | None, config: Any
                                 ) -> dict[str, Any]:
    """Train only; the backend's results dict with ``results['backend']``."""
    backend, function = _prepare(config, 'train')
    return _tag(function(train_data, test_data, config), backend)


def check_bundle_backend(model_dir: str | os.PathLike[str], backend: str) -> None:
    """ValueError naming both backends when the bundle was written by the other one."""
    from ptycho import bundle as bundle_io  # stdlib-only module

    bundle_io.read_bundle(model_dir, expected_backend=backend)


def load_inference_bundle_with_backend(model_dir: str | os.PathLike[str], config: Any
                                       ) -> tuple[Any, Any]:
    """Load a trained model with ``config.backend``; the bundle must match that backend."""
    update_legacy_dict(params.cfg, config)
    backend = _backend(config)
    check_bundle_backend(model_dir, backend)
    _, function = _prepare(config, 'load')
    return function(model_dir)


def _call_reassemble(function: Any, test_data: Any, config: Any, models: Any, flip_x: bool,
                     flip_y: bool, transpose: bool, M: int | None) -> Any:
    kwargs: dict[str, Any] = {'flip_x': flip_x, 'flip_y': flip_y, 'transpose': transpose, 'M': M}
    accepted = inspect.signature(function).parameters
    if models is not None:
        if 'models' not in accepted:
            raise RuntimeError(f'{function.__module__}.{function.__name__} does not accept '
                               f'trained models')
        kwargs['models'] = models
    return function(test_data, config, **kwargs)


def reassemble_with_backend(test_data: Any, config: Any, models: Any = None,
                            flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                            M: int | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Reconstruct and stitch ``test_data`` with ``config.backend``.

    ``models`` are what that backend's loader or trainer returned; without them the bundle
    at ``config.model_path`` is loaded (after checking its backend).
    """
    update_legacy_dict(params.cfg, config)
    backend = _backend(config)
    model_path = getattr(config, 'model_path', None)
    if models is None and model_path is not None and str(model_path) not in ('', '.'):
        models, _ = load_inference_bundle_with_backend(model_path, config)
    _, function = _prepare(config, 'reassemble')
    amplitude, phase, results = _call_reassemble(function, test_data, config, models, flip_x,
                                                 flip_y, transpose, M)
    return amplitude, phase, _tag(results, backend)
