"""Side by side with pty-chi 2.2.0: the same scan, one scoring, wall time and quality.

One run reconstructs one scan with pty-chi (LSQML and rPIE, 100 epochs, the probe known
and fixed or refined; ``bench/ptychi_runner.py`` in ``.venv-ptychi``, a subprocess) and
with this project (each backend: a trained bundle, or a quick model trained through the
contract for ``--minutes``; the whole scan through ``ptycho.workflows.streaming.
reconstruct_scan`` with the model loaded and warmed up on the same scan, as a live worker
has it). Every
image is scored the same way (:func:`score`): on the ground truth's pixel grid, restricted
to the lit region (scan illumination >= ``--lit-fraction`` of its 99th percentile, and
covered by every method), after sub-pixel registration, removal of the constant phase and
of the linear phase ramp, and an amplitude scale fit
(:func:`ptycho.metrics.evaluate_reconstruction` with ``remove_ramp=True``).

    nice -n 19 bash bench/ptychi_env.sh            # once: .venv-ptychi with pty-chi 2.2.0
    nice -n 19 .venv/bin/python bench/compare_ptychi.py \\
        --model-pytorch RUN_T/wts.h5.zip --model-tensorflow RUN_F/wts.h5.zip
    nice -n 19 .venv/bin/python bench/compare_ptychi.py --data scan.npz --minutes 10

The default scan is ``ptycho.simulation.standard_dataset('test')`` (2,000 positions,
N = 64, 352 x 352 object, 1e9 photons); ``--preset NAME`` the test scan of a
beamline-realistic preset (``ptycho.simulation.REALISTIC_PRESETS``; quick models train on
its train scan); ``--data`` takes any contract NPZ with ``objectGuess`` as the ground truth
(positions on its pixel grid) and ``probeGuess`` as the probe both sides are given. Where
the true probe is known apart from the guess (a preset, or an NPZ with ``probe_true`` as
``ptychopinn simulate --realistic`` writes), pty-chi's "probe known" runs hold the TRUE
probe fixed and its "probe refined" runs start from the GIVEN guess; everyone gets the
given positions (``lsqml:refine+positions`` lets pty-chi correct them too, as this
project's refinement does by default). Prints one table and writes ``bench/results/compare_ptychi_<dataset>.json``
and a PNG beside it.

    nice -n 19 .venv/bin/python bench/compare_ptychi.py --preset siemens-weak-64-1e6 \
        --minutes 10

``--tilings seeds partition`` runs this project once per group tiling
(``InferenceConfig.tiling``), so the faster tiling's quality and time stand beside the
default's and pty-chi's in one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads OpenMP (see ptycho_torch)

import ptychi_runner  # noqa: E402  (numpy-only helpers: the NPZ contract)
from ptycho.config.config import TILINGS  # noqa: E402

logger = logging.getLogger('bench.compare_ptychi')

PTYCHI_PYTHON = ROOT / '.venv-ptychi' / 'bin' / 'python'
PTYCHI_RUNS = ('lsqml:fixed', 'lsqml:refine', 'lsqml:refine+positions', 'rpie:fixed',
               'rpie:refine')
BACKENDS = ('pytorch', 'tensorflow')
LABELS = {'lsqml': 'LSQML', 'rpie': 'rPIE', 'pie': 'PIE', 'epie': 'ePIE'}
PROBE_LABELS = {'fixed': ' (probe known)', 'refine': ' (probe refined)',
                'refine+positions': ' (probe + positions refined)'}
RESULTS = BENCH / 'results'


@dataclass
class Scan:
    """What every method is given, plus the truth it is scored against."""

    name: str
    diffraction: np.ndarray          # (n, N, N) amplitudes, DC centred
    positions_xy: np.ndarray         # (n, 2) patch centres in object pixels
    probe: np.ndarray                # (N, N) complex: the probe guess
    truth: np.ndarray                # (H, W) complex ground truth
    raw: Any                         # the RawData (what the project's backends take)
    nphotons: float
    description: str
    probe_true: np.ndarray | None = None  # (N, N) the probe that made the data, when known


@dataclass
class MethodResult:
    """One method's image on the truth's grid, where it is defined, and its timings."""

    name: str
    image: np.ndarray
    valid: np.ndarray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def load_scan(data: Path | None, n_positions: int | None, preset: str | None = None) -> Scan:
    """The standard test scan, a realistic preset's test scan, or a contract NPZ whose
    ``objectGuess`` is the truth (and ``probe_true``, when present, the true probe)."""
    probe_true = None
    if preset is not None:
        from ptycho.simulation import realistic_preset, realistic_scan

        spec = realistic_preset(preset, 'test')
        realistic = realistic_scan(spec)
        raw = realistic.raw_data()
        if n_positions is not None:
            raw = _thin(raw, n_positions)
        name = f'realistic_{preset}' if n_positions is None else \
            f'realistic_{preset}_{n_positions}'
        nphotons = spec.nphotons
        probe_true = realistic.probe
        description = (f'ptycho.simulation realistic preset {preset!r}, test split: '
                       f'{spec.object_kind} ({spec.phase} phase), experimental probe given as '
                       f'a guess with relative error {realistic.probe_error:.2f}, position '
                       f'errors {spec.position_error_std:g} px, {spec.n_bad_pixels} bad '
                       f'pixels, {spec.nphotons:g} photons')
    elif data is None:
        from ptycho.simulation import STANDARD, standard_dataset

        raw = standard_dataset('test', n_positions=n_positions)
        name = 'standard_test' if n_positions is None else f'standard_test_{n_positions}'
        nphotons = STANDARD.nphotons
        description = (f'ptycho.simulation.standard_dataset("test"): {STANDARD.object_kind} '
                       f'object, {STANDARD.probe_kind} probe known exactly, {STANDARD.scan} '
                       f'scan, {STANDARD.nphotons:g} photons')
    else:
        from ptycho.raw_data import RawData

        raw = RawData.from_file(data)
        if raw.objectGuess is None:
            raise SystemExit(f'compare_ptychi: {data} has no objectGuess (the ground truth)')
        if n_positions is not None:
            raw = _thin(raw, n_positions)
        name = data.stem
        amplitude = np.asarray(raw.diff3d, dtype=np.float64)
        nphotons = float(np.mean(np.sum(amplitude ** 2, axis=(1, 2))))
        description = f'{data} (objectGuess as ground truth)'
        with np.load(data, allow_pickle=False) as arrays:
            if 'probe_true' in arrays.files:
                probe_true = np.asarray(arrays['probe_true'])
                description += '; probe_true as the known probe'
    probe = np.asarray(raw.probeGuess)
    if probe.ndim == 3:  # a mode stack: both sides get the strongest mode
        probe = probe[int(np.argmax(np.sum(np.abs(probe) ** 2, axis=(1, 2))))]
    positions = np.stack([np.asarray(raw.xcoords, np.float64),
                          np.asarray(raw.ycoords, np.float64)], axis=1)
    if probe_true is not None and probe_true.shape != probe.shape:
        raise SystemExit(f'compare_ptychi: the true probe is {probe_true.shape}, the guess '
                         f'{probe.shape}')
    return Scan(name=name, diffraction=np.asarray(raw.diff3d, dtype=np.float32),
                positions_xy=positions, probe=probe.astype(np.complex64),
                truth=np.asarray(raw.objectGuess, dtype=np.complex64), raw=raw,
                nphotons=nphotons, description=description,
                probe_true=None if probe_true is None else probe_true.astype(np.complex64))


def _thin(raw: Any, n: int) -> Any:
    from ptycho.raw_data import RawData

    keep = np.linspace(0, len(raw.xcoords) - 1, n).round().astype(int)
    return RawData(raw.xcoords[keep], raw.ycoords[keep], raw.xcoords_start[keep],
                   raw.ycoords_start[keep], raw.diff3d[keep], raw.probeGuess,
                   raw.scan_index[keep], objectGuess=raw.objectGuess)


def illumination(shape: tuple[int, int], positions_xy: np.ndarray, probe: np.ndarray
                 ) -> np.ndarray:
    """Sum of ``|P|**2`` over the scan on the object grid (nearest pixel; patch of (x, y)
    covers rows ``y - N/2 ...``): where the data say something about the object."""
    N = probe.shape[-1]
    power = np.abs(probe) ** 2
    padded = np.zeros((shape[0] + 2 * N, shape[1] + 2 * N))
    for x, y in np.round(positions_xy - N // 2).astype(int):
        padded[y + N:y + 2 * N, x + N:x + 2 * N] += power
    return padded[N:N + shape[0], N:N + shape[1]]


def lit_region(illum: np.ndarray, fraction: float) -> np.ndarray:
    """Pixels whose illumination reaches ``fraction`` of the 99th percentile of the lit."""
    positive = illum[illum > 0]
    if positive.size == 0:
        raise ValueError('compare_ptychi: the scan illuminates nothing')
    return illum >= fraction * float(np.percentile(positive, 99))


# --------------------------------------------------------------------------- scoring


def score(image: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """One scoring for all: registration, constant phase and phase ramp removed, lit mask."""
    from ptycho.metrics import evaluate_reconstruction

    metrics = evaluate_reconstruction(image, truth, mask=mask, remove_ramp=True)
    rec = np.asarray(image)[mask]
    gt = np.asarray(truth)[mask]
    return {**{k: float(v) for k, v in metrics.items()},
            'phase_correlation_raw': _phase_correlation(rec, gt)}


def _phase_correlation(rec: np.ndarray, gt: np.ndarray) -> float:
    """Pearson correlation of the phases after the constant offset only (a quick check)."""
    offset = np.angle(np.sum(rec * np.conj(gt)))
    a = np.angle(rec * np.exp(-1j * offset))
    b = np.angle(gt)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


# --------------------------------------------------------------------------- load


def wait_for_load(max_load: float | None, wait_minutes: float) -> float:
    """Wait (up to ``wait_minutes``) for the 1-minute load to fall below ``max_load``;
    returns the load when the next timing starts (recorded beside it)."""
    load = os.getloadavg()[0]
    if max_load is None:
        return round(load, 2)
    deadline = time.monotonic() + 60 * wait_minutes
    while load >= max_load and time.monotonic() < deadline:
        logger.info('load %.2f >= %.2f: waiting', load, max_load)
        time.sleep(15)
        load = os.getloadavg()[0]
    if load >= max_load:
        logger.warning('load still %.2f after %.0f min: timing anyway', load, wait_minutes)
    return round(load, 2)


# --------------------------------------------------------------------------- pty-chi


def run_ptychi(scan: Scan, runs: list[str], workdir: Path, *, python: Path, epochs: int,
               batch_size: int, rpie_batch_size: int, threads: int | None,
               max_load: float | None, wait_minutes: float) -> list[MethodResult]:
    """Each ``algorithm:probe`` run of the runner in its venv; images on the truth's grid.

    ``fixed`` runs hold the known probe (the true one where the scan has it), ``refine`` runs
    start from the probe guess, ``refine+positions`` runs also correct the positions."""
    if not python.exists():
        raise SystemExit(f'compare_ptychi: {python} not found; build it with '
                         f'`nice -n 19 bash bench/ptychi_env.sh`, or pass --no-ptychi')
    probes = {'fixed': scan.probe if scan.probe_true is None else scan.probe_true,
              'refine': scan.probe}
    inputs = {mode: ptychi_runner.write_input(workdir / f'ptychi_in_{mode}.npz',
                                              scan.diffraction, scan.positions_xy, probe,
                                              scan.truth.shape,
                                              bad_pixels=getattr(scan.raw, 'bad_pixels', None))
              for mode, probe in probes.items()}
    inputs['refine+positions'] = inputs['refine']
    results = []
    for run in runs:
        algorithm, probe_mode = run.split(':')
        inp = inputs[probe_mode]
        out = workdir / f'ptychi_{algorithm}_{probe_mode.replace("+", "_")}.npz'
        command = [str(python), str(BENCH / 'ptychi_runner.py'), str(inp), str(out),
                   '--algorithm', algorithm, '--probe', probe_mode, '--epochs', str(epochs),
                   '--batch-size', str(rpie_batch_size if algorithm == 'rpie' else batch_size),
                   '--quiet']
        if threads:
            command += ['--threads', str(threads)]
        load = wait_for_load(max_load, wait_minutes)
        logger.info('pty-chi %s, probe %s: %s', algorithm, probe_mode, shlex.join(command))
        tic = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        process_seconds = time.perf_counter() - tic
        if done.returncode != 0:
            raise RuntimeError(f'pty-chi {run} failed ({done.returncode}):\n{done.stderr[-4000:]}')
        output = ptychi_runner.read_output(out)
        image = output['object']
        label = f'pty-chi {LABELS[algorithm]}-{epochs}'
        label += PROBE_LABELS[probe_mode]
        loss = np.asarray(output['loss'])
        results.append(MethodResult(
            name=label, image=image, valid=np.isfinite(image), seconds=output['seconds'],
            info={'kind': 'ptychi', 'algorithm': algorithm, 'probe': probe_mode,
                  'run_seconds': round(output['run_seconds'], 2),
                  'process_seconds': round(process_seconds, 2),
                  'load_average_1min_at_start': load, 'loss_first': _first(loss),
                  'loss_last': _last(loss), 'loss': [round(float(v), 6) for v in loss],
                  'probe_scale': output['probe_scale'], 'options': output['options'],
                  'probe_out': output['probe']}))
        logger.info('%s: %.1f s (epochs %.1f s), loss %s -> %s', label, output['seconds'],
                    output['run_seconds'], _first(loss), _last(loss))
    return results


def _first(values: np.ndarray) -> float | None:
    return round(float(values[0]), 6) if values.size else None


def _last(values: np.ndarray) -> float | None:
    return round(float(values[-1]), 6) if values.size else None


# --------------------------------------------------------------------------- this project


def quick_model(backend: Any, scan: Scan, train_raw: Any, minutes: float, workdir: Path
                ) -> tuple[Any, dict[str, Any]]:
    """A model trained through the contract with the benchmark's settings (bench/quality.py)."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from quality import DEFAULTS

    N = scan.probe.shape[-1]
    config = TrainingConfig(
        model=ModelConfig(N=N, gridsize=DEFAULTS['gridsize'],
                          n_filters_scale=DEFAULTS['n_filters_scale'],
                          amp_activation=DEFAULTS['amp_activation']),
        nepochs=1000, batch_size=DEFAULTS['batch_size'],
        learning_rate=DEFAULTS['learning_rate'], nphotons=scan.nphotons,
        output_dir=workdir / f'train_{backend.name}', backend=backend.name,
        validation_split=0.0, lr_plateau_patience=3, logger='none')
    result = backend.train(train_raw, None, config, max_time=timedelta(minutes=minutes))
    logger.info('%s: quick model, %d epochs in %.0f s', backend.name, result.epochs_run,
                result.seconds)
    return result.model, {'epochs': result.epochs_run, 'train_seconds': round(result.seconds, 1),
                          'bundle': str(result.bundle_path)}


