"""Files a run leaves behind: ``recon.npz``, ``metrics.json``, figures, ``product-out.h5``.

A :class:`Reconstruction` is the stitched complex object plus what is needed to put it back
on the ground truth: the coverage map and ``origin_xy``, the object-pixel coordinate of
canvas pixel (0, 0). Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from ptycho.atomic import atomic_path

logger = logging.getLogger(__name__)

RECON_NAME = 'recon.npz'
METRICS_NAME = 'metrics.json'
PRODUCT_OUT_NAME = 'product-out.h5'
AMPLITUDE_PNG = 'reconstructed_amplitude.png'
PHASE_PNG = 'reconstructed_phase.png'
LOSS_PNG = 'loss_curve.png'
COMPARISON_PNG = 'comparison.png'
FRC_PNG = 'frc.png'
COVERED = 0.5  # coverage (in patch-crop units) below which a pixel counts as not reconstructed


@dataclass
class Reconstruction:
    """A stitched object on its canvas."""

    obj: NDArray[np.complexfloating]
    coverage: NDArray[np.floating] | None = None
    origin_xy: tuple[float, float] | None = None
    positions_xy: NDArray[np.floating] | None = None
    pixel_size_m: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    probe: NDArray[np.complexfloating] | None = None
    """The probe the object goes with (refined, or the input probe)."""
    probe_refined: bool = False
    """``probe`` was refined with the object: it replaces the input probe in the product."""
    losses: tuple[float, ...] = ()
    """Data residual per refinement epoch (the first before any); empty without one."""
    positions_refined: bool = False
    """``positions_xy`` were refined with the object: they replace the scan's positions in
    the product."""

    @property
    def mask(self) -> NDArray[np.bool_] | None:
        if self.coverage is None:
            return None
        return np.asarray(self.coverage) >= COVERED


def _atomic_write(path: Path, write) -> Path:
    with atomic_path(path) as tmp, open(tmp, 'wb') as handle:
        write(handle)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """JSON (non-finite numbers as null), atomically."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=True) + '\n'
    return _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def save_recon_npz(path: str | os.PathLike[str], recon: Reconstruction) -> Path:
    """Write ``object`` (complex), ``amplitude``, ``phase``, ``coverage``, ``positions``
    (with ``positions_refined``), ``origin_xy`` (and ``pixel_size_m`` when known; ``probe``
    with ``probe_refined`` and the refinement's ``refine_losses`` when there are),
    atomically."""
    arrays: dict[str, Any] = {
        'object': np.asarray(recon.obj).astype(np.complex64),
        'amplitude': np.abs(recon.obj).astype(np.float32),
        'phase': np.angle(recon.obj).astype(np.float32),
    }
    if recon.coverage is not None:
        arrays['coverage'] = np.asarray(recon.coverage, dtype=np.float32)
    if recon.positions_xy is not None:
        arrays['positions'] = np.asarray(recon.positions_xy, dtype=np.float64)
        arrays['positions_refined'] = np.bool_(recon.positions_refined)
    if recon.origin_xy is not None:
        arrays['origin_xy'] = np.asarray(recon.origin_xy, dtype=np.float64)
    if recon.pixel_size_m is not None:
        arrays['pixel_size_m'] = np.float64(recon.pixel_size_m)
    if recon.probe is not None:
        arrays['probe'] = np.asarray(recon.probe).astype(np.complex64)
        arrays['probe_refined'] = np.bool_(recon.probe_refined)
    if recon.losses:
        arrays['refine_losses'] = np.asarray(recon.losses, dtype=np.float64)
    return _atomic_write(Path(path), lambda handle: np.savez(handle, **arrays))


