"""Reconstruct a scan while it is acquired: patterns arrive in chunks, the image grows.

A :class:`ScanStream` takes diffraction patterns and their positions as they come, forms
each group as soon as its members are there, reconstructs the new groups with the backend
(one network pass per group, nothing recomputed) and adds their central crops to running
sums (numerator and coverage) on a canvas that grows with the scan. The current image can
be read at any moment; the work per chunk depends on the chunk, not on what came before.

Everything that decides the result is a function of the pattern order alone, never of how
the patterns were cut into chunks, so a scan fed in one chunk (``reconstruct_scan``: what
the CLI, the plugin and the Python API do with a whole file) and the same scan streamed
give the same image:

- **Normalisation.** The network sees ``X = D * norm`` with ``norm`` from the mean pattern
  energy (:func:`ptycho.loader.normalization_factor`). A stream fixes it from its first
  ``norm_patterns`` patterns (all of them if the scan is shorter), so the scale never
  changes under a growing image; groups wait until those patterns are in.
- **Groups** (gridsize g > 1, C = g*g members): one group per scan position, seeded at
  pattern i. When the scan's positions are known in advance (``plan``: a file, or the
  positions Ptychodus hands over with the patterns), the groups are those of the whole
  scan (:func:`ptycho.raw_data.group_indices`: C - 1 partners drawn from the
  ``neighbor_count`` nearest) and a group waits for its last member. Without a plan, the
  partners are drawn (seeded per group) from the nearest among patterns ``0..j_i``, ``j_i =
  max(i + lookahead, C - 1)``, and the group waits for pattern ``j_i``: ``lookahead``
  (default 64) lets partners come from the next row or turn of the scan.
- **Phase.** Each group's constant phase is unobservable in its own data. While the scan
  runs, every new group is turned to agree with the image it lands on (the phase of its
  overlap product with the running numerator); at the end the image is rebuilt with the
  phases aligned over all overlaps at once, as the whole-scan stitch does.

- **Tiling** (``tiling``): ``'seeds'`` is the above, one group per position. ``'partition'``
  forms a group only for patterns no earlier group took, so each pattern is reconstructed
  about once instead of C times, and stitches the crop of the group object around every
  member (not one crop at the group centre: with 2.5x fewer groups the centre crops leave
  the image poorly averaged, phase SSIM 0.78). On the standard test scan (2,000 positions,
  ``bench/live.py --quality``, the 10-minute ``bench/quality.py`` models, neighbor_count 4):
  787 groups instead of 2,000 and 2.2-2.3x fewer CPU-seconds; amplitude/phase SSIM
  PyTorch 0.888/0.860 against 0.909/0.903 with ``'seeds'``, TensorFlow 0.879/0.894 against
  0.898/0.907. Partners from the 8 nearest (fewer reused patterns, 532 groups) fall to
  0.79/0.47 (PyTorch): such spread groups were never seen in training. A speed-for-quality
  trade, so not the default.

Measured on the standard benchmark's test scan (PyTorch model of ``bench/quality.py``, 24
epochs): with the plan, amplitude/phase SSIM 0.906/0.925, the whole-scan figures before
streaming existed; without a plan, lookahead 64: 0.904/0.902 (0.903/0.906 while running),
lookahead 200: 0.906/0.900, lookahead 0: 0.873/0.836. Other random draws of the partners
alone move the phase SSIM of this scan between 0.900 and 0.925.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho.config.config import InferenceConfig
from ptycho.loader import PtychoDataContainer, normalization_factor
from ptycho.physics import COVERAGE_EPS, canvas_geometry, default_crop
from ptycho.probe import normalize_probe
from ptycho.raw_data import group_indices
from ptycho.workflows.contract import Backend, GroupObjects, LoadedModel, Reconstruction

logger = logging.getLogger(__name__)

# Tilings (:data:`ptycho.config.config.TILINGS`, chosen by ``InferenceConfig.tiling``), how a
# stream forms groups at gridsize > 1. 'seeds': one group per scan position, each stitched by
# the central crop at its centre (the whole-scan rule; every pattern is in about C groups).
# 'partition': each pattern seeds a group only if no earlier group took it, its partners the
# nearest of its K neighbours not taken yet (taken ones only to fill up), and every member's
# crop of the group object is stitched at that member: about n / 2.5 groups for n patterns
# at C = 4 (see the module docstring for the quality it costs).

NORM_PATTERNS = 32
"""Patterns whose mean energy fixes a stream's normalisation (all, if the scan is shorter)."""

LOOKAHEAD = 64
"""Patterns a group waits for beyond its seed when the scan's positions are not known in
advance (no plan): its partners may then come from the next row or turn of the scan."""

_GROW = 64
"""Least margin (pixels) added beyond what a growing canvas needs; the margin is at least
half the canvas side, so a canvas that follows a scan is re-allocated O(log size) times."""