def run_project(scan: Scan, backend_name: str, model_path: Path | None, train_raw: Any,
                minutes: float, workdir: Path, batch_size: int, max_load: float | None,
                wait_minutes: float, refine_epochs: int | None = None,
                tilings: tuple[str, ...] = ('seeds',)) -> list[MethodResult]:
    """Whole-scan reconstruct with a loaded, warmed-up model (what a live worker holds): the
    network's image, and that image after the physics refinement ``ptychopinn infer`` does
    (``refine_epochs``, default InferenceConfig's; 0 skips it), timed from the same start.
    Once per group tiling in ``tilings`` (labelled when it is not the default 'seeds')."""
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import inference_config_for

    backend = get_backend(backend_name)
    if model_path is not None:
        model = backend.load(model_path)
        origin: dict[str, Any] = {'model': str(model_path)}
    else:
        model, origin = quick_model(backend, scan, train_raw, minutes, workdir)
        origin['model'] = f'quick model, {minutes:g} min'
    N = scan.probe.shape[-1]
    if model.config.model.N != N:
        raise SystemExit(f'compare_ptychi: the {backend_name} model was trained on '
                         f'N={model.config.model.N}, the scan has N={N}')
    refine = {} if refine_epochs is None else {'refine_epochs': refine_epochs}
    results: list[MethodResult] = []
    for tiling in tilings:
        config = inference_config_for(model, batch_size=batch_size, tiling=tiling, **refine)
        results += _run_tiling(scan, backend, model, config, origin, max_load, wait_minutes)
    return results


