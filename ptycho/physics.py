"""Float64 numpy reference of the PtychoPINN physics (DESIGN.md section 4).

This module is the definition every backend is tested against. It is written for
clarity, not speed, and uses numpy only.

Conventions
-----------
* Positions are ``(x, y)`` = (column, row) in object pixels and name patch *centres*:
  the patch of ``(x, y)`` covers rows ``y - N/2 ... y + N/2 - 1`` and columns
  ``x - N/2 ... x + N/2 - 1``.
* Sub-pixel sampling is bilinear with zeros outside the array.
* Translation by ``t = (tx, ty)``: ``out(p) = in(p - t)``; content moves by ``+t``.
* Far field: ``A = |fftshift(fft2(psi))| / N`` (orthonormal, so ``sum A**2 == sum |psi|**2``).
* Overlap merge for ``gridsize > 1``: the C patches of a group are placed on a shared
  canvas of side ``2N`` at their offsets from the group centre, averaged by coverage
  (divided by ``max(coverage, 1)``, never by ~0), and re-extracted.
* Stitching: each patch's central ``M x M`` crop is placed at its position on a canvas,
  divided by coverage; pixels with coverage below ``COVERAGE_EPS`` are reported as
  uncovered and left at zero.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

COVERAGE_EPS = 1e-6

BACKPROJECTION_ALPHA = 0.05
"""Regulariser of the back-projection update where the (max-normalised) probe is weak."""

PTYCHODUS_PIXEL_OFFSET = 0.5
"""Added to Ptychodus' object-pixel positions to get our patch centres.