@dataclass(frozen=True)
class StreamStatus:
    """Where a stream stands after a chunk: counts, and the time the chunk took."""

    patterns: int
    groups: int
    waiting: int
    chunk_seconds: float
    inference_seconds: float
    seeds: tuple[int, ...] = ()
    """Seed patterns of the groups this chunk added to the image."""
    members: tuple[int, ...] = ()
    """Every pattern of the groups this chunk added (sorted, once each)."""


class NeighbourIndex:
    """Positions in arrival order, hashed on a square grid for nearest-neighbour queries.

    A query looks at rings of cells around the point until the ``k``-th nearest candidate is
    closer than the rings reach, so its cost follows the local density, not the scan size.
    """

    def __init__(self, cell: float) -> None:
        self.cell = float(cell)
        self.positions = np.empty((0, 2))
        self._cells: dict[tuple[int, int], list[int]] = {}

    def __len__(self) -> int:
        return len(self.positions)

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return int(math.floor(x / self.cell)), int(math.floor(y / self.cell))

    def extend(self, positions: NDArray[np.float64]) -> None:
        start = len(self.positions)
        self.positions = np.concatenate([self.positions, positions])
        for offset, (x, y) in enumerate(positions):
            self._cells.setdefault(self._key(x, y), []).append(start + offset)

    def nearest(self, i: int, k: int, limit: int) -> NDArray[np.int64]:
        """The ``k`` patterns nearest to pattern ``i`` among ``0..limit``, ``i`` excluded.

        Ties are broken by arrival order. Fewer than ``k`` when fewer exist.
        """
        available = min(limit, len(self.positions) - 1)  # candidates other than i
        k = min(k, available)
        if k <= 0:
            return np.empty(0, np.int64)
        x, y = self.positions[i]
        cx, cy = self._key(x, y)
        ring = 0
        found: list[int] = []
        while True:
            for dx in range(-ring, ring + 1):
                for dy in range(-ring, ring + 1):
                    if max(abs(dx), abs(dy)) != ring:
                        continue
                    found.extend(j for j in self._cells.get((cx + dx, cy + dy), ())
                                 if j <= limit and j != i)
            if len(found) >= k:
                candidates = np.asarray(found, np.int64)
                d2 = np.sum((self.positions[candidates] - self.positions[i]) ** 2, axis=1)
                order = np.lexsort((candidates, d2))[:k]
                # Every point outside the rings searched is farther than `ring` cells.
                if len(found) >= available or d2[order[-1]] <= (ring * self.cell) ** 2:
                    return candidates[order]
            ring += 1