def _run_tiling(scan: Scan, backend: Any, model: Any, config: Any, origin: dict[str, Any],
                max_load: float | None, wait_minutes: float) -> list[MethodResult]:
    from ptycho.workflows.contract import with_refinement
    from ptycho.workflows.streaming import reconstruct_scan

    options = dict(canvas_shape=scan.truth.shape, origin_xy=(0.0, 0.0))
    # Warm-up: the same scan once, refinement included, untimed. A live worker has met these
    # batch shapes before; a smaller warm-up scan left TensorFlow's trace and XLA compile of
    # the shapes only the whole scan sends inside the timed run.
    tic = time.perf_counter()
    warm = reconstruct_scan(backend, model, scan.raw, config, **options)
    if config.refine_epochs > 0:
        with_refinement(backend, scan.raw, warm, config)
    cold_seconds = time.perf_counter() - tic
    load = wait_for_load(max_load, wait_minutes)
    tic = time.perf_counter()
    recon = reconstruct_scan(backend, model, scan.raw, config, **options)
    seconds = time.perf_counter() - tic
    label = f'PtychoPINN {"PyTorch" if backend.name == "pytorch" else "TensorFlow"}'
    if config.tiling != 'seeds':
        label += f' [{config.tiling}]'
    logger.info('%s: whole scan in %.2f s', label, seconds)
    info = {'kind': 'ptychopinn', 'backend': backend.name, **origin,
            'gridsize': model.config.model.gridsize, 'M': recon.M, 'tiling': config.tiling,
            'groups': len(recon.groups.positions_xy),
            'warmup_seconds': round(cold_seconds, 2),
            'load_average_1min_at_start': load,
            'timings': {k: round(float(v), 3) for k, v in recon.timings.items()},
            'inference_batch_size': config.batch_size}
    results = [_project_result(label, recon, seconds, scan, info)]
    if config.refine_epochs > 0:
        tic = time.perf_counter()
        refined = with_refinement(backend, scan.raw, recon, config)
        refine_seconds = time.perf_counter() - tic
        logger.info('%s: refinement (%d epochs) in %.2f s', label, config.refine_epochs,
                    refine_seconds)
        results.append(_project_result(
            f'{label} + refinement {config.refine_epochs}', refined, seconds + refine_seconds,
            scan, {**info, 'refine_epochs': config.refine_epochs,
                   'refine_probe': config.refine_probe,
                   'refine_positions': config.refine_positions,
                   'refine_seconds': round(refine_seconds, 2)}))
    return results