Ptychodus centres an N-pixel patch on pixel ``(N - 1) / 2`` (its patch at ``x`` starts at
column ``x - (N - 1) / 2``); we centre it on pixel ``N / 2`` (start ``x - N/2``). The same
object pixels are covered when ``x_ours = x_ptychodus + 1/2`` (likewise for y). Every
reader of Ptychodus positions (plugin and CLI) applies it, so a reconstruction lands on
the Ptychodus object grid without a half-pixel shift.
"""


def bilinear_sample(image: NDArray, rows: NDArray, cols: NDArray) -> NDArray:
    """Sample ``image`` (H, W, real or complex) at fractional ``rows``/``cols``; zero outside."""
    height, width = image.shape[-2:]
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = rows - r0
    fc = cols - c0
    out = np.zeros(np.broadcast(rows, cols).shape, dtype=np.result_type(image, np.float64))
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = r0 + dr
            cc = c0 + dc
            inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
            values = image[np.clip(rr, 0, height - 1), np.clip(cc, 0, width - 1)]
            out = out + np.where(inside, values, 0) * wr * wc
    return out


def translate(image: ArrayLike, shift_xy: ArrayLike) -> NDArray:
    """``out(p) = in(p - t)`` for ``t = (tx, ty)``, bilinear, zero fill."""
    image = np.asarray(image)
    tx, ty = (float(v) for v in np.asarray(shift_xy, dtype=np.float64).reshape(2))
    rows, cols = np.meshgrid(np.arange(image.shape[-2], dtype=np.float64),
                             np.arange(image.shape[-1], dtype=np.float64), indexing='ij')
    return bilinear_sample(image, rows - ty, cols - tx)


def extract_patch(obj: ArrayLike, x: float, y: float, N: int) -> NDArray:
    """The N x N patch centred on ``(x, y)`` (bilinear for sub-pixel positions)."""
    obj = np.asarray(obj)
    offsets = np.arange(N, dtype=np.float64) - N // 2
    rows, cols = np.meshgrid(y + offsets, x + offsets, indexing='ij')
    return bilinear_sample(obj, rows, cols)


def extract_patches(obj: ArrayLike, positions_xy: ArrayLike, N: int) -> NDArray:
    """Patches for each row of ``positions_xy`` (B, 2) -> (B, N, N)."""
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    return np.stack([extract_patch(obj, x, y, N) for x, y in positions_xy])


def extract_patches_fast(obj: ArrayLike, positions_xy: ArrayLike, N: int) -> NDArray:
    """Vectorised twin of :func:`extract_patches` (same bilinear rule, zeros outside).

    A patch's fractional offset is the same for all its pixels, so when every patch (and
    its +1 interpolation neighbour) lies inside the object, four shifted views of one
    (N+1)-square window suffice; otherwise the general zero-filled sampler is used.
    """
    obj = np.asarray(obj)
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    top_left = positions_xy - N // 2
    corner = np.floor(top_left).astype(np.int64)
    height, width = obj.shape[-2:]
    if corner.size and (corner.min() >= 0 and corner[:, 1].max() + N < height
                        and corner[:, 0].max() + N < width):
        frac = top_left - corner
        fc, fr = frac[:, 0, None, None], frac[:, 1, None, None]
        steps = np.arange(N + 1)
        window = obj[(corner[:, 1, None] + steps)[:, :, None],
                     (corner[:, 0, None] + steps)[:, None, :]]
        return ((1 - fr) * ((1 - fc) * window[:, :-1, :-1] + fc * window[:, :-1, 1:])
                + fr * ((1 - fc) * window[:, 1:, :-1] + fc * window[:, 1:, 1:]))
    offsets = np.arange(N, dtype=np.float64) - N // 2
    rows = positions_xy[:, 1, None, None] + offsets[None, :, None]
    cols = positions_xy[:, 0, None, None] + offsets[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    return bilinear_sample(obj, rows, cols)


def photon_scale(nphotons: float, N: int) -> float:
    """The initial photon scale ``s0 = sqrt(nphotons) / (N/2)`` (DESIGN.md section 4)."""
    return math.sqrt(nphotons) / (N / 2)


def far_field_amplitude(exit_wave: ArrayLike) -> NDArray:
    """``|fftshift(fft2(psi))| / N`` over the last two axes (orthonormal FFT)."""
    psi = np.asarray(exit_wave, dtype=np.complex128)
    spectrum = np.fft.fft2(psi, norm='ortho')
    return np.abs(np.fft.fftshift(spectrum, axes=(-2, -1)))


def central_window_mask(N: int) -> NDArray:
    """1 inside the central N/2 x N/2 window, 0 elsewhere (the ``pad_object`` support)."""
    mask = np.zeros((N, N))
    mask[N // 4: N // 4 + N // 2, N // 4: N // 4 + N // 2] = 1.0
    return mask


def _embed_centre(patch: NDArray, size: int) -> NDArray:
    N = patch.shape[-1]
    start = (size - N) // 2
    canvas = np.zeros((size, size), dtype=np.result_type(patch, np.float64))
    canvas[start:start + N, start:start + N] = patch
    return canvas


def _crop_centre(canvas: NDArray, N: int) -> NDArray:
    start = (canvas.shape[-1] - N) // 2
    return canvas[..., start:start + N, start:start + N]


def merge_group(patches: ArrayLike, offsets_xy: ArrayLike, support: ArrayLike | None = None
                ) -> tuple[NDArray, NDArray]:
    """Average the C patches of one group on a 2N canvas at their offsets.

    ``patches`` (C, N, N); ``offsets_xy`` (C, 2) = member position - group centre;
    ``support`` (N, N) marks where a patch carries object (default: everywhere).
    Returns ``(merged_canvas, coverage)``, both (2N, 2N).
    """
    patches = np.asarray(patches)
    offsets_xy = np.asarray(offsets_xy, dtype=np.float64).reshape(-1, 2)
    N = patches.shape[-1]
    support = np.ones((N, N)) if support is None else np.asarray(support, dtype=np.float64)
    total = np.zeros((2 * N, 2 * N), dtype=np.result_type(patches, np.float64))
    coverage = np.zeros((2 * N, 2 * N))
    for patch, offset in zip(patches, offsets_xy):
        total = total + translate(_embed_centre(patch, 2 * N), offset)
        coverage = coverage + translate(_embed_centre(support, 2 * N), offset)
    return total / np.maximum(coverage, 1.0), coverage


def extract_group(canvas: ArrayLike, offsets_xy: ArrayLike, N: int) -> NDArray:
    """Re-extract each member's N x N patch from a merged 2N canvas -> (C, N, N)."""
    canvas = np.asarray(canvas)
    offsets_xy = np.asarray(offsets_xy, dtype=np.float64).reshape(-1, 2)
    return np.stack([_crop_centre(translate(canvas, -offset), N) for offset in offsets_xy])


