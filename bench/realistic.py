"""The beamline-realistic benchmark of issue 13: train on one scan, reconstruct an unseen one.

For each preset of :data:`ptycho.simulation.REALISTIC_PRESETS` (the experimental probe
given as a perturbed guess, 1 px position errors, bad pixels, 500 positions, 1e4-1e6
photons) it writes the train and test scans as contract NPZ files (what ``ptychopinn
simulate --realistic`` writes), then for each backend does what a user does, through the
command line with the DEFAULT settings (only the data, the output folder, the backend and
the time budget are given):

    ptychopinn train --train-data TRAIN.npz --output-dir RUN --backend X --max-minutes M
    ptychopinn infer --model RUN/wts.h5.zip --test-data TEST.npz --output-dir INFER

and scores ``INFER/recon.npz`` against the test scan's truth with the scoring of
``bench/compare_ptychi.py`` (lit region of the given scan, covered pixels, sub-pixel
registration, constant phase and linear phase ramp removed: ``ptycho.metrics.
evaluate_reconstruction(remove_ramp=True)``). Prints a table; writes one JSON per preset and
backend, ``bench/results/realistic_<preset>_<backend>.json``.

    nice -n 10 .venv/bin/python bench/realistic.py                       # acceptance grid
    nice -n 10 .venv/bin/python bench/realistic.py --presets siemens-weak-64-1e6 \\
        --backends pytorch --minutes 3
    nice -n 10 .venv/bin/python bench/realistic.py --objects lines texture --N 128 \\
        --photons 1e4 --data-only

Issue 13's acceptance: at N = 64 and 128, both backends, <= 10 minutes of training on 2
cores: phase SSIM >= 0.90 and amplitude SSIM >= 0.85 at 1e6 photons (or pty-chi LSQML-100's,
``bench/compare_ptychi.py --preset``, if lower); better than pty-chi at 1e4.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # as compare_ptychi: the CLI inherits it

from compare_ptychi import COLUMNS, illumination, lit_region, score  # noqa: E402

logger = logging.getLogger('bench.realistic')

RESULTS = BENCH / 'results'
WORK = RESULTS / 'quick' / 'realistic'  # ignored by git: data and runs
BACKENDS = ('pytorch', 'tensorflow')
OBJECTS = ('siemens', 'lines', 'texture')
PHASES = ('weak', 'strong')
PATCH_SIZES = (64, 128)
PHOTONS = ('1e4', '1e5', '1e6')
ACCEPTANCE = {'phase_ssim': 0.90, 'amp_ssim': 0.85}  # at 1e6 photons


@dataclass
class RunResult:
    """One preset, one backend: timings, what the CLI said, the scores."""

    preset: str
    backend: str
    train_seconds: float = float('nan')
    infer_seconds: float = float('nan')
    load_at_train: float = float('nan')
    load_at_infer: float = float('nan')
    epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the JSON is committed)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_scans(preset: str, data_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """The preset's train and test NPZ (kept when present and ``force`` is off)."""
    from ptycho.simulation import realistic_preset, realistic_scan

    paths = []
    for split in ('train', 'test'):
        path = data_dir / f'{preset}_{split}.npz'
        if force or not path.exists():
            scan = realistic_scan(realistic_preset(preset, split))
            scan.to_file(path)
            logger.info('%s: %d patterns, probe guess error %.2f', path,
                        len(scan.positions_given), scan.probe_error)
        paths.append(path)
    return paths[0], paths[1]


def _cli(*words: str | Path, log: Path) -> float:
    """Run ``ptychopinn WORDS`` (this interpreter's package); seconds; output to ``log``."""
    command = [sys.executable, '-m', 'ptycho.cli', *(str(w) for w in words)]
    logger.info('$ %s', shlex.join(command))
    tic = time.perf_counter()
    with open(log, 'w') as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f'{shlex.join(command)} failed ({done.returncode}); log {log}:\n{tail}')
    return seconds


