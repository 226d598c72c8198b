"""Differentiable torch physics, the twin of the float64 reference :mod:`ptycho.physics`.

Every function here must agree with the reference to float32 rounding; the tests compare
them directly. Conventions (DESIGN.md section 4): positions are ``(x, y)`` = (column, row)
patch centres; translation is ``out(p) = in(p - t)``; bilinear sampling fills zeros outside;
the far field is the orthonormal, fftshifted FFT.

Sub-pixel resampling with a uniform shift is separable, so :func:`resample` applies it as two
small banded interpolation matrices (``R @ img @ C^T``). That keeps the backward pass a
matmul: exact, fast, and deterministic on every device (no scatter-add in autograd).
Sampling coordinates and weights are computed in float64 and cast once, so large object
coordinates do not lose precision in float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ptycho.physics import COVERAGE_EPS, canvas_geometry

__all__ = [
    'COVERAGE_EPS', 'resample', 'translate', 'extract_patches', 'far_field_amplitude',
    'central_window_mask', 'disk_mask', 'merge_group', 'enforce_overlap', 'group_object',
    'forward_amplitude', 'stitch', 'canvas_geometry',
]


def _real_dtype(tensor: Tensor) -> torch.dtype:
    return tensor.real.dtype if tensor.is_complex() else tensor.dtype


def _interp_matrix(src: Tensor, length: int, dtype: torch.dtype) -> Tensor:
    """Bilinear weights ``W[..., i, k]`` for sampling at fractional ``src[..., i]`` from ``length``.

    Source indices outside ``0..length-1`` match no column, which is exactly zero fill.
    """
    src = src.to(torch.float64)
    low = torch.floor(src)
    frac = src - low
    k = torch.arange(length, device=src.device, dtype=torch.float64)
    low = low.unsqueeze(-1)
    frac = frac.unsqueeze(-1)
    weights = (1.0 - frac) * (k == low) + frac * (k == low + 1.0)
    return weights.to(dtype)


def _apply_separable(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ images @ cols^T`` for real or complex ``images`` (B, H, W)."""
    if images.is_complex():
        parts = torch.stack((images.real, images.imag))
        out = rows @ parts @ cols.transpose(-1, -2)
        return torch.complex(out[0], out[1])
    return rows @ images @ cols.transpose(-1, -2)


def resample(images: Tensor, row_src: Tensor, col_src: Tensor) -> Tensor:
    """Bilinear sampling of ``images`` (B, H, W) on the grid ``row_src`` (B, Ho) x ``col_src`` (B, Wo).

    Output pixel ``(i, j)`` of image ``b`` is ``images[b]`` at fractional (row_src[b, i],
    col_src[b, j]); zero outside the image.
    """
    dtype = _real_dtype(images)
    rows = _interp_matrix(row_src, images.shape[-2], dtype)
    cols = _interp_matrix(col_src, images.shape[-1], dtype)
    return _apply_separable(images, rows, cols)


def _as_shifts(shifts_xy: Tensor | np.ndarray, batch: int, device: torch.device) -> Tensor:
    shifts = torch.as_tensor(shifts_xy, device=device, dtype=torch.float64).reshape(-1, 2)
    if shifts.shape[0] not in (1, batch):
        raise ValueError(f'shifts_xy: expected {batch} rows of (x, y), found {shifts.shape[0]}')
    return shifts.expand(batch, 2)


def translate(images: Tensor, shifts_xy: Tensor | np.ndarray) -> Tensor:
    """``out(p) = in(p - t)`` for each image (B, H, W) and its shift ``t = (tx, ty)`` (B, 2)."""
    batch, height, width = images.shape
    shifts = _as_shifts(shifts_xy, batch, images.device)
    r = torch.arange(height, device=images.device, dtype=torch.float64)
    c = torch.arange(width, device=images.device, dtype=torch.float64)
    return resample(images, r - shifts[:, 1:2], c - shifts[:, 0:1])


def extract_patches(obj: Tensor, positions_xy: Tensor | np.ndarray, N: int) -> Tensor:
    """The N x N patches of ``obj`` (H, W) centred on ``positions_xy`` (B, 2) -> (B, N, N).

    Each patch needs only an (N+1)-square integer window of the object, gathered from a
    zero-padded copy, then blended with the four bilinear weights of its sub-pixel offset.
    """
    height, width = obj.shape
    pos = torch.as_tensor(positions_xy, device=obj.device, dtype=torch.float64).reshape(-1, 2)
    pad = N + 2
    padded = torch.nn.functional.pad(obj.unsqueeze(0), (pad, pad, pad, pad)).squeeze(0) \
        if not obj.is_complex() else _pad_complex(obj, pad)
    start_r = pos[:, 1] - N // 2
    start_c = pos[:, 0] - N // 2
    base_r = torch.floor(start_r)
    base_c = torch.floor(start_c)
    fr = (start_r - base_r).to(_real_dtype(obj))[:, None, None]
    fc = (start_c - base_c).to(_real_dtype(obj))[:, None, None]
    base_r = base_r.clamp(-(N + 1), height).long() + pad
    base_c = base_c.clamp(-(N + 1), width).long() + pad
    steps = torch.arange(N + 1, device=obj.device)
    window = padded[(base_r[:, None] + steps)[:, :, None], (base_c[:, None] + steps)[:, None, :]]
    return ((1 - fr) * (1 - fc) * window[:, :-1, :-1] + (1 - fr) * fc * window[:, :-1, 1:]
            + fr * (1 - fc) * window[:, 1:, :-1] + fr * fc * window[:, 1:, 1:])