def _project_result(label: str, recon: Any, seconds: float, scan: Scan,
                    info: dict[str, Any]) -> MethodResult:
    from ptycho.physics import COVERAGE_EPS

    image = np.asarray(recon.obj)
    if image.shape != scan.truth.shape:
        raise RuntimeError(f'{label}: image {image.shape} is not on the truth grid '
                           f'{scan.truth.shape}')
    return MethodResult(name=label, image=image,
                        valid=np.asarray(recon.coverage) >= COVERAGE_EPS, seconds=seconds,
                        info=info)


# --------------------------------------------------------------------------- report


COLUMNS = (('seconds', 'wall s', '{:8.1f}'), ('amp_ssim', 'amp SSIM', '{:8.3f}'),
           ('phase_ssim', 'ph SSIM', '{:8.3f}'), ('amp_psnr', 'amp PSNR', '{:8.1f}'),
           ('phase_psnr', 'ph PSNR', '{:8.1f}'), ('amp_frc50', 'amp FRC50', '{:9.3f}'),
           ('phase_frc50', 'ph FRC50', '{:9.3f}'), ('load', 'load', '{:5.2f}'))


def table(results: list[MethodResult]) -> str:
    """The printed table: one row per method (FRC50 in cycles/px; load = 1-min average)."""
    width = max(len(r.name) for r in results) + 2
    head = 'method'.ljust(width) + ' '.join(f'{h:>{len(f.format(0))}}' for _, h, f in COLUMNS)
    lines = [head, '-' * len(head)]
    for r in results:
        values = {**r.metrics, 'seconds': r.seconds,
                  'load': r.info.get('load_average_1min_at_start', float('nan'))}
        lines.append(r.name.ljust(width) + ' '.join(f.format(values[k]) for k, _, f in COLUMNS))
    return '\n'.join(lines)