def score_run(recon_path: Path, test_path: Path, lit_fraction: float) -> tuple[dict[str, float],
                                                                              dict[str, Any]]:
    """Scores of ``recon.npz`` on the test scan's truth grid (see the module docstring)."""
    from ptycho.raw_data import RawData
    from ptycho.run_outputs import COVERED, crop_truth, load_reconstruction

    raw = RawData.from_file(test_path)
    assert raw.objectGuess is not None  # the realistic scans carry their truth
    recon = load_reconstruction(recon_path)
    if recon.origin_xy is None:
        raise RuntimeError(f'{recon_path}: no origin_xy; cannot place it on the truth')
    shape = np.asarray(recon.obj).shape
    truth, inside = crop_truth(raw.objectGuess, recon.origin_xy, shape)
    # What every method knows: the given positions and the probe guess, on the canvas.
    canvas_positions = raw.positions_xy - np.asarray(recon.origin_xy)
    lit = lit_region(illumination(shape, canvas_positions, raw.probeGuess), lit_fraction)
    mask = inside & lit
    if recon.coverage is not None:
        mask &= np.asarray(recon.coverage) >= COVERED
    if mask.sum() < 100:
        raise RuntimeError(f'{recon_path}: only {int(mask.sum())} scored pixels')
    metrics = score(np.asarray(recon.obj), truth, mask)
    return metrics, {'scored_pixels': int(mask.sum()), 'lit_pixels': int(lit.sum()),
                     'coverage_of_lit': round(float(mask.sum() / max(lit.sum(), 1)), 4),
                     'origin_xy': list(recon.origin_xy)}


def run_one(preset: str, backend: str, train_path: Path, test_path: Path, minutes: float,
            work: Path, lit_fraction: float) -> RunResult:
    """Train through the CLI (defaults, ``minutes`` budget), infer on the test scan, score."""
    result = RunResult(preset, backend)
    run_dir = work / 'runs' / preset / backend
    train_dir, infer_dir = run_dir / 'train', run_dir / 'infer'
    train_dir.mkdir(parents=True, exist_ok=True)
    infer_dir.mkdir(parents=True, exist_ok=True)
    result.load_at_train = round(os.getloadavg()[0], 2)
    result.train_seconds = _cli('train', '--train-data', train_path, '--output-dir', train_dir,
                                '--backend', backend, '--max-minutes', f'{minutes:g}',
                                log=run_dir / 'train.log')
    bundle = train_dir / 'wts.h5.zip'
    if not bundle.exists():
        raise RuntimeError(f'{backend}: training left no bundle {bundle}')
    history = train_dir / 'history.json'
    if history.exists():
        losses = json.loads(history.read_text()).get('train_loss') or []
        result.epochs = len(losses)
        result.info['train_loss_last'] = losses[-1] if losses else None
    result.load_at_infer = round(os.getloadavg()[0], 2)
    result.infer_seconds = _cli('infer', '--model', bundle, '--test-data', test_path,
                                '--output-dir', infer_dir, log=run_dir / 'infer.log')
    result.metrics, scoring = score_run(infer_dir / 'recon.npz', test_path, lit_fraction)
    result.info.update(scoring=scoring, run_dir=_shown(run_dir))
    return result


def table(results: list[RunResult]) -> str:
    """One row per preset and backend; seconds of the CLI processes, start-up included."""
    metric_columns = [c for c in COLUMNS if c[0] not in ('seconds', 'load')]
    head = (f'{"preset":<22}{"backend":<11}{"train s":>8}{"infer s":>8}{"epochs":>7}'
            + ' '.join(f'{h:>{len(f.format(0))}}' for _, h, f in metric_columns) + '  load')
    lines = [head, '-' * len(head)]
    for r in results:
        lines.append(f'{r.preset:<22}{r.backend:<11}{r.train_seconds:8.0f}{r.infer_seconds:8.1f}'
                     f'{r.epochs if r.epochs is not None else -1:7d}'
                     + ' '.join(f.format(r.metrics.get(k, float('nan')))
                                for k, _, f in metric_columns)
                     + f'  {r.load_at_train:.2f}/{r.load_at_infer:.2f}')
    return '\n'.join(lines)


def verdict(result: RunResult) -> str | None:
    """Issue 13's 1e6-photon threshold met or not (None for other photon counts)."""
    if not result.preset.endswith('-1e6'):
        return None
    met = all(result.metrics.get(k, 0.0) >= v for k, v in ACCEPTANCE.items())
    return 'met' if met else 'not met'