def load_reconstruction(path: str | os.PathLike[str]) -> Reconstruction:
    """A ``recon.npz`` (or any NPZ with a complex ``object``) or a Ptychodus product HDF5."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'{path}: reconstruction file not found')
    if path.suffix.lower() in ('.h5', '.hdf5'):
        from ptycho.ptychodus_io import read_product_object

        product = read_product_object(path)
        return Reconstruction(obj=product.obj, origin_xy=product.origin_xy,
                              pixel_size_m=product.pixel_size_m,
                              extra={'positions_canvas_xy': product.positions_canvas_xy})
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'object' not in data.files:
                raise ValueError(f'{path}: key "object": expected a complex 2-D array, found no '
                                 f'such key (keys: {sorted(data.files)})')
            obj = np.asarray(data['object'])
            coverage = np.asarray(data['coverage']) if 'coverage' in data.files else None
            origin = tuple(float(v) for v in data['origin_xy']) if 'origin_xy' in data.files \
                else None
            positions = np.asarray(data['positions']) if 'positions' in data.files else None
            probe = np.asarray(data['probe']) if 'probe' in data.files else None
            refined = bool(data['probe_refined']) if 'probe_refined' in data.files else False
            moved = bool(data['positions_refined']) if 'positions_refined' in data.files \
                else False
            losses = tuple(float(v) for v in data['refine_losses']) \
                if 'refine_losses' in data.files else ()
    except (OSError, EOFError) as exc:
        raise ValueError(f'{path}: not a readable NPZ file ({exc})') from exc
    obj = np.squeeze(obj)
    if obj.ndim != 2 or not np.iscomplexobj(obj):
        raise ValueError(f'{path}: key "object": expected a complex 2-D array, found '
                         f'{obj.dtype} {obj.shape}')
    return Reconstruction(obj=obj, coverage=coverage, origin_xy=origin,  # type: ignore[arg-type]
                          positions_xy=positions, probe=probe, probe_refined=refined,
                          losses=losses, positions_refined=moved and positions is not None)


def place_by_positions(recon: Reconstruction, truth_positions_xy: NDArray | None) -> None:
    """Set ``recon.origin_xy`` from the scan positions when both sides know them.

    A product file records positions in its own frame; the ground-truth NPZ records the
    same scan in object pixels. Their mean difference is the canvas origin, whichever
    frame the product was written in.
    """
    canvas = recon.extra.get('positions_canvas_xy')
    if canvas is None or truth_positions_xy is None:
        return
    canvas = np.asarray(canvas, dtype=np.float64).reshape(-1, 2)
    truth_xy = np.asarray(truth_positions_xy, dtype=np.float64).reshape(-1, 2)
    if canvas.shape != truth_xy.shape or len(canvas) == 0:
        return
    delta = truth_xy - canvas
    if np.ptp(delta, axis=0).max() > 1e-3:
        logger.debug('positions differ by more than a shift; keeping the recorded origin')
        return
    recon.origin_xy = (float(delta[:, 0].mean()), float(delta[:, 1].mean()))


def crop_truth(truth: NDArray, origin_xy: Sequence[float] | None, shape: tuple[int, int]
               ) -> tuple[NDArray, NDArray[np.bool_]]:
    """The part of ``truth`` under a canvas of ``shape`` at ``origin_xy``.

    Returns the crop (zero outside the truth) and a mask of the pixels the truth covers.
    Without an origin the canvas is assumed centred on the truth.
    """
    truth = np.asarray(truth)
    height, width = shape
    if origin_xy is None:
        origin_xy = ((truth.shape[1] - width) / 2, (truth.shape[0] - height) / 2)
    ox, oy = int(round(origin_xy[0])), int(round(origin_xy[1]))
    crop = np.zeros(shape, dtype=np.result_type(truth.dtype, np.complex64))
    inside = np.zeros(shape, dtype=bool)
    r0, r1 = max(0, oy), min(truth.shape[0], oy + height)
    c0, c1 = max(0, ox), min(truth.shape[1], ox + width)
    if r0 < r1 and c0 < c1:
        crop[r0 - oy:r1 - oy, c0 - ox:c1 - ox] = truth[r0:r1, c0:c1]
        inside[r0 - oy:r1 - oy, c0 - ox:c1 - ox] = True
    return crop, inside


def remove_phase_offset(rec: NDArray, truth: NDArray, mask: NDArray[np.bool_]) -> NDArray:
    """``rec`` times the global phase factor that best matches ``truth`` over ``mask``.

    Only for display: the metrics module does its own (and sub-pixel registration).
    """
    overlap = np.vdot(rec[mask], truth[mask]) if mask.any() else 0.0
    if abs(overlap) == 0:
        return rec
    return rec * (overlap / abs(overlap))


@dataclass
class Comparison:
    """A reconstruction scored against ground truth, with the aligned pair for figures."""

    metrics: dict[str, Any]
    pair: Any  # ptycho.metrics.AlignedPair

    @property
    def n_pixels(self) -> int:
        return int(np.asarray(self.pair.region).sum())


def compare_to_truth(recon: Reconstruction, truth: NDArray) -> Comparison:
    """Crop the truth under the canvas and score with ``ptycho.metrics``.

    Only pixels both reconstructed (coverage) and inside the truth count; the metrics
    module registers, removes the phase offset and fits the amplitude scale.
    """
    from ptycho.metrics import align_reconstruction, evaluate_reconstruction

    rec = np.asarray(recon.obj)
    gt_crop, inside = crop_truth(truth, recon.origin_xy, rec.shape)
    mask = inside if recon.mask is None else (inside & recon.mask)
    if mask.sum() < 49:
        raise ValueError(f'the reconstruction (shape {rec.shape}, origin {recon.origin_xy}) does '
                         f'not overlap the ground truth (shape {np.shape(truth)}); is this the '
                         f'right ground-truth file?')
    metrics = dict(evaluate_reconstruction(rec, gt_crop, mask))
    metrics_logger = logging.getLogger('ptycho.metrics')
    level = metrics_logger.level
    metrics_logger.setLevel(logging.ERROR)  # same alignment again: its warnings were shown
    try:
        pair = align_reconstruction(rec, gt_crop, mask)
    finally:
        metrics_logger.setLevel(level)
    return Comparison(metrics=metrics, pair=pair)


def write_comparison_outputs(output_dir: Path, comparison: Comparison, report: OutputReport,
                             pixel_size_m: float | None = None) -> None:
    """``metrics.json``, ``comparison.png`` and ``frc.png``."""
    from ptycho import figures
    from ptycho.metrics import frc_curve

    pair = comparison.pair
    report.metrics = comparison.metrics
    report.files['metrics'] = write_json(output_dir / METRICS_NAME, comparison.metrics)
    report.files['comparison'] = figures.comparison_png(
        output_dir / COMPARISON_PNG, rec_amp=pair.rec_amp, rec_phase=pair.rec_phase,
        gt_amp=pair.gt_amp, gt_phase=pair.gt_phase, mask=pair.region,
        metrics=comparison.metrics, pixel_size_m=pixel_size_m)
    report.files['FRC'] = figures.frc_png(
        {'amplitude': frc_curve(pair.rec_amp, pair.gt_amp),
         'phase': frc_curve(pair.rec_phase, pair.gt_phase)}, output_dir / FRC_PNG)


@dataclass
class OutputReport:
    """What a run wrote, for the command line to print."""

    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def write_loss_outputs(output_dir: Path, history: Mapping[str, Sequence[float]],
                       report: OutputReport) -> None:
    """``history.json`` and ``loss_curve.png``."""
    from ptycho import figures

    report.files['history'] = write_json(output_dir / 'history.json', dict(history))
    report.files['loss curve'] = figures.loss_curve_png(history, output_dir / LOSS_PNG)


def write_reconstruction_outputs(output_dir: str | os.PathLike[str], recon: Reconstruction, *,
                                 truth: NDArray | None = None, ptychodus_source: Any = None,
                                 probe: NDArray | None = None, nphotons: float = 0.0,
                                 losses: Sequence[float] = (),
                                 report: OutputReport | None = None) -> OutputReport:
    """recon.npz, amplitude/phase PNGs, product-out.h5, and with truth comparison + metrics.

    ``probe`` is the scan's probe as given (the product of NPZ input is built on it); a probe
    refined with the object (``recon.probe_refined``) replaces it, and Ptychodus input's
    probes, in ``product-out.h5``. ``losses`` default to the refinement's."""
    from ptycho import figures
    from ptycho.ptychodus_io import PtychodusMissingError, write_product

    output_dir = Path(output_dir)
    report = report or OutputReport()
    mask = recon.mask
    report.files['reconstruction'] = save_recon_npz(output_dir / RECON_NAME, recon)
    report.files['amplitude'] = figures.amplitude_png(
        recon.obj, output_dir / AMPLITUDE_PNG, mask=mask, pixel_size_m=recon.pixel_size_m)
    report.files['phase'] = figures.phase_png(
        recon.obj, output_dir / PHASE_PNG, mask=mask, pixel_size_m=recon.pixel_size_m)
    if probe is None and recon.probe is not None:
        probe = recon.probe
    if probe is not None or ptychodus_source is not None:
        try:
            report.files['Ptychodus product'] = write_product(
                output_dir / PRODUCT_OUT_NAME, recon.obj, recon.origin_xy or (0.0, 0.0),
                positions_xy=recon.positions_xy if recon.positions_xy is not None
                else np.zeros((0, 2)),
                probe=probe if probe is not None else np.zeros((1, 1), np.complex64),
                losses=losses or recon.losses, source=ptychodus_source, nphotons=nphotons,
                refined_probe=recon.probe if recon.probe_refined else None,
                refined_positions_xy=recon.positions_xy if recon.positions_refined else None)
        except PtychodusMissingError:
            report.notes.append(f'{PRODUCT_OUT_NAME} not written: ptychodus is not installed')
    if truth is not None:
        write_comparison_outputs(output_dir, compare_to_truth(recon, truth), report,
                                 recon.pixel_size_m)
    return report


_TABLE_ROWS = (('ssim', 'SSIM'), ('psnr', 'PSNR (dB)'), ('frc50', 'FRC 0.5 (1/px)'),
               ('frc_halfbit', 'FRC half-bit'))


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """A table: one row per score with amplitude and phase columns, then the alignment."""
    lines = [f'{"":<16}{"amplitude":>11}{"phase":>11}']
    shown: set[str] = set()
    for key, label in _TABLE_ROWS:
        cells = []
        for part in ('amp', 'phase'):
            name = f'{part}_{key}'
            value = metrics.get(name)
            shown.add(name)
            cells.append(f'{value:>11.4f}' if isinstance(value, (int, float)) else f'{"-":>11}')
        if any(c.strip() != '-' for c in cells):
            lines.append(f'{label:<16}{"".join(cells)}')
    for key in sorted(set(metrics) - shown):
        value = metrics[key]
        text = f'{value:.4g}' if isinstance(value, float) else str(value)
        lines.append(f'{key:<16}{text:>11}')
    return '\n'.join(lines)
