"""The photon count per pattern, read off the data when they are detector counts.

The Poisson model is right only when its scale matches the data: the loss compares
``(s X)**2`` with the predicted intensity, and with the contract's normalisation
(``X = D sqrt((N/2)**2 / mean sum D**2)``) the photon scale ``s = sqrt(nphotons) / (N/2)``
turns the normalised patterns back into the measured counts exactly when ``nphotons`` is
the mean over patterns of the summed counts. Ptychodus hands detector counts and contract
files hold ``sqrt(counts)``, so that number is in the data; a default of 1e9 photons is not.

:func:`resolve_nphotons` is what a backend calls before it trains: ``nphotons`` None (the
default) becomes the data's count, or :data:`~ptycho.config.config.DEFAULT_NPHOTONS` when
the data are not counts; a value the user set is kept, with a warning when it is more than
:data:`WARN_FACTOR` away from the data's. numpy only.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ptycho.config.config import DEFAULT_NPHOTONS, TrainingConfig

logger = logging.getLogger(__name__)

WARN_FACTOR = 3.0
"""A set ``nphotons`` further than this factor from the data's count is warned about."""
CHECK_MAX_COUNT = 1e4
"""Only squares up to this are tested for being whole numbers: above it float32 amplitudes
square to integers within the test's tolerance whatever they were."""
CHECK_TOLERANCE = 0.01
"""How close to a whole number a square must be (float32 sqrt of counts <= 1e4: < 2e-3)."""
CHECK_FRACTION = 0.95
"""Share of tested squares that must be whole numbers (inpainted bad pixels need not be);
random real amplitudes give about ``2 * CHECK_TOLERANCE``."""
CHECK_MIN_PIXELS = 200
"""Fewer testable pixels than this (all counts huge, or all zero): undecided, not counts."""
_CHECK_PATTERNS = 64  # patterns sampled (evenly through the scan) for the test
_CHUNK = 256


def amplitudes_of(data: Any) -> NDArray | None:
    """The (M, N, N) amplitude stack of a ``RawData`` (or anything with ``diff3d``); None for
    data that carry only normalised patterns (a grouped container)."""
    stack = getattr(data, 'diff3d', None)
    if stack is None:
        return None
    stack = np.asarray(stack)
    return stack if stack.ndim == 3 and stack.dtype.kind in 'iuf' else None


def are_counts(amplitudes: NDArray) -> bool:
    """True when the squares of ``amplitudes`` are whole numbers: ``sqrt(counts)``.

    Tested on the pixels whose square is between 0.5 and :data:`CHECK_MAX_COUNT` of up to
    64 patterns spread through the scan; undecidable data (too few such pixels) are not
    counts.
    """
    amplitudes = np.asarray(amplitudes)
    if amplitudes.dtype.kind in 'iu':
        return True
    if amplitudes.ndim < 1 or amplitudes.shape[0] == 0:
        return False
    picks = np.unique(np.linspace(0, amplitudes.shape[0] - 1,
                                  min(_CHECK_PATTERNS, amplitudes.shape[0])).astype(np.int64))
    squares = np.asarray(amplitudes[picks], dtype=np.float64) ** 2
    tested = squares[(squares > 0.5) & (squares <= CHECK_MAX_COUNT)]
    if tested.size < CHECK_MIN_PIXELS:
        return False
    whole = np.abs(tested - np.round(tested)) <= CHECK_TOLERANCE
    return bool(np.mean(whole) >= CHECK_FRACTION)


def mean_counts(amplitudes: NDArray) -> float:
    """Mean over patterns of the summed squares (the counts per pattern, for counts data)."""
    amplitudes = np.asarray(amplitudes)
    total = 0.0
    for start in range(0, amplitudes.shape[0], _CHUNK):
        chunk = np.asarray(amplitudes[start:start + _CHUNK], dtype=np.float64)
        total += float(np.sum(chunk * chunk))
    return total / max(amplitudes.shape[0], 1)


def counts_per_pattern(data: Any) -> float | None:
    """The data's mean photon count per pattern, or None when the data are not counts
    (or carry no amplitudes, like a grouped container)."""
    amplitudes = amplitudes_of(data)
    if amplitudes is None or not are_counts(amplitudes):
        return None
    return mean_counts(amplitudes)


def check_nphotons(nphotons: float, data_count: float, source: str) -> bool:
    """Warn (and return False) when ``nphotons`` is more than :data:`WARN_FACTOR` away
    from the ``data_count`` of ``source``."""
    ratio = max(nphotons, data_count) / max(min(nphotons, data_count), 1e-300)
    if ratio <= WARN_FACTOR:
        return True
    logger.warning('%s: nphotons=%.4g was set, but the data are counts with %.4g photons per '
                   'pattern on average (%.1fx apart); the Poisson model is right only at the '
                   "data's count: leave nphotons unset (none, or 0 in the Ptychodus panel) to "
                   'take it from the data', source, nphotons, data_count, ratio)
    return False


def resolve_nphotons(config: TrainingConfig, data: Any) -> TrainingConfig:
    """``config`` with ``nphotons`` decided (a copy when it changes; never modified).

    None: the data's count per pattern when they are counts, else
    :data:`DEFAULT_NPHOTONS`. A value already set is kept (the user's setting wins) and
    checked against the data (:func:`check_nphotons`).
    """
    source = str(getattr(data, 'source', type(data).__name__))
    found = counts_per_pattern(data)
    if config.nphotons is not None:
        if found is not None:
            check_nphotons(float(config.nphotons), found, source)
        return config
    if found is None:
        logger.info('%s: the patterns are not detector counts (their squares are not whole '
                    'numbers), so the photon count cannot be read off them; nphotons=%.4g '
                    '(set nphotons to the photons per pattern of the experiment)', source,
                    DEFAULT_NPHOTONS)
        return dataclasses.replace(config, nphotons=DEFAULT_NPHOTONS)
    logger.info('%s: nphotons=%.4g, the mean photon count per pattern of the data (counts)',
                source, found)
    return dataclasses.replace(config, nphotons=found)


def nphotons_or_default(nphotons: float | None) -> float:
    """``nphotons``, or :data:`DEFAULT_NPHOTONS` for a model built without data (None)."""
    return DEFAULT_NPHOTONS if nphotons is None else float(nphotons)
