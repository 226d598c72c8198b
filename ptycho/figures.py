"""The PNG figures people look at after a run: images, loss curve, ground-truth comparison.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module
never changes the process-wide matplotlib backend and works without a display. Each PNG
is written to a temporary file beside its target and renamed into place, so a viewer never
opens a half-written image.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

__all__ = ['save_figure', 'image_png', 'amplitude_png', 'phase_png', 'loss_curve_png',
           'comparison_png']


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Render ``fig`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.stem}.', suffix='.png.tmp')
    try:
        with os.fdopen(fd, 'wb') as handle:
            fig.savefig(handle, format='png', dpi=dpi, bbox_inches='tight')
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
    fig = Figure(figsize=(6, 5))
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
    """Training and validation loss per epoch.

    The y axis is logarithmic when every value is positive; the Poisson negative
    log-likelihood can be negative, and then a symmetric-log axis keeps the shape visible.
    """
    fig = Figure(figsize=(6, 4))
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
        else:
            ax.set_yscale('symlog', linthresh=max(1e-6, float(np.min(np.abs(values))) or 1e-6))
        ax.legend()
    else:
        ax.text(0.5, 0.5, 'no loss values recorded', ha='center', va='center',
                transform=ax.transAxes)
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.set_title('Training loss')
    ax.grid(True, which='both', alpha=0.3)
    return save_figure(fig, path)


def comparison_png(reconstruction: ArrayLike, truth: ArrayLike, path: str | os.PathLike[str], *,
                   mask: ArrayLike | None = None, metrics: Mapping[str, float] | None = None,
                   pixel_size_m: float | None = None) -> Path:
    """Truth, reconstruction and error, for amplitude (top row) and phase (bottom row).

    Both images must already be aligned (same shape, phase offset removed); the error is
    reconstruction minus truth, the phase error wrapped to (-pi, pi].
    """
    rec = np.asarray(reconstruction)
    gt = np.asarray(truth)
    if rec.shape != gt.shape:
        raise ValueError(f'comparison_png: reconstruction shape {rec.shape} differs from '
                         f'ground-truth shape {gt.shape}')
    mask_arr = None if mask is None else np.asarray(mask, dtype=bool)
    amp_rec, amp_gt = np.abs(rec), np.abs(gt)
    ph_rec, ph_gt = np.angle(rec), np.angle(gt)
    amp_err = amp_rec - amp_gt
    ph_err = np.angle(np.exp(1j * (ph_rec - ph_gt)))
    fig = Figure(figsize=(15, 9))
    amp_lim = (float(np.nanmin(amp_gt)), float(np.nanmax(amp_gt)))
    amp_err_lim = float(np.nanmax(np.abs(_masked(amp_err, mask_arr)))) if amp_err.size else 1.0
    rows = (
        ('amplitude', 'gray', 'amplitude', (amp_gt, amp_rec), amp_lim, amp_err,
         amp_err_lim or 1.0),
        ('phase', 'twilight', 'phase (rad)', (ph_gt, ph_rec), (-np.pi, np.pi), ph_err, np.pi),
    )
    for r, (name, cmap, unit, (truth_img, rec_img), lim, err, err_lim) in enumerate(rows):
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 1), _masked(truth_img, mask_arr),
              f'true {name}', cmap, unit, pixel_size_m, *lim)
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 2), _masked(rec_img, mask_arr),
              f'reconstructed {name}', cmap, unit, pixel_size_m, *lim)
        _draw(fig, fig.add_subplot(2, 3, 3 * r + 3), _masked(err, mask_arr),
              f'{name} error (reconstruction - truth)', 'RdBu_r', unit, pixel_size_m,
              -err_lim, err_lim)
    if metrics:
        shown = ', '.join(f'{k} {v:.3f}' for k, v in metrics.items()
                          if isinstance(v, (int, float)) and k.endswith(('ssim', 'psnr')))
        if shown:
            fig.suptitle(shown)
    return save_figure(fig, path)
