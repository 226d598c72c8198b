"""The PNG figures people look at after a run: images, loss curve, ground-truth comparison.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module
never changes the process-wide matplotlib backend and works without a display. Each PNG
is written to a temporary file beside its target and renamed into place, so a viewer never
opens a half-written image.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray

from ptycho.atomic import atomic_path

logger = logging.getLogger(__name__)

__all__ = ['save_figure', 'image_png', 'amplitude_png', 'phase_png', 'loss_curve_png',
           'comparison_png', 'frc_png', 'residual_map_png']


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Render ``fig`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=dpi)
    logger.debug('Wrote %s', path)
    return path


def _extent(shape: tuple[int, ...], pixel_size_m: float | None
            ) -> tuple[list[float] | None, str]:
    """imshow extent and axis label: micrometres when the pixel size is known, else pixels."""
    if not pixel_size_m:
        return None, 'pixels'
    height, width = shape[:2]
    scale = pixel_size_m * 1e6
    return [0.0, width * scale, height * scale, 0.0], 'µm'


def _draw(fig: Figure, ax, image: NDArray, title: str, cmap: str, unit: str,
          pixel_size_m: float | None, vmin: float | None = None,
          vmax: float | None = None) -> None:
    extent, axis_unit = _extent(image.shape, pixel_size_m)
    shown = ax.imshow(image, cmap=cmap, extent=extent, vmin=vmin, vmax=vmax,
                      interpolation='nearest')
    ax.set_title(title)
    ax.set_xlabel(f'x ({axis_unit})')
    ax.set_ylabel(f'y ({axis_unit})')
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(unit)


def _masked(image: NDArray, mask: NDArray | None) -> NDArray:
    """Uncovered pixels shown as blank (NaN) rather than as invented values."""
    if mask is None:
        return image
    return np.where(mask, image, np.nan)


def image_png(image: ArrayLike, path: str | os.PathLike[str], *, title: str, unit: str,
              cmap: str = 'gray', mask: ArrayLike | None = None,
              pixel_size_m: float | None = None) -> Path:
    """One real image with a colour bar and labelled axes."""
    image = np.asarray(image, dtype=np.float64)
    mask_arr = None if mask is None else np.asarray(mask, dtype=bool)
    fig = Figure(figsize=(6, 5), layout='constrained')
    ax = fig.add_subplot(1, 1, 1)
    _draw(fig, ax, _masked(image, mask_arr), title, cmap, unit, pixel_size_m)
    return save_figure(fig, path)


def amplitude_png(obj: ArrayLike, path: str | os.PathLike[str], *, mask: ArrayLike | None = None,
                  pixel_size_m: float | None = None, title: str = 'Reconstructed amplitude'
                  ) -> Path:
    """Amplitude |O| of a complex object (grey scale)."""
    return image_png(np.abs(np.asarray(obj)), path, title=title, unit='amplitude',
                     cmap='gray', mask=mask, pixel_size_m=pixel_size_m)


def phase_png(obj: ArrayLike, path: str | os.PathLike[str], *, mask: ArrayLike | None = None,
              pixel_size_m: float | None = None, title: str = 'Reconstructed phase') -> Path:
    """Phase arg(O) of a complex object, in radians."""
    return image_png(np.angle(np.asarray(obj)), path, title=title, unit='phase (rad)',
                     cmap='twilight', mask=mask, pixel_size_m=pixel_size_m)


def loss_curve_png(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]
                   ) -> Path:
    """Training and validation loss per epoch (log y axis when every value is positive)."""
    fig = Figure(figsize=(6, 4), layout='constrained')
    ax = fig.add_subplot(1, 1, 1)
    values: list[float] = []
    for key, label, style in (('train_loss', 'train', '-o'), ('val_loss', 'validation', '-s')):
        series = [float(v) for v in history.get(key, []) or []]
        finite = [v for v in series if np.isfinite(v)]
        if not finite:
            continue
        epochs = np.arange(1, len(series) + 1)
        ax.plot(epochs, series, style, label=label, markersize=3)
        values.extend(finite)
    if values:
        if min(values) > 0:
            ax.set_yscale('log')
            ax.set_title('Training loss (log scale)')
        else:
            # The Poisson negative log-likelihood is offset by a data-dependent constant and
            # can be negative; a log axis cannot show it, so keep it linear and say so.
            ax.set_title('Training loss (linear: the Poisson NLL can be negative)')
        ax.legend()
    else:
        ax.set_title('Training loss')
        ax.text(0.5, 0.5, 'no loss values recorded', ha='center', va='center',
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.grid(True, which='both', alpha=0.3)
    return save_figure(fig, path)


def comparison_png(path: str | os.PathLike[str], *, rec_amp: ArrayLike, rec_phase: ArrayLike,
                   gt_amp: ArrayLike, gt_phase: ArrayLike, mask: ArrayLike | None = None,
                   metrics: Mapping[str, float] | None = None,
                   pixel_size_m: float | None = None) -> Path:
    """Truth, reconstruction and error, for amplitude (top row) and phase (bottom row).

    The images must already be aligned (same grid, phase offset removed, amplitude scale
    fitted: ``ptycho.metrics.align_reconstruction`` does that). The error is reconstruction
    minus truth, the phase error wrapped to (-pi, pi].
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (rec_amp, rec_phase, gt_amp, gt_phase)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f'comparison_png: images differ in shape: {sorted(shapes)}')
    amp_rec, ph_rec, amp_gt, ph_gt = arrays
    mask_arr = None if mask is None else np.asarray(mask, dtype=bool)
    amp_err = amp_rec - amp_gt
    ph_err = np.angle(np.exp(1j * (ph_rec - ph_gt)))
    fig = Figure(figsize=(15, 9), layout='constrained')
    rows = (
        ('amplitude', 'gray', 'amplitude', amp_gt, amp_rec, amp_err),
        ('phase', 'twilight', 'phase (rad)', ph_gt, ph_rec, ph_err),
    )
    for r, (name, cmap, unit, truth_img, rec_img, err) in enumerate(rows):
        shown_truth = _masked(truth_img, mask_arr)
        lim = _limits(shown_truth)
        err_lim = max(abs(v) for v in _limits(_masked(err, mask_arr))) or 1.0
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 1), shown_truth, f'true {name}', cmap, unit,
              pixel_size_m, *lim)
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 2), _masked(rec_img, mask_arr),
              f'reconstructed {name}', cmap, unit, pixel_size_m, *lim)
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 3), _masked(err, mask_arr),
              f'{name} error (reconstruction - truth)', 'RdBu_r', unit, pixel_size_m,
              -err_lim, err_lim)
    if metrics:
        shown = ', '.join(f'{k} {float(v):.3f}' for k, v in metrics.items()
                          if isinstance(v, (int, float)) and k.endswith(('ssim', 'psnr')))
        if shown:
            fig.suptitle(shown)
    return save_figure(fig, path)


