"""Align the unobservable constant phase of independently reconstructed groups before stitching.

The data of one group fix its object only up to a constant phase factor: ``|F(P O)|`` is
unchanged by ``O -> O exp(i a)``. Each group is reconstructed on its own (one network pass),
so neighbouring groups can disagree by such a constant, and averaging them in the stitch
then washes the phase out. Their overlaps tell the relative offsets: for groups i and j,
``z_ij = sum over the overlap of conj(o_i) o_j`` has phase ``a_j - a_i``. Finding the offsets
that agree best with all of them is angular synchronisation: the leading eigenvector of the
Hermitian matrix ``H_ij = z_ij`` carries ``exp(-i a_i)`` (up to one global phase), solved per
connected set of overlapping groups, then polished by the projected power method
(:data:`POWER_STEPS`). Only constant phases change; amplitudes never do.

Measured on the standard benchmark (a 4-minute model): stitched phase SSIM 0.36 -> 0.70,
0.3 s for 2,000 groups.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)

PAIR_REACH = 0.5
"""Groups are compared when their positions differ by less than ``PAIR_REACH * M`` along
both axes (at least a quarter of the crop overlaps): closer pairs give better-conditioned
relative phases, and dropping the thin overlaps measured slightly better (0.70 vs 0.68)."""

DENSE_LIMIT = 64
"""Connected sets up to this size use a dense eigen-solver (``eigsh`` needs k < n)."""


def _central_crops(patches: NDArray, M: int) -> NDArray:
    N = patches.shape[-1]
    start = N // 2 - M // 2
    return patches[:, start:start + M, start:start + M]


def _overlap_products(crops: NDArray, positions_xy: NDArray, pairs: NDArray) -> NDArray:
    """``sum conj(crop_i) crop_j`` over each pair's overlap (integer-pixel registration)."""
    M = crops.shape[-1]
    out = np.empty(len(pairs), dtype=np.complex128)
    shifts = np.rint(positions_xy[pairs[:, 1]] - positions_xy[pairs[:, 0]]).astype(np.int64)
    for k, ((i, j), (dx, dy)) in enumerate(zip(pairs, shifts)):
        # crop_i at pixel q and crop_j at pixel q - d show the same object point
        r0, r1 = max(0, dy), min(M, M + dy)
        c0, c1 = max(0, dx), min(M, M + dx)
        out[k] = np.vdot(crops[i, r0:r1, c0:c1], crops[j, r0 - dy:r1 - dy, c0 - dx:c1 - dx])
    return out


POWER_STEPS = 50
"""Steps of the projected power method after the eigenvector (``u <- H u / |H u|``
elementwise). The eigenvector alone relaxes the unit-modulus constraint, and where groups
overlap only weakly (a scan's edge) its small entries carry noisy phases. Measured on the
standard test scan (PyTorch, 10-minute model), amplitude/phase SSIM and PSNR: seeds tiling
0.902/0.918, 26.5/32.7 dB -> 0.902/0.922, 26.5/32.7 dB; partition 0.877/0.861 -> 0.877/0.874;
a tiling of each pattern with its three nearest (tried for a covering) 0.860/0.746, PSNR
18.0/11.1 (wrong phases at the scan's left edge) -> 0.882/0.723, 24.4/27.1."""


def _leading_phases(H: csr_matrix) -> NDArray:
    if H.shape[0] <= DENSE_LIMIT:
        _, vectors = np.linalg.eigh(H.toarray())
        vector = vectors[:, -1]
    else:
        # A fixed start: eigsh's default is random, and the result then varied between runs
        # where the leading eigenvalues lie close together.
        _, vectors = eigsh(H, k=1, which='LA', v0=np.ones(H.shape[0], dtype=H.dtype))
        vector = vectors[:, 0]
    unit = np.exp(1j * np.angle(vector))
    for _ in range(POWER_STEPS):
        step = H @ unit
        unit = np.exp(1j * np.angle(step))
    return np.angle(unit)


def group_phase_corrections(patches: ArrayLike, positions_xy: ArrayLike, M: int) -> NDArray:
    """Per-group phase (radians) that brings overlapping groups into agreement.

    ``patches`` (B, N, N) complex group objects, ``positions_xy`` (B, 2) their centres in
    object pixels, ``M`` the stitching crop. Multiply patch b by ``exp(1j * result[b])``.
    The corrections of each connected set average to zero (energy-weighted); groups that
    overlap nothing get 0.
    """
    patches = np.asarray(patches)
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    n = len(patches)
    if len(positions_xy) != n:
        raise ValueError(f'align phases: expected one position per patch ({n}), found '
                         f'{len(positions_xy)}')
    if not 0 < M <= patches.shape[-1]:
        raise ValueError(f'align phases: crop size M must be in 1..{patches.shape[-1]}, found {M}')
    phases = np.zeros(n)
    if n < 2:
        return phases
    crops = _central_crops(patches, M).astype(np.complex128)
    pairs = cKDTree(positions_xy).query_pairs(r=PAIR_REACH * M, p=np.inf, output_type='ndarray')
    if len(pairs) == 0:
        return phases
    z = _overlap_products(crops, positions_xy, pairs)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    energy = np.einsum('bij,bij->b', crops.conj(), crops).real
    H = coo_matrix((np.concatenate([z, z.conj(), energy]), (rows, cols)), shape=(n, n)).tocsr()
    adjacency = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    n_sets, labels = connected_components(adjacency, directed=False)
    for label in range(n_sets):
        members = np.flatnonzero(labels == label)
        if len(members) > 1:
            found = _leading_phases(H[members][:, members])
            # The eigenvector's own phase is arbitrary: choose it so the corrections average
            # to zero (energy-weighted circular mean), keeping the network's phase level --
            # otherwise a random global rotation could push the phase across +-pi.
            mean = np.angle(np.sum(energy[members] * np.exp(1j * found)))
            phases[members] = np.angle(np.exp(1j * (found - mean)))
    logger.info('Aligned the constant phase of %d groups (%d overlapping pairs, %d connected '
                'sets)', n, len(pairs), n_sets)
    return phases


def align_group_phases(patches: ArrayLike, positions_xy: ArrayLike, M: int) -> NDArray:
    """``patches`` with each group's constant phase aligned to its neighbours (a new array)."""
    patches = np.asarray(patches)
    phases = group_phase_corrections(patches, positions_xy, M)
    return patches * np.exp(1j * phases).astype(patches.dtype)[:, None, None]
