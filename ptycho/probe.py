"""Probe handling shared by both backends: mode reduction, normalisation, masking.

The network sees one coherent probe of size N x N. Ptychodus hands multi-mode stacks
``(modes, H, W)`` (and the full ``(OPR, modes, H, W)`` array exists too), so
:func:`reduce_probe_modes` collapses them with one documented, logged rule.
:func:`normalize_probe` then fixes the probe energy to ``(N/2)**2`` so that a unit
object produces the same diffracted energy as the mean normalised pattern
(see ``ptycho.loader``). numpy only: no TensorFlow, no torch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho import params

logger = logging.getLogger(__name__)


class ProbeError(ValueError):
    """A probe array has the wrong shape, no power, or non-finite values."""


def _as_complex_array(probe: ArrayLike, what: str) -> NDArray[np.complex128]:
    array = np.asarray(probe)
    if array.dtype.kind not in 'biufc':
        raise ProbeError(f'{what}: expected a numeric (complex) array, found dtype {array.dtype}')
    if array.size == 0:
        raise ProbeError(f'{what}: expected a non-empty probe array, found shape {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ProbeError(f'{what}: expected finite values, found NaN or Inf')
    return array.astype(np.complex128, copy=True)


def reduce_probe_modes(probe: ArrayLike, *, what: str = 'probe') -> NDArray[np.complex64]:
    """Collapse a probe stack to one (H, W) complex64 probe.

    Rule: (H, W) is returned as is; (OPR, modes, H, W) keeps OPR index 0 (what
    Ptychodus calls the probe without orthogonal probe relaxation); (modes, H, W)
    keeps the mode of largest power, rescaled to carry the total power of all modes,
    so the diffracted photon budget is unchanged.
    """
    array = _as_complex_array(probe, what)
    if array.ndim == 4:
        logger.info('%s: (OPR, modes, H, W) stack %s: keeping OPR index 0', what, array.shape)
        array = array[0]
    if array.ndim == 2:
        return array.astype(np.complex64)
    if array.ndim != 3:
        raise ProbeError(f'{what}: expected shape (H, W), (modes, H, W) or (OPR, modes, H, W), '
                         f'found shape {array.shape}')
    powers = np.sum(np.abs(array) ** 2, axis=(-2, -1))
    total = float(powers.sum())
    if total <= 0:
        raise ProbeError(f'{what}: expected a probe with non-zero power, found all zeros')
    best = int(np.argmax(powers))
    reduced = array[best] * np.sqrt(total / powers[best])
    if array.shape[0] > 1:
        logger.warning(
            '%s: %d probe modes reduced to one: kept mode %d (%.1f%% of the power), rescaled '
            'to the total power of all modes', what, array.shape[0], best,
            100 * powers[best] / total)
    return reduced.astype(np.complex64)


def probe_mask(N: int) -> NDArray[np.float32]:
    """Disk of radius N/4 centred at pixel (N/2, N/2): the ``probe_mask=True`` support."""
    rows, cols = np.meshgrid(np.arange(N), np.arange(N), indexing='ij')
    radius2 = (rows - N // 2) ** 2 + (cols - N // 2) ** 2
    return (radius2 <= (N / 4) ** 2).astype(np.float32)


def normalize_probe(probe: ArrayLike, N: int | None = None, *, mask: bool = False,
                    what: str = 'probe') -> NDArray[np.complex64]:
    """Probe scaled so that ``sum |P|**2 == (N/2)**2``, as complex64 (N, N).

    Stacks are reduced first (:func:`reduce_probe_modes`); ``mask=True`` applies
    :func:`probe_mask` before scaling. The input is never modified.
    """
    reduced = reduce_probe_modes(probe, what=what).astype(np.complex128)
    if reduced.shape[0] != reduced.shape[1]:
        raise ProbeError(f'{what}: expected a square probe, found shape {reduced.shape}')
    if N is None:
        N = reduced.shape[0]
    if reduced.shape != (N, N):
        raise ProbeError(f'{what}: expected shape ({N}, {N}) to match the patch size N={N}, '
                         f'found {reduced.shape}')
    if mask:
        reduced = reduced * probe_mask(N)
    power = float(np.sum(np.abs(reduced) ** 2))
    if power <= 0:
        raise ProbeError(f'{what}: expected a probe with non-zero power, found all zeros'
                         + (' inside the probe mask' if mask else ''))
    return (reduced * np.sqrt((N / 2) ** 2 / power)).astype(np.complex64)


def set_probe_guess(X: Any, probe: ArrayLike) -> NDArray[np.complex64]:
    """Legacy entry point: normalise ``probe`` and record it in ``params.cfg['probe']``.

    ``X`` (the diffraction data, may be None) is accepted for compatibility with
    callers such as Ptychodus 1.7.0 and is not used: the normalisation depends on the
    probe alone. Returns the normalised probe.
    """
    del X  # kept for the legacy signature
    normalised = normalize_probe(probe)
    params.cfg['probe'] = normalised
    return normalised


def get_probe_guess() -> NDArray[np.complex64]:
    """The probe recorded by :func:`set_probe_guess` (KeyError if none was set)."""
    return params.get('probe')