def enforce_overlap(patches: ArrayLike, offsets_xy: ArrayLike, support: ArrayLike | None = None
                    ) -> NDArray:
    """Merge then re-extract: the patches a gridsize > 1 group feeds to the forward model."""
    patches = np.asarray(patches)
    merged, _ = merge_group(patches, offsets_xy, support)
    return extract_group(merged, offsets_xy, patches.shape[-1])


def group_object(patches: ArrayLike, offsets_xy: ArrayLike, support: ArrayLike | None = None
                 ) -> NDArray:
    """The group's merged object, N x N around the group centre (what inference stitches)."""
    patches = np.asarray(patches)
    merged, _ = merge_group(patches, offsets_xy, support)
    return _crop_centre(merged, patches.shape[-1])


def forward_amplitude(object_patches: ArrayLike, probe: ArrayLike) -> NDArray:
    """Far-field amplitude of ``probe * object_patch`` for patches (..., N, N)."""
    return far_field_amplitude(np.asarray(probe) * np.asarray(object_patches))


def forward_group(patches: ArrayLike, probe: ArrayLike, offsets_xy: ArrayLike | None = None,
                  support: ArrayLike | None = None) -> NDArray:
    """Full forward model for one group: optional overlap constraint, then diffraction."""
    patches = np.asarray(patches)
    if offsets_xy is not None and patches.shape[0] > 1:
        patches = enforce_overlap(patches, offsets_xy, support)
    return forward_amplitude(patches, probe)


def fourier_projection(exit_wave: ArrayLike, amplitude: ArrayLike) -> NDArray:
    """Replace the far-field modulus of ``exit_wave`` by the measured (centred) ``amplitude``.

    Keeps the far-field phase; where the predicted far field is exactly zero the result is
    zero there (no phase to keep). The classic error-reduction projection.
    """
    spectrum = np.fft.fft2(np.asarray(exit_wave, dtype=np.complex128), norm='ortho')
    target = np.fft.ifftshift(np.asarray(amplitude, dtype=np.float64), axes=(-2, -1))
    modulus = np.abs(spectrum)
    phase = np.divide(spectrum, modulus, out=np.zeros_like(spectrum), where=modulus > 0)
    return np.fft.ifft2(target * phase, norm='ortho')


def backprojection(diffraction: ArrayLike, probe: ArrayLike, offsets_xy: ArrayLike | None = None,
                   iterations: int = 1, alpha: float = BACKPROJECTION_ALPHA) -> NDArray:
    """Physics-derived network input: a few group-wise projection steps from a flat object.

    ``diffraction`` (C, N, N) normalised amplitudes of one group, ``probe`` (N, N),
    ``offsets_xy`` (C, 2) member offsets from the group centre (None: one pattern at 0).
    Starting from the object O = 1 on the group's 2N canvas, each iteration replaces every
    member's far-field modulus by the measurement (:func:`fourier_projection`) and moves O
    by the probe-weighted average of the exit-wave corrections:

        O += merge(conj(P) (psi' - psi)) / (merge(|P|^2) + alpha max|P|^2)

    One iteration is exactly the gradient of the amplitude misfit at O = 1 (a back-
    projection); more are parallel PIE steps. Returns ``O - 1`` in each member's frame,
    (C, N, N) complex: an image of the object in object coordinates, which a convolutional
    network refines far more easily than it inverts a diffraction pattern.
    """
    X = np.asarray(diffraction, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    C, N = X.shape[0], X.shape[-1]
    offsets = (np.zeros((C, 2)) if offsets_xy is None
               else np.asarray(offsets_xy, dtype=np.float64).reshape(C, 2))
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f'backprojection: iterations must be an integer >= 1, found {iterations!r}')
    P = np.asarray(probe, dtype=np.complex128)
    peak = float(np.max(np.abs(P)) ** 2)
    weight, _ = merge_group(np.broadcast_to(np.abs(P) ** 2 / peak, (C, N, N)), offsets)
    canvas = np.ones((2 * N, 2 * N), dtype=np.complex128)
    for _ in range(int(iterations)):
        psi = P * extract_group(canvas, offsets, N)
        correction = np.conj(P) * (fourier_projection(psi, X) - psi) / peak
        update, _ = merge_group(correction, offsets)
        canvas = canvas + update / (weight + alpha)
    return extract_group(canvas - 1.0, offsets, N)


