"""``RawData``: the NPZ data contract, its validation, and neighbour grouping.

Everything that enters PtychoPINN (an NPZ file, Ptychodus' in-memory arrays, a
simulation) becomes a validated :class:`RawData` here, so that the backends can trust
their inputs. The contract is written out in ``specs/data_contracts.md``; in short:
``diff3d`` is (M, N, N) float32 *amplitude* (sqrt of counts), positions are patch
centres in object pixels with x = column and y = row, and the probe is (N, N)
complex64. Raw detector counts (Ptychodus passes them) are recognised and converted
loudly; legacy (N, N, M) stacks are transposed loudly. numpy/scipy only.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho import physics
from ptycho.atomic import atomic_path
from ptycho.conventions import DataConventions, centre_dc, check_positions, to_centres
from ptycho.probe import ProbeError, reduce_probe_modes

logger = logging.getLogger(__name__)

DIFFRACTION_UNITS = ('auto', 'amplitude', 'counts')


class DataContractError(ValueError):
    """Input data break the contract in ``specs/data_contracts.md``."""


class CountsConversionWarning(UserWarning):
    """Diffraction looked like detector counts and was converted to amplitude."""


def _fail(source: str, key: str, expected: str, found: Any) -> DataContractError:
    return DataContractError(f'{source}: key {key!r}: expected {expected}, found {found}')


def _describe(array: NDArray) -> str:
    return f'shape {array.shape} dtype {array.dtype}'


def _finite(source: str, key: str, array: NDArray) -> None:
    if array.dtype.kind in 'fc' and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise _fail(source, key, 'finite values', f'{bad} NaN/Inf value(s)')


def _numeric(source: str, key: str, value: Any, kinds: str, what: str) -> NDArray:
    if value is None:
        raise _fail(source, key, what, 'None')
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        raise _fail(source, key, what, f'dtype {array.dtype}')
    if array.size == 0:
        raise _fail(source, key, f'a non-empty array ({what})', f'shape {array.shape}')
    _finite(source, key, array)
    return array


def _coords(source: str, key: str, value: Any) -> NDArray[np.float64]:
    array = _numeric(source, key, value, 'iuf', 'a 1-D real array of positions in object pixels')
    if array.ndim != 1:
        raise _fail(source, key, 'a 1-D array (one position per pattern)', _describe(array))
    return np.array(array, dtype=np.float64, copy=True)


def looks_like_counts(diffraction: NDArray) -> bool:
    """True for integer dtype, or float data that are all integers with max > 1."""
    if diffraction.dtype.kind in 'iu':
        return True
    if diffraction.dtype.kind != 'f':
        return False
    first = diffraction.reshape(diffraction.shape[0], -1)[0] if diffraction.ndim else diffraction
    if not np.all(first == np.round(first)):  # cheap early exit for real amplitudes
        return False
    return bool(diffraction.max() > 1 and np.all(diffraction == np.round(diffraction)))


def _diffraction(source: str, key: str, value: Any, units: str,
                 n_positions: int | None) -> NDArray[np.float32]:
    """Validate the pattern stack and return a fresh float32 amplitude array (M, N, N)."""
    if units not in DIFFRACTION_UNITS:
        raise _fail(source, 'diffraction_units', f'one of {list(DIFFRACTION_UNITS)}', repr(units))
    if value is None:
        raise _fail(source, key, 'a (M, N, N) array of diffraction amplitudes', 'None')
    array = np.asarray(value)
    if array.dtype.kind == 'c':
        raise _fail(source, key, 'real diffraction amplitudes (|far field|), not complex values',
                    f'dtype {array.dtype}')
    array = _numeric(source, key, array, 'iuf', 'a real (M, N, N) array of diffraction amplitudes')
    if array.ndim != 3:
        raise _fail(source, key, 'a 3-D (M, N, N) stack of diffraction patterns', _describe(array))
    if (array.shape[0] == array.shape[1] != array.shape[2]
            and (n_positions is None or n_positions == array.shape[2])):
        logger.warning('%s: key %r has the legacy (N, N, M) layout %s; transposing to (M, N, N)',
                       source, key, array.shape)
        array = np.transpose(array, (2, 0, 1))
    if array.shape[1] != array.shape[2]:
        raise _fail(source, key, 'square patterns (M, N, N)', _describe(array))
    minimum = array.min()
    if minimum < 0:
        raise _fail(source, key, 'non-negative diffraction amplitudes',
                    f'minimum {minimum} ({int(np.count_nonzero(array < 0))} negative value(s))')
    if units == 'counts' or (units == 'auto' and looks_like_counts(array)):
        message = (f'{source}: key {key!r} holds detector counts ({array.dtype}, max '
                   f'{array.max()}); converting to amplitude = sqrt(counts) as the data contract '
                   f'requires')
        logger.warning(message)
        warnings.warn(message, CountsConversionWarning, stacklevel=4)
        return np.sqrt(array.astype(np.float64)).astype(np.float32)
    return np.array(array, dtype=np.float32, copy=True)


def _probe(source: str, key: str, value: Any, N: int) -> tuple[NDArray[np.complex64],
                                                              NDArray[np.complex64] | None]:
    array = _numeric(source, key, value, 'iufc', 'a complex (N, N) probe or a mode stack')
    if array.ndim not in (2, 3, 4):
        raise _fail(source, key, 'shape (N, N), (modes, N, N) or (OPR, modes, N, N)',
                    _describe(array))
    if array.shape[-2:] != (N, N):
        raise _fail(source, key, f'a probe of the pattern size ({N}, {N}) in its last two axes',
                    _describe(array))
    try:
        probe = reduce_probe_modes(array, what=f'{source}: key {key!r}')
    except ProbeError as exc:
        raise DataContractError(str(exc)) from exc
    if not np.any(probe):
        raise _fail(source, key, 'a probe with non-zero power', 'all zeros')
    modes = np.array(array, dtype=np.complex64, copy=True) if array.ndim > 2 else None
    return probe, modes


class RawData:
    """Validated scan data: positions, amplitude patterns, probe, optional ground truth.

    Attributes mirror the NPZ keys: ``xcoords``/``ycoords`` (M,) float64 patch centres
    (x = column, y = row, object pixels), ``xcoords_start``/``ycoords_start``,
    ``diff3d`` (M, N, N) float32 amplitude, ``probeGuess`` (N, N) complex64 (a stack is
    reduced and kept in ``probe_modes``), ``scan_index`` (M,) int64, ``objectGuess``
    complex64 or None, ``Y`` (M, N, N) complex64 or None, ``norm_Y_I``, ``bad_pixels``
    (N, N) bool or None. All arrays are private copies: inputs are never modified.
    """

    def __init__(self, xcoords: ArrayLike, ycoords: ArrayLike, xcoords_start: ArrayLike | None,
                 ycoords_start: ArrayLike | None, diff3d: ArrayLike, probeGuess: ArrayLike,
                 scan_index: ArrayLike | None, objectGuess: ArrayLike | None = None,
                 Y: ArrayLike | None = None, norm_Y_I: float | None = None,
                 source: str | os.PathLike[str] | None = None, *,
                 bad_pixels: ArrayLike | None = None, diffraction_units: str = 'auto',
                 diffraction_key: str = 'diffraction', dc_position: str = 'auto') -> None:
        src = str(source) if source is not None else 'RawData'
        self.source = src
        self.xcoords = _coords(src, 'xcoords', xcoords)
        M = self.xcoords.shape[0]
        self.ycoords = _coords(src, 'ycoords', ycoords)
        self.xcoords_start = (self.xcoords.copy() if xcoords_start is None
                              else _coords(src, 'xcoords_start', xcoords_start))
        self.ycoords_start = (self.ycoords.copy() if ycoords_start is None
                              else _coords(src, 'ycoords_start', ycoords_start))
        for key in ('ycoords', 'xcoords_start', 'ycoords_start'):
            n = getattr(self, key).shape[0]
            if n != M:
                raise _fail(src, key, f'{M} positions (the length of xcoords)', f'{n}')
        self.diff3d = _diffraction(src, diffraction_key, diff3d, diffraction_units, M)
        if self.diff3d.shape[0] != M:
            raise _fail(src, diffraction_key, f'{M} patterns (one per position in xcoords)',
                        f'{self.diff3d.shape[0]} patterns, {_describe(self.diff3d)}')
        N = self.diff3d.shape[-1]
        self.probeGuess, self.probe_modes = _probe(src, 'probeGuess', probeGuess, N)
        if scan_index is None:
            self.scan_index = np.zeros(M, dtype=np.int64)
        else:
            index = _numeric(src, 'scan_index', scan_index, 'iuf', 'a 1-D integer array')
            if index.ndim != 1 or index.shape[0] != M:
                raise _fail(src, 'scan_index', f'a 1-D array of {M} integers', _describe(index))
            if index.dtype.kind == 'f' and not np.all(index == np.round(index)):
                raise _fail(src, 'scan_index', 'integer values', 'non-integer floats')
            self.scan_index = np.array(index, dtype=np.int64, copy=True)
        self.objectGuess: NDArray[np.complex64] | None = None
        if objectGuess is not None:
            obj = _numeric(src, 'objectGuess', objectGuess, 'iufc', 'a complex (H, W) object')
            if obj.ndim == 3 and obj.shape[0] == 1:
                obj = obj[0]
            if obj.ndim != 2:
                raise _fail(src, 'objectGuess', 'a 2-D (H, W) complex object', _describe(obj))
            self.objectGuess = np.array(obj, dtype=np.complex64, copy=True)
        self.Y: NDArray[np.complex64] | None = None
        if Y is not None:
            patches = _numeric(src, 'Y', Y, 'iufc', 'complex (M, N, N) object patches')
            if patches.ndim == 4 and patches.shape[-1] == 1:
                patches = patches[..., 0]
            if patches.shape != (M, N, N):
                raise _fail(src, 'Y', f'object patches of shape ({M}, {N}, {N})',
                            _describe(patches))
            self.Y = np.array(patches, dtype=np.complex64, copy=True)
        self.norm_Y_I: float | None = None
        if norm_Y_I is not None:
            value = _numeric(src, 'norm_Y_I', norm_Y_I, 'iuf', 'a finite real scalar')
            if value.size != 1:
                raise _fail(src, 'norm_Y_I', 'a scalar', _describe(value))
            self.norm_Y_I = float(value.reshape(()))
        self.bad_pixels: NDArray[np.bool_] | None = None
        if bad_pixels is not None:
            mask = np.asarray(bad_pixels)
            if mask.dtype.kind not in 'biu' or mask.shape != (N, N):
                raise _fail(src, 'bad_pixels', f'a boolean ({N}, {N}) mask', _describe(mask))
            self.bad_pixels = np.array(mask, dtype=bool, copy=True)
        self.diff3d, self.bad_pixels = centre_dc(self.diff3d, self.bad_pixels, dc_position, src,
                                                 diffraction_key)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_coords_without_pc(cls, xcoords: ArrayLike, ycoords: ArrayLike, diff3d: ArrayLike,
                               probeGuess: ArrayLike, scan_index: ArrayLike | None,
                               objectGuess: ArrayLike | None = None) -> 'RawData':
        """Build from in-memory arrays (Ptychodus' path); start positions = positions."""
        return cls(xcoords, ycoords, None, None, diff3d, probeGuess, scan_index,
                   objectGuess=objectGuess, source='RawData.from_coords_without_pc',
                   diffraction_key='diff3d')

    @classmethod
    def from_file(cls, path: str | os.PathLike[str],
                  conventions: DataConventions | None = None) -> 'RawData':
        """Read and validate an NPZ file (see ``specs/data_contracts.md``); ``conventions``
        say how the file departs from the contract (section 8: DC, positions, x/y, units)."""
        conventions = conventions or DataConventions()
        path = Path(path)
        arrays = _read_npz(path)
        src = str(path)
        if 'diffraction' in arrays:
            diff_key = 'diffraction'
            if 'diff3d' in arrays:
                logger.warning('%s: both "diffraction" and legacy "diff3d" present; using '
                               '"diffraction"', src)
        elif 'diff3d' in arrays:
            diff_key = 'diff3d'
        else:
            raise _fail(src, 'diffraction', 'an (M, N, N) amplitude array under "diffraction" '
                        '(or legacy "diff3d")', f'only the keys {sorted(arrays)}')
        for key in ('xcoords', 'ycoords', 'probeGuess'):
            if key not in arrays:
                raise _fail(src, key, 'this required key to be present',
                            f'only the keys {sorted(arrays)}')
        units = 'auto'
        if 'diffraction_units' in arrays:
            marker = arrays['diffraction_units']
            if marker.size != 1 or marker.dtype.kind not in 'SU':
                raise _fail(src, 'diffraction_units', f'one string of {list(DIFFRACTION_UNITS)}',
                            _describe(marker))
            units = marker.reshape(()).item()
            units = units.decode() if isinstance(units, bytes) else str(units)
        if conventions.units != 'auto':
            units = conventions.units
        norm = arrays.get('norm_Y_I')
        raw = cls(arrays['xcoords'], arrays['ycoords'], arrays.get('xcoords_start'),
                  arrays.get('ycoords_start'), arrays[diff_key], arrays['probeGuess'],
                  arrays.get('scan_index'), objectGuess=arrays.get('objectGuess'),
                  Y=arrays.get('Y'), norm_Y_I=norm, source=src,
                  bad_pixels=arrays.get('bad_pixels'), diffraction_units=units,
                  diffraction_key=diff_key, dc_position=conventions.dc)
        check_positions(raw.xcoords, raw.ycoords, raw.N,
                        None if raw.objectGuess is None else raw.objectGuess.shape,
                        conventions, src)
        # the file's positions as patch centres (x = column); raw holds private copies
        raw.xcoords, raw.ycoords = to_centres(raw.xcoords, raw.ycoords, raw.N, conventions)
        raw.xcoords_start, raw.ycoords_start = to_centres(raw.xcoords_start, raw.ycoords_start,
                                                          raw.N, conventions)
        logger.info('Loaded %s: %d patterns of %dx%d', src, len(raw), raw.N, raw.N)
        return raw

    # ------------------------------------------------------------------ output

    def to_dict(self) -> dict[str, NDArray]:
        """The NPZ keys this object is written with (amplitudes, units marked)."""
        out: dict[str, NDArray] = {
            'xcoords': self.xcoords, 'ycoords': self.ycoords,
            'xcoords_start': self.xcoords_start, 'ycoords_start': self.ycoords_start,
            'diffraction': self.diff3d,
            'diffraction_units': np.array('amplitude'),
            'probeGuess': self.probe_modes if self.probe_modes is not None else self.probeGuess,
            'scan_index': self.scan_index,
        }
        if self.objectGuess is not None:
            out['objectGuess'] = self.objectGuess
        if self.Y is not None:
            out['Y'] = self.Y
        if self.norm_Y_I is not None:
            out['norm_Y_I'] = np.array(self.norm_Y_I, dtype=np.float64)
        if self.bad_pixels is not None:
            out['bad_pixels'] = self.bad_pixels
        return out

    def to_file(self, path: str | os.PathLike[str], *, compressed: bool = False) -> Path:
        """Write an NPZ atomically (temp file + ``os.replace``); reading it back is lossless."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, 'wb') as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **self.to_dict())
        logger.info('Wrote %d patterns to %s', len(self), path)
        return path

    def subset(self, indices: ArrayLike, source: str | None = None) -> 'RawData':
        """A new ``RawData`` of the patterns at ``indices`` (in that order), sharing the
        probe (stack), object guess and bad-pixel mask; arrays are copies."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        if index.size == 0 or index.min() < -len(self) or index.max() >= len(self):
            raise ValueError(f'{self.source}: subset indices must lie in 0..{len(self) - 1}, '
                             f'found {index.size} indices'
                             + (f' from {index.min()} to {index.max()}' if index.size else ''))
        return RawData(self.xcoords[index], self.ycoords[index], self.xcoords_start[index],
                       self.ycoords_start[index], self.diff3d[index],
                       self.probe_modes if self.probe_modes is not None else self.probeGuess,
                       self.scan_index[index], objectGuess=self.objectGuess,
                       Y=None if self.Y is None else self.Y[index], norm_Y_I=self.norm_Y_I,
                       source=source or f'{self.source}[{index.size} of {len(self)}]',
                       bad_pixels=self.bad_pixels, diffraction_units='amplitude',
                       diffraction_key='diffraction', dc_position='centre')

    # ------------------------------------------------------------------ queries

    @property
    def N(self) -> int:
        """Pattern (and probe) side length."""
        return int(self.diff3d.shape[-1])

    @property
    def diffraction(self) -> NDArray[np.float32]:
        """Alias of ``diff3d`` under the contract's key name."""
        return self.diff3d

    @property
    def positions_xy(self) -> NDArray[np.float64]:
        """(M, 2) patch centres ``(x, y)``."""
        return np.stack([self.xcoords, self.ycoords], axis=1)

    def __len__(self) -> int:
        return int(self.xcoords.shape[0])

    def __repr__(self) -> str:
        obj = None if self.objectGuess is None else self.objectGuess.shape
        return (f'RawData(source={self.source!r}, patterns={len(self)}, N={self.N}, '
                f'objectGuess={obj})')

    # ------------------------------------------------------------------ grouping

    def generate_grouped_data(self, N: int, K: int = 4, nsamples: int = 1,
                              seed: int | None = None, sequential_sampling: bool = False,
                              gridsize: int | None = None, n_groups: int | None = None
                              ) -> dict[str, Any]:
        """Group scan positions for the network (architecture.md section 2).

        gridsize 1: one group per position (``n_groups`` of them when given). gridsize g > 1:
        each seed position plus g*g - 1 others drawn from its K nearest neighbours,
        ``nsamples`` groups per seed position, ``n_groups`` capping the total. ``seed``
        makes the draw reproducible; ``sequential_sampling`` takes seed positions in scan
        order (and, without a seed, draws members with seed 0 so it stays deterministic).
        """
        gridsize = 1 if gridsize is None else gridsize
        src = self.source
        for name, value, low in (('N', N, 1), ('K', K, 0), ('nsamples', nsamples, 1),
                                 ('gridsize', gridsize, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f'generate_grouped_data: {name} must be an integer >= {low}, '
                                 f'found {value!r}')
        if n_groups is not None and (isinstance(n_groups, bool) or n_groups < 1):
            raise ValueError(f'generate_grouped_data: n_groups must be None or >= 1, '
                             f'found {n_groups!r}')
        if N != self.N:
            raise ValueError(f'generate_grouped_data: N={N} does not match the diffraction '
                             f'pattern size {self.N} of {src} (set ModelConfig.N = {self.N})')
        C = gridsize * gridsize
        M = len(self)
        if M < C:
            raise ValueError(f'generate_grouped_data: gridsize {gridsize} needs at least {C} scan '
                             f'positions per group, {src} has {M}')
        if C > 1 and K < C - 1:
            raise ValueError(f'generate_grouped_data: K={K} nearest neighbours cannot supply the '
                             f'{C - 1} partners a gridsize {gridsize} group needs (K >= {C - 1})')
        nn_indices = group_indices(self.positions_xy, K=K, C=C, nsamples=nsamples, seed=seed,
                                   sequential=sequential_sampling, n_groups=n_groups)
        return self._group_arrays(nn_indices, N)

    def _group_arrays(self, nn_indices: NDArray[np.int64], N: int) -> dict[str, Any]:
        nn_indices = np.ascontiguousarray(nn_indices, dtype=np.int64)
        B, C = nn_indices.shape
        coords_nn = np.stack([self.xcoords[nn_indices], self.ycoords[nn_indices]], axis=1)[:, None]
        start_nn = np.stack([self.xcoords_start[nn_indices],
                             self.ycoords_start[nn_indices]], axis=1)[:, None]
        offsets = coords_nn.mean(axis=3, keepdims=True)
        start_offsets = start_nn.mean(axis=3, keepdims=True)
        diffraction = np.transpose(self.diff3d[nn_indices], (0, 2, 3, 1))
        Y = None
        if self.objectGuess is not None:
            Y = np.transpose(self._object_patches(nn_indices, N), (0, 2, 3, 1))
        elif self.Y is not None:
            Y = np.transpose(self.Y[nn_indices], (0, 2, 3, 1))
        logger.info('Grouped %s: %d groups of %d patterns', self.source, B, C)
        return {
            'diffraction': np.ascontiguousarray(diffraction, dtype=np.float32),
            'Y': None if Y is None else np.ascontiguousarray(Y, dtype=np.complex64),
            'coords_offsets': offsets,
            'coords_relative': coords_nn - offsets,
            'coords_nn': coords_nn,
            'coords_start_offsets': start_offsets,
            'coords_start_relative': start_nn - start_offsets,
            'coords_start_nn': start_nn,
            'nn_indices': nn_indices,
            'objectGuess': self.objectGuess,
        }

    def _object_patches(self, nn_indices: NDArray[np.int64], N: int) -> NDArray[np.complex64]:
        """Ground-truth patches (B, C, N, N), each distinct position extracted once."""
        unique, inverse = np.unique(nn_indices, return_inverse=True)
        patches = physics.extract_patches_fast(self.objectGuess, self.positions_xy[unique],
                                               N).astype(np.complex64)
        return patches[inverse.reshape(nn_indices.shape)]



def group_indices(positions_xy: ArrayLike, *, K: int, C: int, nsamples: int = 1,
                  seed: int | None = None, sequential: bool = False,
                  n_groups: int | None = None) -> NDArray[np.int64]:
    """Scan indices of each group's members, (B, C): the grouping rule of
    :meth:`RawData.generate_grouped_data` (which validates its arguments) on positions alone,
    so a stream that knows the scan plan forms exactly the same groups.

    C = 1: one group per position. C > 1: a seed position plus C - 1 others drawn from its
    K nearest neighbours, ``nsamples`` groups per seed, ``n_groups`` capping the total.
    ``sequential`` takes seeds in scan order (and, without a seed, draws with seed 0).
    """
    points = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    M = len(points)
    if sequential and seed is None:
        seed = 0
    rng = np.random.default_rng(seed)
    if C == 1:
        return _seed_positions(rng, M, 1, n_groups, sequential)[:, None]
    return _neighbour_groups(points, rng, K, C, nsamples, n_groups, sequential)


def _seed_positions(rng: np.random.Generator, M: int, nsamples: int, n_groups: int | None,
                    sequential: bool) -> NDArray[np.int64]:
    """Seed position of each group: every position ``nsamples`` times, capped."""
    total = M * nsamples
    if n_groups is not None and n_groups > total:
        logger.info('n_groups=%d exceeds the %d groups available (%d positions x nsamples=%d);'
                    ' using %d', n_groups, total, M, nsamples, total)
    count = total if n_groups is None else min(n_groups, total)
    candidates = np.arange(total, dtype=np.int64) if sequential else rng.permutation(total)
    return candidates[:count] % M


def _neighbour_groups(points: NDArray[np.float64], rng: np.random.Generator, K: int, C: int,
                      nsamples: int, n_groups: int | None, sequential: bool
                      ) -> NDArray[np.int64]:
    from scipy.spatial import cKDTree

    M = len(points)
    if K > M - 1:
        logger.info('K=%d nearest neighbours requested but only %d other positions exist; '
                    'using K=%d', K, M - 1, M - 1)
        K = M - 1
    _, neighbours = cKDTree(points).query(points, k=K + 1)
    neighbours = np.asarray(neighbours, dtype=np.int64).reshape(M, K + 1)
    # Drop each position itself; with duplicate positions it may not come first,
    # and if absent drop the farthest neighbour instead.
    is_self = neighbours == np.arange(M)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    first = np.argmax(is_self, axis=1)
    is_self[:] = False
    is_self[np.arange(M), first] = True
    neighbours = neighbours[~is_self].reshape(M, K)

    seeds = _seed_positions(rng, M, nsamples, n_groups, sequential)
    picks = np.argsort(rng.random((seeds.shape[0], K)), axis=1)[:, :C - 1]
    partners = np.take_along_axis(neighbours[seeds], picks, axis=1)
    return np.concatenate([seeds[:, None], partners], axis=1)

def _read_npz(path: Path) -> dict[str, NDArray]:
    """All arrays of an NPZ file, with contract errors for anything unreadable."""
    if not path.exists():
        raise DataContractError(f'{path}: file not found (expected an NPZ data file)')
    if path.is_dir():
        raise DataContractError(f'{path}: expected an NPZ data file, found a directory')
    if not zipfile.is_zipfile(path):
        raise DataContractError(f'{path}: expected an NPZ (zip) archive of arrays, found a file '
                                f'that is not a zip archive (corrupt, truncated or another format)')
    arrays: dict[str, NDArray] = {}
    key = '<archive>'
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, 'files'):
                raise DataContractError(f'{path}: expected an NPZ archive, found a single array')
            for key in npz.files:
                arrays[key] = npz[key]
    except DataContractError:
        raise
    except ValueError as exc:
        if 'pickle' in str(exc):
            raise DataContractError(f'{path}: key {key!r}: expected a numeric array, found a '
                                    f'pickled Python object (not allowed for safety)') from exc
        raise DataContractError(f'{path}: key {key!r}: unreadable array ({exc})') from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        raise DataContractError(f'{path}: corrupt or truncated NPZ archive while reading key '
                                f'{key!r} ({type(exc).__name__}: {exc})') from exc
    except Exception as exc:  # zlib.error and friends: still a corrupt archive
        raise DataContractError(f'{path}: corrupt NPZ archive while reading key {key!r} '
                                f'({type(exc).__name__}: {exc})') from exc
    if not arrays:
        raise DataContractError(f'{path}: expected an NPZ archive with the keys diffraction, '
                                f'xcoords, ycoords, probeGuess; found an empty archive')
    return arrays
