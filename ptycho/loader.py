"""Grouped data -> normalised network input (``PtychoDataContainer``).

Both backends and Ptychodus' built-in integration call :func:`load` on the dict made
by ``RawData.generate_grouped_data``. It applies the one normalisation the physics
relies on (DESIGN.md section 4): ``X = D * sqrt((N/2)**2 / mean_patterns(sum D**2))``, so
the mean normalised pattern carries ``(N/2)**2`` of energy, the same as a unit object
under the normalised probe. numpy only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho.probe import normalize_probe

logger = logging.getLogger(__name__)

_REQUIRED = ('diffraction', 'coords_offsets', 'coords_relative')


@dataclass
class PtychoDataContainer:
    """Network-ready arrays of one dataset (shapes in ``specs/architecture.md`` section 3)."""

    X: NDArray[np.float32]
    norm_factor: float
    probe: NDArray[np.complex64]
    global_offsets: NDArray[np.float64]
    local_offsets: NDArray[np.float64]
    nn_indices: NDArray[np.int64] | None
    diffraction: NDArray[np.float32]
    Y: NDArray[np.complex64] | None = None
    Y_I: NDArray[np.float32] | None = None
    Y_phi: NDArray[np.float32] | None = None

    @property
    def coords_nominal(self) -> NDArray[np.float64]:
        """Legacy name of ``local_offsets`` (the model's second input)."""
        return self.local_offsets

    @property
    def N(self) -> int:
        return int(self.X.shape[1])

    @property
    def gridsize(self) -> int:
        return int(round(math.sqrt(self.X.shape[-1])))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        return (f'PtychoDataContainer(groups={len(self)}, N={self.N}, C={self.X.shape[-1]}, '
                f'norm_factor={self.norm_factor:.6g}, has_Y={self.Y is not None})')


def normalization_factor(diffraction: ArrayLike) -> float:
    """``sqrt((N/2)**2 / mean over patterns of sum_pixels D**2)`` for D (B, N, N, C)."""
    D = np.asarray(diffraction, dtype=np.float64)
    N = D.shape[1]
    energy = float(np.mean(np.sum(D ** 2, axis=(1, 2))))
    if not math.isfinite(energy) or energy <= 0:
        raise ValueError(f'loader: cannot normalise diffraction: expected patterns with positive '
                         f'total energy, found mean energy {energy}')
    return math.sqrt((N / 2) ** 2 / energy)


def _check_grouped(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f'loader.load: the callback must return the dict of '
                         f'generate_grouped_data, found {type(data).__name__}')
    missing = [key for key in _REQUIRED if key not in data or data[key] is None]
    if missing:
        raise ValueError(f'loader.load: grouped data lack key(s) {missing}; expected '
                         f'{list(_REQUIRED)} as made by RawData.generate_grouped_data, found keys '
                         f'{sorted(data)}')
    D = np.asarray(data['diffraction'])
    if D.ndim != 4 or D.shape[1] != D.shape[2]:
        raise ValueError(f'loader.load: key "diffraction": expected shape (B, N, N, C), '
                         f'found {D.shape}')
    B, C = D.shape[0], D.shape[3]
    if B == 0:
        raise ValueError('loader.load: key "diffraction": expected at least one group, found 0')
    for key, last in (('coords_offsets', 1), ('coords_relative', C)):
        shape = np.shape(data[key])
        if shape != (B, 1, 2, last):
            raise ValueError(f'loader.load: key {key!r}: expected shape {(B, 1, 2, last)}, '
                             f'found {shape}')
    return data


def _select(array: Any, which: slice) -> Any:
    return None if array is None else array[which]


def load(cb: Callable[[], Mapping[str, Any]], probeGuess: ArrayLike, which: str | None = None,
         create_split: bool = False, *, probe_mask: bool = False) -> PtychoDataContainer:
    """Normalise grouped data into a :class:`PtychoDataContainer`.

    ``cb()`` returns the grouped dict. The normalisation factor is computed over every
    pattern the dict holds (before any split), so train and test halves share it.
    ``create_split=True`` with ``which='train'|'test'`` keeps the first/second half of the
    groups in their order (legacy behaviour). ``probe_mask`` applies the N/4 disk to the
    probe before it is normalised.
    """
    if which not in (None, 'train', 'test'):
        raise ValueError(f"loader.load: which must be None, 'train' or 'test', found {which!r}")
    if create_split and which is None:
        raise ValueError("loader.load: create_split=True needs which='train' or 'test'")
    data = _check_grouped(cb())
    D = np.asarray(data['diffraction'], dtype=np.float32)
    N = D.shape[1]
    norm = normalization_factor(D)
    probe = normalize_probe(probeGuess, N, mask=probe_mask, what='loader.load: probeGuess')

    part = slice(None)
    if create_split:
        half = D.shape[0] // 2
        part = slice(None, half) if which == 'train' else slice(half, None)
    D = D[part]
    Y = data.get('Y')
    Y = None if Y is None else np.asarray(Y, dtype=np.complex64)[part]
    nn = data.get('nn_indices')
    container = PtychoDataContainer(
        X=(D * np.float32(norm)).astype(np.float32),
        norm_factor=norm,
        probe=probe,
        global_offsets=np.asarray(data['coords_offsets'], dtype=np.float64)[part].copy(),
        local_offsets=np.asarray(data['coords_relative'], dtype=np.float64)[part].copy(),
        nn_indices=None if nn is None else np.asarray(nn, dtype=np.int64)[part].copy(),
        diffraction=D.copy(),
        Y=None if Y is None else Y.copy(),
        Y_I=None if Y is None else np.abs(Y).astype(np.float32),
        Y_phi=None if Y is None else np.angle(Y).astype(np.float32),
    )
    logger.info('Loaded %s%s', container, f' ({which} split)' if create_split else '')
    return container


def container_from_raw(raw: Any, config: Any, which: str | None = None,
                       create_split: bool = False) -> PtychoDataContainer:
    """Group ``raw`` (a ``RawData``) as ``config`` says and load it: what backends call.

    ``config`` is a ``TrainingConfig`` or ``InferenceConfig``; it supplies N, gridsize,
    neighbour count, n_groups, the sampling seed and mode, and ``probe_mask``. When
    ``n_groups`` exceeds the number of positions at gridsize > 1, several groups are
    drawn per seed position so the requested count can be met.
    """
    N = config.model.require_size()
    gridsize = config.model.gridsize
    n_groups = config.n_groups
    nsamples = 1
    if gridsize > 1 and n_groups is not None and n_groups > len(raw):
        nsamples = math.ceil(n_groups / len(raw))
    grouped = raw.generate_grouped_data(
        N, K=config.neighbor_count, nsamples=nsamples, seed=config.seed,
        sequential_sampling=config.sequential_sampling, gridsize=gridsize, n_groups=n_groups)
    return load(lambda: grouped, raw.probeGuess, which=which, create_split=create_split,
                probe_mask=config.model.probe_mask)