def _pad_complex(obj: Tensor, pad: int) -> Tensor:
    out = obj.new_zeros((obj.shape[0] + 2 * pad, obj.shape[1] + 2 * pad))
    out[pad:pad + obj.shape[0], pad:pad + obj.shape[1]] = obj
    return out


def far_field_amplitude(exit_wave: Tensor) -> Tensor:
    """``|fftshift(fft2(psi))| / N`` over the last two axes (orthonormal FFT)."""
    spectrum = torch.fft.fft2(exit_wave, norm='ortho')
    return torch.abs(torch.fft.fftshift(spectrum, dim=(-2, -1)))


def far_field_intensity(exit_wave: Tensor) -> Tensor:
    """Squared far-field amplitude without the square root (for the Poisson loss)."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(exit_wave, norm='ortho'), dim=(-2, -1))
    return spectrum.real.square() + spectrum.imag.square()


def forward_amplitude(object_patches: Tensor, probe: Tensor) -> Tensor:
    """Far-field amplitude of ``probe * object_patch`` for patches (..., N, N)."""
    return far_field_amplitude(probe * object_patches)


def central_window_mask(N: int, device: torch.device | str | None = None,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """1 inside the central N/2 window, 0 elsewhere (the ``pad_object`` support)."""
    mask = torch.zeros((N, N), device=device, dtype=dtype)
    mask[N // 4: N // 4 + N // 2, N // 4: N // 4 + N // 2] = 1.0
    return mask


def disk_mask(N: int, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Disk of radius N/4 centred on pixel (N/2, N/2): the ``probe_mask`` aperture."""
    yy, xx = torch.meshgrid(torch.arange(N, dtype=torch.float64),
                            torch.arange(N, dtype=torch.float64), indexing='ij')
    inside = (yy - N // 2) ** 2 + (xx - N // 2) ** 2 <= (N / 4) ** 2
    return inside.to(device=device, dtype=dtype)


def _member_grids(offsets_xy: Tensor, N: int) -> tuple[Tensor, Tensor]:
    """Sampling grids that place each N-patch, centred, on a 2N canvas shifted by its offset."""
    offsets = offsets_xy.to(torch.float64)
    canvas = torch.arange(2 * N, device=offsets.device, dtype=torch.float64) - N // 2
    row_src = canvas - offsets[..., 1:2]
    col_src = canvas - offsets[..., 0:1]
    return row_src, col_src


def merge_group(patches: Tensor, offsets_xy: Tensor | np.ndarray, support: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
    """Average the C patches of each group on a 2N canvas: (B, C, N, N) -> (B, 2N, 2N) twice.

    Returns ``(merged, coverage)``; the merge divides by ``max(coverage, 1)``.
    """
    batch, channels, N, _ = patches.shape
    offsets = torch.as_tensor(offsets_xy, device=patches.device).reshape(batch * channels, 2)
    row_src, col_src = _member_grids(offsets, N)
    dtype = _real_dtype(patches)
    rows = _interp_matrix(row_src, N, dtype)
    cols = _interp_matrix(col_src, N, dtype)
    placed = _apply_separable(patches.reshape(batch * channels, N, N), rows, cols)
    total = placed.reshape(batch, channels, 2 * N, 2 * N).sum(dim=1)
    if support is None:
        support = torch.ones((N, N), device=patches.device, dtype=dtype)
    support = support.to(device=patches.device, dtype=dtype)
    coverage = (rows @ support @ cols.transpose(-1, -2)).reshape(batch, channels, 2 * N, 2 * N)
    coverage = coverage.sum(dim=1)
    return total / torch.clamp(coverage, min=1.0), coverage


def extract_group(canvas: Tensor, offsets_xy: Tensor | np.ndarray, N: int) -> Tensor:
    """Re-extract each member's N-patch from merged canvases (B, 2N, 2N) -> (B, C, N, N)."""
    batch = canvas.shape[0]
    offsets = torch.as_tensor(offsets_xy, device=canvas.device, dtype=torch.float64)
    offsets = offsets.reshape(batch, -1, 2)
    channels = offsets.shape[1]
    local = torch.arange(N, device=canvas.device, dtype=torch.float64) + N // 2
    row_src = local + offsets[..., 1:2]
    col_src = local + offsets[..., 0:1]
    dtype = _real_dtype(canvas)
    rows = _interp_matrix(row_src, 2 * N, dtype)  # (B, C, N, 2N)
    cols = _interp_matrix(col_src, 2 * N, dtype)
    return _apply_separable(canvas.unsqueeze(1), rows, cols).reshape(batch, channels, N, N)


def enforce_overlap(patches: Tensor, offsets_xy: Tensor | np.ndarray,
                    support: Tensor | None = None) -> Tensor:
    """Merge then re-extract: what a gridsize > 1 group feeds the forward model (B, C, N, N)."""
    merged, _ = merge_group(patches, offsets_xy, support)
    return extract_group(merged, offsets_xy, patches.shape[-1])


def group_object(patches: Tensor, offsets_xy: Tensor | np.ndarray,
                 support: Tensor | None = None) -> Tensor:
    """Each group's merged object, N x N around its centre: (B, C, N, N) -> (B, N, N)."""
    N = patches.shape[-1]
    merged, _ = merge_group(patches, offsets_xy, support)
    start = N // 2
    return merged[:, start:start + N, start:start + N]


def stitch(patches: Tensor, positions_xy: Tensor | np.ndarray, M: int,
           canvas_shape: tuple[int, int] | None = None,
           origin_xy: tuple[float, float] | None = None,
           chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Batched twin of :func:`ptycho.physics.stitch`: central M x M crops, averaged by coverage.

    Each crop lands on an (M+1)-square integer window of the canvas after its sub-pixel
    shift; all windows of a chunk are scatter-added in one ``index_add_``. Returns
    ``(image, coverage)`` with uncovered pixels (coverage < COVERAGE_EPS) zero.
    """
    N = patches.shape[-1]
    if not 0 < M <= N:
        raise ValueError(f'stitch: crop size M must be in 1..{N}, found {M}')
    pos_np = np.asarray(torch.as_tensor(positions_xy).detach().cpu(), dtype=np.float64).reshape(-1, 2)
    if pos_np.shape[0] != patches.shape[0]:
        raise ValueError(f'stitch: {patches.shape[0]} patches but {pos_np.shape[0]} positions')
    if canvas_shape is None or origin_xy is None:
        canvas_shape, origin_xy = canvas_geometry(pos_np, M)
    height, width = (int(v) for v in canvas_shape)
    device = patches.device
    dtype = _real_dtype(patches)
    lo = N // 2 - M // 2
    crops = patches[:, lo:lo + M, lo:lo + M]
    pos = torch.as_tensor(pos_np, device=device)
    # Canvas coordinate of crop pixel (0, 0): integer base + fraction in [0, 1).
    start_r = pos[:, 1] - M // 2 - float(origin_xy[1])
    start_c = pos[:, 0] - M // 2 - float(origin_xy[0])
    base_r = torch.floor(start_r)
    base_c = torch.floor(start_c)
    steps = torch.arange(M + 1, device=device, dtype=torch.float64)
    flat_total = torch.zeros(height * width, device=device, dtype=patches.dtype)
    flat_cov = torch.zeros(height * width, device=device, dtype=dtype)
    ones = torch.ones((1, M, M), device=device, dtype=dtype)
    for begin in range(0, crops.shape[0], chunk):
        sl = slice(begin, begin + chunk)
        row_src = steps - (start_r[sl] - base_r[sl])[:, None]
        col_src = steps - (start_c[sl] - base_c[sl])[:, None]
        rows = _interp_matrix(row_src, M, dtype)
        cols = _interp_matrix(col_src, M, dtype)
        tiles = _apply_separable(crops[sl], rows, cols)
        cov_tiles = rows @ ones @ cols.transpose(-1, -2)
        rr = base_r[sl].long()[:, None] + steps.long()[None, :]
        cc = base_c[sl].long()[:, None] + steps.long()[None, :]
        inside = ((rr >= 0) & (rr < height))[:, :, None] & ((cc >= 0) & (cc < width))[:, None, :]
        index = (rr.clamp(0, height - 1)[:, :, None] * width + cc.clamp(0, width - 1)[:, None, :])
        keep = inside.reshape(-1)
        index = index.reshape(-1)[keep]
        flat_total.index_add_(0, index, tiles.reshape(-1)[keep])
        flat_cov.index_add_(0, index, cov_tiles.reshape(-1)[keep])
    total = flat_total.reshape(height, width)
    coverage = flat_cov.reshape(height, width)
    covered = coverage >= COVERAGE_EPS
    safe = torch.where(covered, coverage, torch.ones_like(coverage))
    image = torch.where(covered, total / safe, torch.zeros_like(total))
    return image, coverage


def photon_scale(nphotons: float, N: int) -> float:
    """The initial photon scale ``s0 = sqrt(nphotons) / (N/2)``."""
    return math.sqrt(nphotons) / (N / 2)