def figure(results: list[MethodResult], truth: np.ndarray, mask: np.ndarray, path: Path) -> None:
    """Amplitude (top) and phase (bottom) of each method after the scoring's alignment,
    the ground truth first; one colour scale per row (the truth's range in the lit region)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from ptycho.metrics import align_reconstruction

    pairs = [align_reconstruction(r.image, truth, mask=mask, remove_ramp=True) for r in results]
    ref = pairs[0]
    ranges = ((float(ref.gt_amp[ref.region].min()), float(ref.gt_amp[ref.region].max())),
              (float(ref.gt_phase[ref.region].min()), float(ref.gt_phase[ref.region].max())))
    columns = [('ground truth', ref.gt_amp, ref.gt_phase, '')] + [
        (r.name.replace(' (', '\n('), p.rec_amp, p.rec_phase,
         f"{r.seconds:.1f} s; SSIM {r.metrics['amp_ssim']:.2f} / {r.metrics['phase_ssim']:.2f}")
        for r, p in zip(results, pairs)]
    n = len(columns)
    fig = Figure(figsize=(2.3 * n + 0.8, 5.4), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [0.06])
    for row, (what, cmap) in enumerate((('amplitude', 'gray'), ('phase (rad)', 'viridis'))):
        shown = None
        for col, (title, amp, phase, note) in enumerate(columns):
            ax = fig.add_subplot(grid[row, col])
            shown = ax.imshow(amp if row == 0 else phase, cmap=cmap, vmin=ranges[row][0],
                              vmax=ranges[row][1])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
            elif note:
                ax.set_xlabel(note, fontsize=7)
            if col == 0:
                ax.set_ylabel(what, fontsize=8)
        fig.colorbar(shown, cax=fig.add_subplot(grid[row, n]))
    fig.suptitle('Same scan, one scoring: shift, constant phase and phase ramp removed; '
                 'lit region; amplitude SSIM / phase SSIM', fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + '.tmp.png')
    fig.savefig(tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', type=Path, default=None,
                        help='contract NPZ with objectGuess (default: the standard test scan)')
    parser.add_argument('--preset', default=None,
                        help='a realistic preset (ptycho.simulation.REALISTIC_PRESETS): its '
                             'test scan is compared, quick models train on its train scan')
    parser.add_argument('--train-data', type=Path, default=None,
                        help='NPZ for quick models (default: standard train split, the '
                             "preset's train scan, or --data itself, self-supervised)")
    parser.add_argument('--n-positions', type=int, default=None, help='thin the scan')
    parser.add_argument('--model-pytorch', type=Path, default=None)
    parser.add_argument('--model-tensorflow', type=Path, default=None)
    parser.add_argument('--minutes', type=float, default=10.0,
                        help='quick-model training budget per backend without --model-*')
    parser.add_argument('--backends', nargs='*', default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument('--infer-batch-size', type=int, default=64)
    parser.add_argument('--refine-epochs', type=int, default=None,
                        help='physics refinement after the network (default: InferenceConfig\'s, '
                             'as ptychopinn infer; 0: the network alone)')
    parser.add_argument('--tilings', nargs='+', default=['seeds'], choices=TILINGS,
                        help="PtychoPINN's group tilings, one run each (InferenceConfig.tiling; "
                             "default: 'seeds', the CLI's default)")
    parser.add_argument('--ptychi', nargs='*', default=list(PTYCHI_RUNS),
                        choices=[f'{a}:{m}' for a in ptychi_runner.ALGORITHMS
                                 for m in ptychi_runner.PROBE_MODES],
                        help='pty-chi runs, algorithm:probe (default: LSQML known / refined / refined '
                             'with positions, rPIE known / refined)')
    parser.add_argument('--no-ptychi', action='store_true')
    parser.add_argument('--ptychi-python', type=Path, default=PTYCHI_PYTHON)
    parser.add_argument('--epochs', type=int, default=100, help='pty-chi epochs')
    parser.add_argument('--batch-size', type=int, default=100,
                        help="pty-chi's batch size (LSQML, PIE, ePIE)")
    parser.add_argument('--rpie-batch-size', type=int, default=20,
                        help="pty-chi's batch size for rPIE: at 100 (500 positions) rPIE "
                             'diverges on the realistic scans (loss 21 -> 79 over 100 epochs, '
                             'phase SSIM 0.05), at 20 or 5 it converges')
    parser.add_argument('--threads', type=int, default=None, help='pty-chi torch threads')
    parser.add_argument('--lit-fraction', type=float, default=0.1)
    parser.add_argument('--max-load', type=float, default=None,
                        help='wait before each timing until the 1-min load is below this')
    parser.add_argument('--wait-minutes', type=float, default=20.0)
    parser.add_argument('--output', type=Path, default=None, help='JSON (PNG beside it)')
    parser.add_argument('--no-figure', action='store_true')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    load_at_start = round(os.getloadavg()[0], 2)

    if args.preset is not None and args.data is not None:
        parser.error('--preset and --data each name the scan: give one')
    scan = load_scan(args.data, args.n_positions, args.preset)
    illum = illumination(scan.truth.shape, scan.positions_xy, scan.probe)
    lit = lit_region(illum, args.lit_fraction)
    workdir = Path(tempfile.mkdtemp(prefix='compare_ptychi_'))
    results: list[MethodResult] = []
    if not args.no_ptychi and args.ptychi:
        results += run_ptychi(scan, args.ptychi, workdir, python=args.ptychi_python,
                              epochs=args.epochs, batch_size=args.batch_size,
                              rpie_batch_size=args.rpie_batch_size,
                              threads=args.threads, max_load=args.max_load,
                              wait_minutes=args.wait_minutes)
    models = {'pytorch': args.model_pytorch, 'tensorflow': args.model_tensorflow}
    train_raw = None
    if any(models[b] is None for b in args.backends):
        if args.train_data is not None:
            from ptycho.raw_data import RawData
            train_raw = RawData.from_file(args.train_data)
        elif args.preset is not None:
            from ptycho.simulation import realistic_dataset
            train_raw = realistic_dataset(args.preset, 'train')
        elif args.data is None:
            from ptycho.simulation import standard_dataset
            train_raw = standard_dataset('train', n_positions=args.n_positions)
        else:
            logger.warning('no --train-data: quick models train on the scored scan itself '
                           '(self-supervised, no ground truth)')
            train_raw = scan.raw
    for name in args.backends:
        results.extend(run_project(scan, name, models[name], train_raw, args.minutes, workdir,
                                   args.infer_batch_size, args.max_load, args.wait_minutes,
                                   args.refine_epochs, tuple(args.tilings)))
    if not results:
        parser.error('nothing to compare')

    mask = lit.copy()
    for r in results:
        mask &= r.valid
    for r in results:
        r.metrics = score(r.image, scan.truth, mask)
    print(f'\n{scan.name}: {len(scan.positions_xy)} positions, N={scan.probe.shape[-1]}, '
          f'object {scan.truth.shape[0]}x{scan.truth.shape[1]}; scored on {int(mask.sum())} '
          f'lit px (shift, constant phase and phase ramp removed)')
    print(table(results))

    from ptycho.simulation import probe_relative_error

    output = args.output or RESULTS / f'compare_ptychi_{scan.name}.json'
    output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        'dataset': scan.name, 'description': scan.description,
        'n_positions': int(len(scan.positions_xy)), 'N': int(scan.probe.shape[-1]),
        'object_shape': list(scan.truth.shape),
        'probe_guess_relative_error': (None if scan.probe_true is None else round(
            probe_relative_error(scan.probe, scan.probe_true), 4)),
        'command': shlex.join(['.venv/bin/python', 'bench/compare_ptychi.py',
                               *(sys.argv[1:] if argv is None else argv)]),
        'load_average_1min_at_start': load_at_start, 'cpu_count': os.cpu_count(),
        # both sides run under it (pty-chi's subprocess inherits this process's environment)
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'scoring': {'lit_fraction': args.lit_fraction, 'lit_pixels': int(lit.sum()),
                    'scored_pixels': int(mask.sum()),
                    'steps': 'sub-pixel registration, linear phase ramp and constant phase '
                             'removed, amplitude scale fitted (ptycho.metrics.'
                             'evaluate_reconstruction, remove_ramp=True)',
                    'coverage_of_lit': {r.name: round(float((r.valid & lit).sum() / lit.sum()),
                                                      4) for r in results}},
        'methods': [{'name': r.name, 'seconds': round(r.seconds, 2),
                     **{k: v for k, v in r.info.items() if k != 'probe_out'},
                     'metrics': r.metrics} for r in results],
        'workdir': str(workdir),
    }
    tmp = output.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(report, indent=2, default=float))
    os.replace(tmp, output)
    print(f'wrote {output}')
    if not args.no_figure:
        png = output.with_suffix('.png')
        figure(results, scan.truth, mask, png)
        print(f'wrote {png}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