def default_crop(N: int) -> int:
    """Default stitching crop: ``round(5 N / 16)`` (20 for N = 64, the guide's and Ptychodus' M).

    Each group is trusted only where the probe lit it: outside the bright probe footprint
    (about 19 px of 64 in the standard benchmark) the data barely constrain the network's
    output. Measured on the 10-minute benchmark model: amplitude/phase SSIM 0.87/0.87 with
    the N/2 = 32 crop, 0.91/0.94 with 20 (16 is too few pixels per position: 0.72/0.43).
    """
    return max(1, int(round(5 * N / 16)))


def canvas_geometry(positions_xy: ArrayLike, M: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Smallest canvas that holds every ``M x M`` crop: returns ``(shape, origin_xy)``.

    ``origin_xy`` is the object coordinate of canvas pixel (0, 0).
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    low = np.floor(positions_xy.min(axis=0) - M // 2).astype(int)
    high = np.ceil(positions_xy.max(axis=0) + M - M // 2).astype(int) + 1
    width, height = (high - low).tolist()
    return (height, width), (int(low[0]), int(low[1]))


def stitch(patches: ArrayLike, positions_xy: ArrayLike, M: int,
           canvas_shape: tuple[int, int] | None = None,
           origin_xy: tuple[float, float] | None = None) -> tuple[NDArray, NDArray]:
    """Place each patch's central ``M x M`` crop at its position; average by coverage.

    ``patches`` (B, N, N); ``positions_xy`` (B, 2) in object pixels. Without
    ``canvas_shape``/``origin_xy`` the canvas is :func:`canvas_geometry`'s. Returns
    ``(image, coverage)``; uncovered pixels (coverage < COVERAGE_EPS) are 0 in ``image``.
    """
    patches = np.asarray(patches)
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    N = patches.shape[-1]
    if not 0 < M <= N:
        raise ValueError(f'stitch: crop size M must be in 1..{N}, found {M}')
    if canvas_shape is None or origin_xy is None:
        canvas_shape, origin_xy = canvas_geometry(positions_xy, M)
    height, width = canvas_shape
    total = np.zeros((height, width), dtype=np.result_type(patches, np.float64))
    coverage = np.zeros((height, width))
    crops = patches[:, N // 2 - M // 2: N // 2 - M // 2 + M, N // 2 - M // 2: N // 2 - M // 2 + M]
    ones = np.ones((M, M))
    for crop, (x, y) in zip(crops, positions_xy):
        # Crop pixel (i, j) sits at object (y - M//2 + i, x - M//2 + j); only the canvas
        # window the crop can touch is sampled (one extra pixel for the sub-pixel spill).
        top = int(np.floor(y - M // 2 - origin_xy[1]))
        left = int(np.floor(x - M // 2 - origin_xy[0]))
        r0, r1 = max(top, 0), min(top + M + 1, height)
        c0, c1 = max(left, 0), min(left + M + 1, width)
        if r0 >= r1 or c0 >= c1:
            continue
        rows, cols = np.meshgrid(np.arange(r0, r1, dtype=np.float64),
                                 np.arange(c0, c1, dtype=np.float64), indexing='ij')
        r = rows + origin_xy[1] - (y - M // 2)
        c = cols + origin_xy[0] - (x - M // 2)
        total[r0:r1, c0:c1] += bilinear_sample(crop, r, c)
        coverage[r0:r1, c0:c1] += bilinear_sample(ones, r, c)
    covered = coverage >= COVERAGE_EPS
    image = np.where(covered, total / np.where(covered, coverage, 1.0), 0)
    return image, coverage


def poisson_diffraction(amplitude: ArrayLike, scale: float = 1.0,
                        rng: np.random.Generator | None = None) -> NDArray:
    """Measured amplitude ``sqrt(Poisson((scale * A)**2)) / scale``."""
    rng = np.random.default_rng() if rng is None else rng
    intensity = (scale * np.asarray(amplitude, dtype=np.float64)) ** 2
    return np.sqrt(rng.poisson(intensity)) / scale
