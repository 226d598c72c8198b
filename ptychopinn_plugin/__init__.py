"""PtychoPINN reconstructor plugin for Ptychodus (both backends, one worker process).

This package is imported by the Ptychodus GUI/batch process, so its Ptychodus-side
modules import only Ptychodus, numpy and ``ptycho.config.config``. TensorFlow and torch
are imported only inside the worker process (:mod:`ptychopinn_plugin.worker`).

Run ``ptychodus-pinn`` (or ``python -m ptychopinn_plugin``) instead of ``ptychodus``
to get Ptychodus with this library registered; see ``specs/ptychodus_api_spec.md``.
"""

LIBRARY_NAME = 'PtychoPINN-Dual'
"""Ptychodus library name: algorithm keys are ``ptychopinn-dual_pinn`` and
``ptychopinn-dual_supervised`` (no ``_`` in the name, distinct from the built-in
``PtychoPINN`` and ``PtychoPINN-Torch`` libraries)."""

RECONSTRUCTOR_NAMES = ('PINN', 'Supervised')

__all__ = ['LIBRARY_NAME', 'RECONSTRUCTOR_NAMES', 'PtychoPINNTrainableReconstructor']


def __getattr__(name: str) -> object:
    """``PtychoPINNTrainableReconstructor`` on first use (it imports Ptychodus, not before)."""
    if name == 'PtychoPINNTrainableReconstructor':
        from .reconstructor import PtychoPINNTrainableReconstructor

        return PtychoPINNTrainableReconstructor
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
