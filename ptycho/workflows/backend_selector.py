"""Backend dispatcher: the one router from ``config.backend`` to a backend.

:func:`get_backend` validates the name, imports only the chosen backend
(``'tensorflow'`` -> :class:`ptycho.tf.backend.TensorFlowBackend`, torch never imported;
``'pytorch'`` -> :class:`ptycho_torch.backend.TorchBackend`, TensorFlow never imported)
and returns it; it implements :class:`ptycho.workflows.contract.Backend`, which the CLI and
the Ptychodus plugin's worker use. There is no silent fallback: a missing PyTorch install is
a ``RuntimeError`` that says how to install it, and a model bundle of the other backend is
a ``ValueError`` naming both.

The reference guide's entry points (:func:`run_cdi_example_with_backend` -> ``(amplitude,
phase, results)`` with ``results['backend']``, and its train/load/reassemble twins) first
mirror the config into ``ptycho.params.cfg`` and then call the same-named method of the
chosen backend.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from ptycho.config.config import BACKENDS, mirror_legacy_params
from ptycho.workflows.contract import Backend

logger = logging.getLogger(__name__)

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


def get_backend(backend: str) -> Backend:
    """The backend named ``backend``, imported now (and only it)."""
    if backend not in BACKENDS:
        raise ValueError(f'backend: expected one of {list(BACKENDS)}, found {backend!r}')
    if backend == 'pytorch':
        _require_torch()
        try:
            from ptycho_torch.backend import TorchBackend
        except ImportError as exc:
            # Only a missing framework (torch, lightning) gets the install advice; any
            # other import failure (a broken install of this package) surfaces as itself.
            if exc.name is not None and exc.name.split('.')[0] not in _TORCH_FRAMEWORK:
                raise
            raise RuntimeError(TORCH_MISSING.format(detail=exc)) from exc
        return TorchBackend()
    from ptycho.tf.backend import TensorFlowBackend

    return TensorFlowBackend()


def backend_for(config: Any) -> Backend:
    """Mirror ``config`` into ``params.cfg`` (legacy readers), then :func:`get_backend`."""
    mirror_legacy_params(config)
    backend = get_backend(_backend(config))
    logger.info('Dispatching %s to the %s backend', type(config).__name__, backend.name)
    return backend


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
    backend = backend_for(config)
    amplitude, phase, results = backend.run_cdi_example(
        train_data, test_data, config, flip_x=flip_x, flip_y=flip_y, transpose=transpose, M=M,
        do_stitching=do_stitching)
    return amplitude, phase, _tag(results, backend.name)


def train_cdi_model_with_backend(train_data: Any, test_data: Any | None, config: Any
                                 ) -> dict[str, Any]:
    """Train only; the backend's results dict with ``results['backend']``."""
    backend = backend_for(config)
    return _tag(backend.train_cdi_model(train_data, test_data, config), backend.name)


def check_bundle_backend(model_dir: str | os.PathLike[str], backend: str) -> None:
    """ValueError naming both backends when the bundle was written by the other one."""
    from ptycho import bundle as bundle_io  # stdlib-only module

    bundle_io.read_bundle(model_dir, expected_backend=backend)


def load_inference_bundle_with_backend(model_dir: str | os.PathLike[str], config: Any
                                       ) -> tuple[Any, Any]:
    """Load a trained model with ``config.backend``; the bundle must match that backend."""
    check_bundle_backend(model_dir, _backend(config))
    return backend_for(config).load_inference_bundle(model_dir)


def reassemble_with_backend(test_data: Any, config: Any, models: Any = None,
                            flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                            M: int | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Reconstruct and stitch ``test_data`` with ``config.backend``.

    ``models`` are what that backend's loader or trainer returned; without them the bundle
    at ``config.model_path`` is loaded (after checking its backend).
    """
    _backend(config)
    model_path = getattr(config, 'model_path', None)
    if models is None and model_path is not None and str(model_path) not in ('', '.'):
        models, _ = load_inference_bundle_with_backend(model_path, config)
    backend = backend_for(config)
    amplitude, phase, results = backend.reassemble_cdi_image(
        test_data, config, flip_x, flip_y, transpose, M, models=models)
    return amplitude, phase, _tag(results, backend.name)