def _limits(image: NDArray) -> tuple[float, float]:
    """Finite (min, max) of an image with NaN holes; (0, 1) when nothing is finite."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def frc_png(curves: Mapping[str, Any], path: str | os.PathLike[str], *,
            title: str = 'Fourier ring correlation with the ground truth',
            halfbit: bool = False) -> Path:
    """Fourier ring correlation of amplitude and phase, with the 0.5 line (or, with
    ``halfbit``, the half-bit curve of the first curve: the threshold between two halves)."""
    fig = Figure(figsize=(6, 4), layout='constrained')
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in curves.items():
        ax.plot(np.asarray(curve.frequency), np.asarray(curve.frc), label=name)
    first = next(iter(curves.values()), None)
    if halfbit and first is not None:
        ax.plot(np.asarray(first.frequency), np.asarray(first.halfbit), color='gray',
                linestyle='--', linewidth=1, label='half-bit')
    else:
        ax.axhline(0.5, color='gray', linestyle='--', linewidth=1, label='0.5')
    ax.set_xlabel('spatial frequency (cycles/pixel)')
    ax.set_ylabel('FRC')
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def residual_map_png(positions_xy: ArrayLike, residual: ArrayLike,
                     path: str | os.PathLike[str], *, evaluated: ArrayLike | None = None,
                     title: str = 'Data residual per pattern') -> Path:
    """Each scan position coloured by its pattern's relative data residual; positions left
    out of the summary (probe partly off the reconstruction) drawn as open circles."""
    xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    values = np.asarray(residual, dtype=np.float64)
    used = np.ones(len(xy), bool) if evaluated is None else np.asarray(evaluated, bool)
    fig = Figure(figsize=(6, 5), layout='constrained')
    ax = fig.add_subplot(1, 1, 1)
    finite = values[used & np.isfinite(values)]
    vmin, vmax = ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    shown = ax.scatter(xy[used, 0], xy[used, 1], c=values[used], cmap='magma', s=18,
                       vmin=vmin, vmax=vmax)
    if (~used).any():
        ax.scatter(xy[~used, 0], xy[~used, 1], facecolors='none', edgecolors='gray', s=18,
                   label='edge (not in summary)')
        ax.legend(loc='upper right', fontsize='small')
    ax.invert_yaxis()  # rows grow downwards, as in the images
    ax.set_aspect('equal')
    ax.set_xlabel('x (pixels)')
    ax.set_ylabel('y (pixels)')
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).set_label('||s A - D|| / ||D||')
    return save_figure(fig, path)