def preset_names(args: argparse.Namespace) -> list[str]:
    from ptycho.simulation import REALISTIC_PRESETS

    if args.presets:
        unknown = [p for p in args.presets if p not in REALISTIC_PRESETS]
        if unknown:
            raise SystemExit(f'realistic: unknown presets {unknown}; known: '
                             f'{sorted(REALISTIC_PRESETS)}')
        return list(args.presets)
    return [f'{o}-{p}-{n}-{ph}' for o, p, n, ph in
            itertools.product(args.objects, args.phases, args.N, args.photons)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--presets', nargs='*', default=None,
                        help='preset names (default: built from --objects/--phases/--N/--photons)')
    parser.add_argument('--objects', nargs='*', default=['siemens'], choices=OBJECTS)
    parser.add_argument('--phases', nargs='*', default=['weak'], choices=PHASES)
    parser.add_argument('--N', nargs='*', type=int, default=list(PATCH_SIZES),
                        choices=PATCH_SIZES)
    parser.add_argument('--photons', nargs='*', default=['1e4', '1e6'], choices=PHOTONS)
    parser.add_argument('--backends', nargs='*', default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument('--minutes', type=float, default=10.0,
                        help='training budget per backend (ptychopinn train --max-minutes)')
    parser.add_argument('--work', type=Path, default=WORK,
                        help='data and run folders (default: bench/results/quick/realistic)')
    parser.add_argument('--data-only', action='store_true',
                        help='write the scans and stop')
    parser.add_argument('--regenerate', action='store_true',
                        help='rewrite the scans even when present')
    parser.add_argument('--lit-fraction', type=float, default=0.1)
    parser.add_argument('--results', type=Path, default=RESULTS, help='where the JSON go')
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error('--minutes must be > 0')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    command = shlex.join(['.venv/bin/python', 'bench/realistic.py',
                          *(sys.argv[1:] if argv is None else argv)])

    presets = preset_names(args)
    data_dir = args.work / 'data'
    data_dir.mkdir(parents=True, exist_ok=True)
    scans = {p: write_scans(p, data_dir, args.regenerate) for p in presets}
    if args.data_only:
        for p, (train, test) in scans.items():
            print(f'{p}: {train} {test}')
        return 0

    results: list[RunResult] = []
    for preset in presets:
        train_path, test_path = scans[preset]
        for backend in args.backends:
            result = run_one(preset, backend, train_path, test_path, args.minutes, args.work,
                             args.lit_fraction)
            results.append(result)
            report = {
                'preset': preset, 'backend': backend, 'command': command,
                'settings': 'ptychopinn train/infer defaults; --max-minutes '
                            f'{args.minutes:g}',
                'train_data': _shown(train_path), 'test_data': _shown(test_path),
                'train_seconds': round(result.train_seconds, 1),
                'infer_seconds': round(result.infer_seconds, 2),
                'epochs': result.epochs,
                'load_average_1min_at_train': result.load_at_train,
                'load_average_1min_at_infer': result.load_at_infer,
                'cpu_count': os.cpu_count(), 'acceptance_1e6': verdict(result),
                'scoring': 'lit region of the given scan (illumination >= '
                           f'{args.lit_fraction} of its 99th percentile) covered by the '
                           'reconstruction; registration, constant phase and linear phase '
                           'ramp removed (ptycho.metrics.evaluate_reconstruction, '
                           'remove_ramp=True)',
                'metrics': result.metrics, **result.info,
            }
            out = args.results / f'realistic_{preset}_{backend}.json'
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix('.json.tmp')
            tmp.write_text(json.dumps(report, indent=2, default=float))
            os.replace(tmp, out)
            print(f'wrote {out}')
    print('\nUnseen test scan, scored (shift, constant phase and phase ramp removed; lit region)')
    print(table(results))
    for r in results:
        if verdict(r) is not None:
            print(f'{r.preset} {r.backend}: issue 13 threshold (phase SSIM >= 0.90, amplitude '
                  f'SSIM >= 0.85) {verdict(r)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