class RunningCanvas:
    """Running sums of placed crops: ``numerator`` and ``coverage`` on a canvas.

    Crops are placed as :func:`ptycho.physics.stitch` places them (bilinear, crop pixel
    (i, j) at object point ``(y - M//2 + i, x - M//2 + j)``), so the image ``numerator /
    coverage`` equals ``stitch`` of the same crops. A fixed canvas (``shape`` and
    ``origin_xy`` given) cuts crops off at its edge; otherwise the canvas grows to hold
    every crop, its origin kept on whole pixels.
    """

    def __init__(self, M: int, shape: tuple[int, int] | None = None,
                 origin_xy: tuple[float, float] | None = None,
                 weights: NDArray[np.float64] | None = None) -> None:
        self.M = int(M)
        self.fixed = shape is not None and origin_xy is not None
        height, width = (int(v) for v in shape) if self.fixed and shape else (0, 0)
        self.origin = (float(origin_xy[0]), float(origin_xy[1])) if self.fixed and origin_xy \
            else (0.0, 0.0)
        self.numerator = np.zeros((height, width), np.complex128)
        self.coverage = np.zeros((height, width), np.float64)
        self.islands = np.zeros((height, width), np.int32)  # 0: nothing placed yet
        self._next_island = 1
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        if self.weights is not None and (self.weights.shape != (self.M, self.M)
                                         or np.any(self.weights < 0)):
            raise ValueError(f'stitch weights: expected non-negative ({self.M}, {self.M}), '
                             f'found shape {self.weights.shape}')

    def _windows(self, xs: NDArray[np.float64], ys: NDArray[np.float64]
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray, NDArray]:
        """Canvas row/column of each crop's (M+1)-square window and its sub-pixel fractions
        (B, 1, 1); a growing canvas first grows to hold them all."""
        M = self.M
        start_r = ys - M // 2 - self.origin[1]
        start_c = xs - M // 2 - self.origin[0]
        tops, lefts = np.floor(start_r).astype(np.int64), np.floor(start_c).astype(np.int64)
        fr, fc = (start_r - tops)[:, None, None], (start_c - lefts)[:, None, None]
        if not self.fixed and len(tops):
            height, width = self.numerator.shape
            low_r, low_c = int(tops.min()), int(lefts.min())
            high_r, high_c = int(tops.max()) + M + 1, int(lefts.max()) + M + 1
            if not height or low_r < 0 or low_c < 0 or high_r > height or high_c > width:
                top, left = self._grow(low_r, low_c, high_r, high_c)
                tops, lefts = tops + (top - low_r), lefts + (left - low_c)
        return tops, lefts, fr, fc

    def _grow(self, top: int, left: int, bottom: int | None = None,
              right: int | None = None) -> tuple[int, int]:
        """Make room for the canvas rows ``top..bottom`` and columns ``left..right``
        (exclusive ends; default one (M+1)-square window); returns (top, left) in the new
        pixels. Each side that must grow gets a margin of at least half the canvas side
        (geometric growth: re-allocations stay few however far the scan goes)."""
        size = self.M + 1
        bottom = top + size if bottom is None else bottom
        right = left + size if right is None else right
        height, width = self.numerator.shape
        if not height:
            pad_top = pad_left = _GROW
            self.origin = (self.origin[0] + left - pad_left, self.origin[1] + top - pad_top)
            new_h, new_w = bottom - top + 2 * _GROW, right - left + 2 * _GROW
            self.numerator = np.zeros((new_h, new_w), np.complex128)
            self.coverage = np.zeros((new_h, new_w), np.float64)
            self.islands = np.zeros((new_h, new_w), np.int32)
            return pad_top, pad_left
        margin_r, margin_c = max(_GROW, height // 2), max(_GROW, width // 2)
        pad_top = margin_r - top if top < 0 else 0
        pad_left = margin_c - left if left < 0 else 0
        new_h = height + pad_top + (bottom - height + margin_r if bottom > height else 0)
        new_w = width + pad_left + (right - width + margin_c if right > width else 0)
        if (new_h, new_w) != (height, width):
            numerator = np.zeros((new_h, new_w), np.complex128)
            coverage = np.zeros((new_h, new_w), np.float64)
            islands = np.zeros((new_h, new_w), np.int32)
            inner = slice(pad_top, pad_top + height), slice(pad_left, pad_left + width)
            numerator[inner], coverage[inner], islands[inner] = (self.numerator, self.coverage,
                                                                 self.islands)
            self.numerator, self.coverage, self.islands = numerator, coverage, islands
            self.origin = (self.origin[0] - pad_left, self.origin[1] - pad_top)
        return top + pad_top, left + pad_left

    def _spread_weighted(self, crops: NDArray, fr: NDArray, fc: NDArray
                         ) -> tuple[NDArray, NDArray]:
        """Each crop times the stitch weights, and the weights themselves, resampled onto
        the crops' (M+1)-square windows: what a crop adds to the numerator and coverage."""
        weights = np.ones((self.M, self.M)) if self.weights is None else self.weights
        return (_spread_many(crops * weights, fr, fc),
                _spread_many(np.broadcast_to(weights, crops.shape), fr, fc))

    def add(self, crop: NDArray, x: float, y: float, *, align: bool) -> float:
        """Add one crop at object point (x, y); returns the phase (radians) it was turned by.

        ``align``: first turn the crop by the constant phase that best matches the image
        already under it (none where it covers nothing yet).
        """
        return self.add_group(np.asarray(crop)[None], [x], [y], align=align)

    def add_group(self, crops: NDArray, xs: ArrayLike, ys: ArrayLike, *, align: bool) -> float:
        """Add the crops of one group object (k, M, M) at object points (xs, ys), turned by
        one phase; returns it (radians).

        The crops come from one object, so their phases agree already: ``align`` turns
        them together to match the image under all of them (none where they cover nothing
        yet), and the resampling is one vectorised pass (the partition stream of the
        standard scan, 3,148 crops in 787 groups, profiled: 0.32 s against 0.39 s a crop
        at a time).
        """
        crops = np.asarray(crops)
        xs, ys = np.asarray(xs, np.float64).reshape(-1), np.asarray(ys, np.float64).reshape(-1)
        M = self.M
        tops, lefts, fr, fc = self._windows(xs, ys)
        placed_all, cover_all = self._spread_weighted(crops, fr, fc)
        height, width = self.numerator.shape
        windows = []  # (canvas rows, canvas cols, placed, cover) of each crop on the canvas
        for top, left, placed, cover in zip(tops, lefts, placed_all, cover_all):
            r0, r1 = max(top, 0), min(top + M + 1, height)
            c0, c1 = max(left, 0), min(left + M + 1, width)
            if r0 < r1 and c0 < c1:
                inner = slice(r0 - top, r1 - top), slice(c0 - left, c1 - left)
                windows.append((slice(r0, r1), slice(c0, c1), placed[inner], cover[inner]))
        if not windows:
            return 0.0
        turn = self._align(windows) if align else 0.0
        factor = np.exp(1j * turn)
        for rows, cols, placed, cover in windows:
            self.numerator[rows, cols] += placed * factor if turn else placed
            self.coverage[rows, cols] += cover
        return turn

    def add_many(self, crops: NDArray, xs: ArrayLike, ys: ArrayLike) -> None:
        """Add crops (B, M, M) at object points (xs, ys) without phase alignment: one
        scatter-add of all windows, the same sums as ``add(..., align=False)`` per crop at
        half its cost (33 against 42-70 us a crop, M = 20, 2,000 crops)."""
        crops = np.asarray(crops, np.complex128)
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if not len(crops):
            return
        M = self.M
        tops, lefts, fr, fc = self._windows(xs, ys)
        height, width = self.numerator.shape
        steps = np.arange(M + 1)
        rows, cols = tops[:, None] + steps, lefts[:, None] + steps  # (B, M+1)
        inside = (((rows >= 0) & (rows < height))[:, :, None]
                  & ((cols >= 0) & (cols < width))[:, None, :])
        flat = (rows[:, :, None] * width + cols[:, None, :])[inside]
        for total, values in zip((self.numerator, self.coverage),
                                 self._spread_weighted(crops, fr, fc)):
            values = values[inside]
            view = total.reshape(-1)
            if np.iscomplexobj(values):
                view += (np.bincount(flat, values.real, view.size)
                         + 1j * np.bincount(flat, values.imag, view.size))
            else:
                view += np.bincount(flat, values, view.size)

    def _align(self, windows: list[tuple[slice, slice, NDArray, NDArray]]) -> float:
        """The turn that matches a group's placed crops to the image under them; joins
        what they bridge.

        Groups placed so far form islands of mutually aligned groups (pixel labels). The new
        group takes the phase of the island it overlaps most; any other island it touches
        is turned, as a whole, to agree with it and joins that island. So groups that first
        met nothing (a scan that jumps) are reconciled when the scan joins them up.
        """
        overlaps: dict[int, complex] = {}
        for rows, cols, placed, cover in windows:
            labels = self.islands[rows, cols]
            numerator = self.numerator[rows, cols]
            for a in np.unique(labels[(labels > 0) & (cover > 0)]):
                where = labels == a
                overlaps[int(a)] = overlaps.get(int(a), 0) + np.vdot(placed[where],
                                                                      numerator[where])
        if not overlaps:
            keep, turn = self._next_island, 0.0
            self._next_island += 1
        else:
            keep = max(overlaps, key=lambda a: (abs(overlaps[a]), -a))
            turn = float(np.angle(overlaps[keep])) if abs(overlaps[keep]) > 0 else 0.0
            for other, z in overlaps.items():
                if other == keep:
                    continue
                where = self.islands == other
                self.numerator[where] *= np.exp(1j * (turn - np.angle(z)))
                self.islands[where] = keep
        for rows, cols, _, cover in windows:
            self.islands[rows, cols][cover > 0] = keep
        return turn

    def image(self, shape: tuple[int, int] | None = None,
              origin_xy: tuple[float, float] | None = None
              ) -> tuple[NDArray[np.complex64], NDArray[np.float32], tuple[float, float]]:
        """``(image, coverage, origin_xy)``, cut to ``shape``/``origin_xy`` when given."""
        numerator, coverage, origin = self.numerator, self.coverage, self.origin
        if shape is not None and origin_xy is not None and not self.fixed:
            dy = int(round(origin_xy[1] - origin[1]))
            dx = int(round(origin_xy[0] - origin[0]))
            out_n = np.zeros(shape, np.complex128)
            out_c = np.zeros(shape, np.float64)
            r0, c0 = max(0, -dy), max(0, -dx)
            r1 = min(shape[0], numerator.shape[0] - dy)
            c1 = min(shape[1], numerator.shape[1] - dx)
            if r0 < r1 and c0 < c1:
                out_n[r0:r1, c0:c1] = numerator[r0 + dy:r1 + dy, c0 + dx:c1 + dx]
                out_c[r0:r1, c0:c1] = coverage[r0 + dy:r1 + dy, c0 + dx:c1 + dx]
            numerator, coverage, origin = out_n, out_c, (float(origin_xy[0]),
                                                         float(origin_xy[1]))
        covered = coverage >= COVERAGE_EPS
        image = np.where(covered, numerator / np.where(covered, coverage, 1.0), 0)
        return image.astype(np.complex64), coverage.astype(np.float32), origin


def _spread_many(crops: NDArray, fr: NDArray, fc: NDArray) -> NDArray:
    """Crops (B, M, M) resampled onto their (M+1)-square windows; ``fr``/``fc`` (B, 1, 1)
    the sub-pixel fractions: the bilinear placement of :func:`ptycho.physics.stitch`."""
    B, M = crops.shape[0], crops.shape[-1]
    out = np.zeros((B, M + 1, M + 1), np.result_type(crops, np.float64))
    out[:, :M, :M] += (1 - fr) * (1 - fc) * crops
    out[:, 1:, :M] += fr * (1 - fc) * crops
    out[:, :M, 1:] += (1 - fr) * fc * crops
    out[:, 1:, 1:] += fr * fc * crops
    return out


def partition_groups(positions_xy: ArrayLike, K: int, C: int) -> NDArray[np.int64]:
    """The ``'partition'`` tiling of a whole scan (rows: members, seed first), (B, C).

    Patterns in scan order seed a group unless an earlier group took them; the partners
    are the nearest of the seed's ``K`` nearest neighbours not taken yet, and patterns
    already taken only where fewer than C - 1 are left. :class:`ScanStream` follows the same
    rule as patterns arrive (``tiling='partition'``).
    """
    from scipy.spatial import cKDTree

    points = np.asarray(positions_xy, np.float64).reshape(-1, 2)
    n = len(points)
    K = min(K, n - 1)
    if C == 1:
        return np.arange(n, dtype=np.int64)[:, None]
    _, near = cKDTree(points).query(points, k=K + 1)
    taken = np.zeros(n, bool)
    rows = []
    for i in range(n):
        if taken[i]:
            continue
        candidates = np.asarray([j for j in np.reshape(near[i], -1) if j != i][:K], np.int64)
        row = _partners(i, candidates, taken, C)
        taken[row] = True
        rows.append(row)
    return np.stack(rows)


def _partners(i: int, near: NDArray[np.int64], taken: NDArray[np.bool_], C: int
              ) -> NDArray[np.int64]:
    """``[i]`` and C - 1 of ``near`` (nearest first): free ones first, then taken ones."""
    free = near[~taken[near]]
    fill = near[taken[near]]
    return np.concatenate([[i], free[:C - 1], fill[:max(0, C - 1 - len(free))]]).astype(
        np.int64)


class ScanStream:
    """One scan reconstructed as it arrives (see the module docstring for the rules).

    ``probe`` is the scan's probe guess (N, N) or a mode stack. ``plan``: every position of
    the scan, when known before the patterns (a scan plan, or a whole file): groups are
    then exactly those of the whole scan. ``flip_x``/``flip_y``/``transpose`` orient the
    image as :func:`ptycho.workflows.contract.orient` does. ``canvas_shape``/``origin_xy``
    fix the canvas (e.g. Ptychodus's object geometry); otherwise it grows with the scan.
    The tiling (gridsize > 1) is ``config.tiling``, validated by :class:`InferenceConfig`.
    """

    def __init__(self, backend: Backend, model: LoadedModel, config: InferenceConfig,
                 probe: ArrayLike, *, plan: ArrayLike | None = None,
                 lookahead: int = LOOKAHEAD, norm_patterns: int = NORM_PATTERNS,
                 M: int | None = None, canvas_shape: tuple[int, int] | None = None,
                 origin_xy: tuple[float, float] | None = None, align_phase: bool = True,
                 flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                 weights: ArrayLike | None = None) -> None:
        if lookahead < 0 or norm_patterns < 1:
            raise ValueError(f'stream: lookahead must be >= 0 and norm_patterns >= 1, found '
                             f'{lookahead} and {norm_patterns}')
        self.backend, self.model, self.config = backend, model, config
        self.N = model.config.model.require_size()
        self.C = model.config.model.gridsize ** 2
        self.K = max(int(config.neighbor_count), self.C - 1)
        self.partition = config.tiling == 'partition' and self.C > 1
        self.M = default_crop(self.N) if M is None else int(M)
        if not 0 < self.M <= self.N:
            raise ValueError(f'stream: crop size M must be in 1..{self.N}, found {self.M}')
        self.probe = normalize_probe(probe, self.N, mask=model.config.model.probe_mask,
                                     what='stream: probe')
        self.lookahead, self.norm_patterns = int(lookahead), int(norm_patterns)
        self.align_phase = align_phase
        self.flip = (flip_x, flip_y, transpose)
        self.canvas_shape, self.origin_xy = canvas_shape, origin_xy
        self._weights = None if weights is None else np.asarray(weights, np.float64)
        self.canvas = RunningCanvas(self.M, canvas_shape, origin_xy, self._weights)
        cell = max(self.N / 4, 1.0)
        self.index = NeighbourIndex(cell)
        self.plan: NDArray[np.float64] | None = None
        self._plan_groups: NDArray[np.int64] | None = None
        if plan is not None:
            self.plan = np.asarray(plan, dtype=np.float64)
            if self.plan.ndim != 2 or self.plan.shape[1] != 2 or not np.all(
                    np.isfinite(self.plan)):
                raise ValueError(f'stream: plan: expected finite (n, 2) positions, found shape '
                                 f'{self.plan.shape}')
            if len(self.plan) < self.C:
                raise ValueError(f'stream: gridsize {model.config.model.gridsize} needs at '
                                 f'least {self.C} positions, the plan has {len(self.plan)}')
            # The whole-scan grouping of RawData.generate_grouped_data / container_from_raw,
            # config.n_groups and config.sequential_sampling included.
            nsamples = 1
            if self.C > 1 and config.n_groups is not None and config.n_groups > len(self.plan):
                nsamples = math.ceil(config.n_groups / len(self.plan))
            if self.partition:
                self._plan_groups = partition_groups(self.plan, self.K, self.C)[
                    :config.n_groups]
            else:
                self._plan_groups = group_indices(
                    self.plan, K=self.K, C=self.C, nsamples=nsamples, seed=config.seed,
                    sequential=config.sequential_sampling, n_groups=config.n_groups)
            self._formed = np.zeros(len(self._plan_groups), bool)
        elif not config.sequential_sampling:
            raise ValueError('stream: sequential_sampling=False draws groups from the whole '
                             'scan at random; without a plan (positions known in advance) a '
                             'stream forms them in scan order: pass plan= or set '
                             'sequential_sampling=True')
        self._buffer = np.empty((0, self.N, self.N), np.float32)  # capacity doubles
        self.norm_factor: float | None = None
        self.groups_done = 0
        self.finished = False  # no more patterns: every group formed (finish)
        self.closed = False  # and the final image rebuilt (close)
        self.seconds = {'inference_s': 0.0, 'stitch_s': 0.0}
        self._next_seed = 0
        self._waiting: dict[int, NDArray[np.int64]] = {}
        self._taken = np.zeros(0, bool)  # partition without a plan: patterns in a group
        self._skipped = 0  # partition without a plan: seeds an earlier group took
        self._crops: dict[int, NDArray[np.complex64]] = {}  # seed: (k, M, M), k crops a group
        self._centres: dict[int, NDArray[np.float64]] = {}  # seed: (k, 2) where they go
        self._bounds: NDArray[np.float64] | None = None  # min and max of the centres so far
        self._last_groups: GroupObjects | None = None

    # -- input -------------------------------------------------------------------------
    def add(self, diffraction: ArrayLike, positions_xy: ArrayLike) -> StreamStatus:
        """Take a chunk: ``diffraction`` (n, N, N) amplitudes, ``positions_xy`` (n, 2)."""
        if self.finished:
            raise RuntimeError('stream: add() after finish() or close()')
        tic = time.perf_counter()
        D = np.asarray(diffraction, dtype=np.float32)
        P = np.asarray(positions_xy, dtype=np.float64)
        if D.ndim == 2:
            D, P = D[None], P.reshape(1, 2)
        if D.ndim != 3 or D.shape[1:] != (self.N, self.N):
            raise ValueError(f'stream: diffraction: expected (n, {self.N}, {self.N}) '
                             f'amplitudes, found shape {D.shape}')
        if P.shape != (len(D), 2):
            raise ValueError(f'stream: positions_xy: expected ({len(D)}, 2), found {P.shape}')
        if not (np.all(np.isfinite(D)) and np.all(np.isfinite(P))):
            raise ValueError('stream: the chunk holds non-finite diffraction values or '
                             'positions')
        if self.plan is not None:
            first = len(self.index)
            planned = self.plan[first:first + len(P)]
            if len(planned) < len(P) or not np.allclose(planned, P, rtol=0, atol=1e-6):
                raise ValueError(f'stream: patterns {first}..{first + len(P) - 1} are not at the '
                                 f'planned positions (the plan has {len(self.plan)})')
        self._store(D)
        self.index.extend(P)
        return self._advance(tic, closing=False)

    def finish(self) -> StreamStatus:
        """No more patterns: form and stitch the groups still waiting, so the running image
        holds every pattern; :meth:`close` then rebuilds the final image. Called by
        ``close`` when not called before; a second call changes nothing."""
        tic = time.perf_counter()
        if self.finished or not len(self.index):
            self.finished = True
            return StreamStatus(len(self.index), self.groups_done, 0,
                                time.perf_counter() - tic, 0.0)
        if len(self.index) < self.C:
            gridsize = self.model.config.model.gridsize
            raise ValueError(f'stream: gridsize {gridsize} needs at least {self.C} '
                             f'patterns to form a group, the scan has {len(self.index)}')
        self.finished = True
        return self._advance(tic, closing=True)

    def close(self) -> Reconstruction:
        """No more patterns (:meth:`finish`); the final image.

        The final image is rebuilt from every group's crop in seed order, with the
        constant phases aligned over all overlaps at once
        (:func:`ptycho.phase_alignment.group_phase_corrections`), so it does not depend on
        the order in which the groups happened to be ready.
        """
        if not self.closed:
            self.finish()
            self.closed = True
            if len(self.index):
                self._rebuild()
        return self.image()

    def _store(self, D: NDArray[np.float32]) -> None:
        """Append patterns; the buffer grows by doubling, so a chunk's cost does not grow
        with the patterns already held."""
        n = len(self.index)
        if n + len(D) > len(self._buffer):
            grown = np.empty((max(2 * len(self._buffer), n + len(D), 64), self.N, self.N),
                             np.float32)
            grown[:n] = self._buffer[:n]
            self._buffer = grown
        self._buffer[n:n + len(D)] = D

    # -- output ------------------------------------------------------------------------
    @property
    def patterns(self) -> int:
        return len(self.index)

    @property
    def diffraction(self) -> NDArray[np.float32]:
        """The patterns taken so far, (n, N, N) amplitudes (a view)."""
        return self._buffer[:len(self.index)]

    def image(self) -> Reconstruction:
        """The image so far: on the fixed canvas, or the bounding box of the groups so far."""
        shape, origin = self.canvas_shape, self.origin_xy
        if (shape is None or origin is None) and self._bounds is not None:
            shape, origin = canvas_geometry(self._bounds, self.M)
        obj, coverage, origin_out = self.canvas.image(shape, origin)
        groups = self._last_groups or GroupObjects(
            np.empty((0, self.N, self.N), np.complex64), np.empty((0, 2)))
        return Reconstruction(obj, coverage, origin_out, self.M, self.backend.name, groups,
                              dict(self.seconds))

    # -- work --------------------------------------------------------------------------
    def _advance(self, tic: float, *, closing: bool) -> StreamStatus:
        n = len(self.index)
        inference = 0.0
        if self.norm_factor is None and (n >= self.norm_patterns or closing):
            first = self.diffraction[:self.norm_patterns]
            self.norm_factor = normalization_factor(first[..., None])
        ready = self._ready(n, closing) if self.norm_factor is not None else []
        if ready:
            seeds = np.asarray(ready, np.int64)
            if self._plan_groups is not None:
                members = self._plan_groups[seeds].copy()
                self._formed[seeds] = True
                for row in range(len(seeds)):  # the scan ended before these members came
                    if members[row].max() >= n:
                        members[row] = self._arrived_members(int(members[row, 0]), n - 1)
            else:
                members = np.stack([self._waiting.pop(int(i)) for i in seeds])
            self._take(members)
            groups = self.backend.predict(self.model, self._container(members), self.config)
            inference = groups.seconds
            self._stitch(seeds, members, groups)
            self.groups_done += len(seeds)
        self.seconds['inference_s'] += inference
        total = n - self._skipped if self._plan_groups is None else len(self._plan_groups)
        placed = tuple(np.unique(members).tolist()) if ready else ()
        return StreamStatus(n, self.groups_done, total - self.groups_done,
                            time.perf_counter() - tic, inference, tuple(ready), placed)

    def _take(self, members: NDArray[np.int64]) -> None:
        """Mark patterns as in a group (the partition tiling's bookkeeping)."""
        n = len(self.index)
        if len(self._taken) < n:
            self._taken = np.concatenate([self._taken, np.zeros(n - len(self._taken), bool)])
        self._taken[members.ravel()] = True

    def _ready(self, n: int, closing: bool) -> list[int]:
        """Groups that can be formed now, in order: plan rows, or seeds (members in _waiting)."""
        if self._plan_groups is not None:
            pending = np.flatnonzero(~self._formed)
            if closing:  # a scan shorter than its plan: groups of seeds that came
                return pending[self._plan_groups[pending, 0] < n].tolist()
            return pending[self._plan_groups[pending].max(axis=1) < n].tolist()
        if n < self.C and not closing:
            return []
        seeds_upto = n if self.config.n_groups is None else min(n, int(self.config.n_groups))
        for i in range(self._next_seed, seeds_upto):
            self._waiting[i] = self._members(i)
        self._next_seed = max(self._next_seed, seeds_upto)
        ready = []
        for i, members in sorted(self._waiting.items()):
            if self.partition and (members.max() < n or closing):
                self._take(np.empty(0, np.int64))  # (grows the marks to n)
                if self._taken[i]:  # an earlier group took the seed: no group of its own
                    del self._waiting[i]
                    self._skipped += 1
                    continue
                members = self._waiting[i] = self._arrived_members(
                    i, min(int(members.max()), n - 1))
                self._taken[members] = True  # the next seeds of this pass see them taken
                ready.append(i)
                continue
            if members.max() >= n and closing:  # the scan ended before the group's members
                members = self._waiting[i] = self._arrived_members(i, n - 1)
            elif members.max() >= n:
                continue
            elif len(members) < self.C:  # [i, j_i]: its partners are in now
                members = self._waiting[i] = self._arrived_members(i, int(members.max()))
            ready.append(i)
        return ready

    def _members(self, i: int) -> NDArray[np.int64]:
        """Group i's members, or ``[i, j]``: the group waits for pattern j (no plan)."""
        if self.C == 1:
            return np.array([i], np.int64)
        # Without a plan: partners among patterns 0..j_i, j_i = max(i + lookahead, C - 1).
        return np.array([i, max(i + self.lookahead, self.C - 1)], np.int64)

    def _arrived_members(self, i: int, limit: int) -> NDArray[np.int64]:
        near = self.index.nearest(i, self.K, limit)
        if self.partition:
            self._take(np.empty(0, np.int64))
            return _partners(i, near, self._taken, self.C)
        return self._pick(i, near)

    def _pick(self, i: int, near: NDArray[np.int64]) -> NDArray[np.int64]:
        rng = np.random.default_rng([int(self.config.seed or 0), i])
        partners = near[np.sort(rng.permutation(len(near))[:self.C - 1])]
        return np.concatenate([[i], partners]).astype(np.int64)

    def _container(self, members: NDArray[np.int64]) -> PtychoDataContainer:
        positions = self.index.positions[members]  # (B, C, 2)
        centres = positions.mean(axis=1, keepdims=True)
        D = np.ascontiguousarray(np.transpose(self.diffraction[members], (0, 2, 3, 1)))
        assert self.norm_factor is not None
        return PtychoDataContainer(
            X=(D * np.float32(self.norm_factor)).astype(np.float32),
            norm_factor=self.norm_factor, probe=self.probe,
            global_offsets=np.transpose(centres, (0, 2, 1))[:, None].copy(),
            local_offsets=np.transpose(positions - centres, (0, 2, 1))[:, None].copy(),
            nn_indices=members, diffraction=D)

    def _stitch(self, seeds: NDArray[np.int64], members: NDArray[np.int64],
                groups: GroupObjects) -> None:
        from ptycho.workflows.contract import orient

        tic = time.perf_counter()
        groups = orient(groups, flip_x=self.flip[0], flip_y=self.flip[1],
                        transpose=self.flip[2])
        patches = np.asarray(groups.patches)
        centres = np.asarray(groups.positions_xy, np.float64).reshape(-1, 1, 2)
        start = self.N // 2 - self.M // 2
        # The crop's offset from the group centre, whole pixels: 0 (one crop at the centre),
        # or with the partition tiling each member's position (oriented like the centres).
        shift = np.zeros((len(patches), 1, 2), np.int64)
        if self.partition:
            points = self.index.positions[members.ravel()]
            points = orient(GroupObjects(np.empty((len(points), 0, 0)), points),
                            flip_x=self.flip[0], flip_y=self.flip[1],
                            transpose=self.flip[2]).positions_xy.reshape(members.shape + (2,))
            shift = np.clip(np.rint(points - centres), -start, self.N - self.M - start
                            ).astype(np.int64)
        steps = np.arange(self.M)
        rows = start + shift[..., 1, None] + steps  # (B, k, M)
        cols = start + shift[..., 0, None] + steps
        crops = patches[np.arange(len(patches))[:, None, None, None], rows[..., :, None],
                        cols[..., None, :]]  # (B, k, M, M)
        where = centres + shift
        for seed, group_crops, group_where in zip(seeds, crops, where):
            self._crops[int(seed)] = group_crops
            self._centres[int(seed)] = group_where
            self.canvas.add_group(group_crops.astype(np.complex128), group_where[:, 0],
                                  group_where[:, 1], align=self.align_phase)
        centres = where.reshape(-1, 2)
        if len(centres):
            low, high = centres.min(axis=0), centres.max(axis=0)
            if self._bounds is not None:
                low, high = np.minimum(low, self._bounds[0]), np.maximum(high, self._bounds[1])
            self._bounds = np.stack([low, high])
        self._last_groups = groups
        self.seconds['stitch_s'] += time.perf_counter() - tic

    def _rebuild(self) -> None:
        """The final sums: every crop in seed order, phases aligned over all overlaps."""
        from ptycho.phase_alignment import group_phase_corrections

        tic = time.perf_counter()
        seeds = sorted(self._crops)
        if not seeds:
            return
        crops = np.concatenate([self._crops[i] for i in seeds])
        centres = np.concatenate([self._centres[i] for i in seeds])
        if self.align_phase:
            crops = crops * np.exp(1j * group_phase_corrections(crops, centres, self.M)
                                   ).astype(np.complex64)[:, None, None]
        self.canvas = RunningCanvas(self.M, self.canvas_shape, self.origin_xy, self._weights)
        self.canvas.add_many(crops, centres[:, 0], centres[:, 1])
        self.seconds['stitch_s'] += time.perf_counter() - tic


def reconstruct_scan(backend: Backend, model: LoadedModel, scan: Any, config: InferenceConfig,
                     **options: Any) -> Reconstruction:
    """A whole scan (``RawData``-like: ``diff3d``, ``xcoords``, ``ycoords``, ``probeGuess``)
    reconstructed as one stream fed in one chunk, its positions the plan; ``options`` as
    :class:`ScanStream`."""
    positions = np.stack([np.asarray(scan.xcoords, np.float64),
                          np.asarray(scan.ycoords, np.float64)], axis=1)
    stream = ScanStream(backend, model, config, scan.probeGuess, plan=positions, **options)
    stream.add(scan.diff3d, positions)
    result = stream.close()
    return dataclasses.replace(result, timings=dict(stream.seconds))
