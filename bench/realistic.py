"""The beamline-realistic benchmark of issue 13: train on one scan, reconstruct an unseen one.

For each preset of :data:`ptycho.simulation.REALISTIC_PRESETS` (the experimental probe
given as a perturbed guess, 1 px position errors, bad pixels, 500 positions, 1e4-1e6
photons) it writes the train and test scans as contract NPZ files (what ``ptychopinn
simulate --realistic`` writes), then for each backend does what a user does, through the
command line with the DEFAULT settings (only the data, the output folder, the backend and
the time budget are given):

    ptychopinn train --train-data TRAIN.npz --output-dir RUN --backend X --max-minutes M
    ptychopinn infer --model RUN/wts.h5.zip --test-data TEST.npz --output-dir INFER

(``--epochs N`` trains a fixed number of epochs instead of a time budget, so that settings
compare independently of the machine's load; ``--train-args`` / ``--infer-args`` add flags,
e.g. candidate defaults). It infers twice: the network alone (``--refine_epochs 0``), and
with infer's default physics refinement (or ``--refine_epochs K`` from ``--refine-epochs K``;
none when that is 0). Each ``recon.npz`` is scored against the test scan's truth with the scoring of
``bench/compare_ptychi.py`` (lit region of the given scan, covered pixels, sub-pixel
registration, constant phase and linear phase ramp removed: ``ptycho.metrics.
evaluate_reconstruction(remove_ramp=True)``). Prints a table; writes one JSON per preset and
backend, ``bench/results/realistic_<preset>_<backend>[_<tag>].json``, with the seconds,
CPU-seconds and 1-min load average of every epoch (read as the CLI logs each epoch) and, from
the CPU-seconds, an ESTIMATE of the epochs that fit in 10 minutes on a quiet 2-core machine.

    nice -n 10 .venv/bin/python bench/realistic.py                       # acceptance grid
    nice -n 10 .venv/bin/python bench/realistic.py --presets siemens-weak-64-1e6 \\
        --backends pytorch --minutes 3
    nice -n 10 .venv/bin/python bench/realistic.py --presets siemens-weak-64-1e6 \\
        --backends pytorch --epochs 15 --refine-epochs 20 --tag gs2 --train-args "--gridsize 2"
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
import re
import resource
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

from compare_ptychi import illumination, lit_region, score  # noqa: E402

logger = logging.getLogger('bench.realistic')

RESULTS = BENCH / 'results'
WORK = RESULTS / 'quick' / 'realistic'  # ignored by git: data and runs
BACKENDS = ('pytorch', 'tensorflow')
OBJECTS = ('siemens', 'lines', 'texture')
PHASES = ('weak', 'strong')
PATCH_SIZES = (64, 128)
PHOTONS = ('1e4', '1e5', '1e6')
ACCEPTANCE = {'phase_ssim': 0.90, 'amp_ssim': 0.85}  # at 1e6 photons


#: Seconds ``ptychopinn train`` spends before its first epoch on a quiet machine (imports,
#: data, back-projection input); taken off the 10 minutes in the epoch estimate.
QUIET_STARTUP_S = 20.0
QUIET_MINUTES = 10.0
#: A line the CLI logs at the end of an epoch: PyTorch ``epoch 3: ...``, TF ``epoch 4/50: ...``
#: (INFO) or Keras' summary ``30/30 - 13s - 434ms/step - loss: ...``.
EPOCH_LINE = re.compile(r'\bepoch \d+(?:/\d+)?: |^\d+/\d+ - [\d.]+m?s - ')


@dataclass
class EpochClock:
    """When each epoch ended, as the training process logged it: wall and CPU seconds since
    the process started, and the 1-min load average then (the machine is shared)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)

    def per_epoch(self) -> dict[str, Any]:
        """Median seconds and CPU-seconds per epoch after the first (which also pays for
        compilation and warm-up), the load beside them, and the ESTIMATE of the epochs in
        10 quiet minutes: CPU-seconds per epoch spread over 2 cores (a process alone on the
        machine keeps both busy), start-up taken off."""
        if len(self.wall) < 2:
            return {'epochs_timed': len(self.wall)}
        wall = float(np.median(np.diff(self.wall)))
        cpu = float(np.median(np.diff(self.cpu))) if len(self.cpu) == len(self.wall) else None
        out: dict[str, Any] = {
            'epochs_timed': len(self.wall), 'seconds_per_epoch': round(wall, 2),
            'first_epoch_seconds': round(self.wall[0], 1),
            'load_1min_during_epochs': [round(min(self.load), 2), round(max(self.load), 2)],
        }
        if cpu is not None and cpu > 0:
            quiet = cpu / 2
            out.update(cpu_seconds_per_epoch=round(cpu, 2),
                       quiet_seconds_per_epoch_estimate=round(quiet, 2),
                       epochs_in_10_quiet_minutes_estimate=int(
                           (QUIET_MINUTES * 60 - QUIET_STARTUP_S) // quiet))
        return out


@dataclass
class RunResult:
    """One preset, one backend, one setting: timings, what the CLI said, the scores."""

    preset: str
    backend: str
    tag: str = ''
    train_args: list[str] = field(default_factory=list)
    infer_args: list[str] = field(default_factory=list)
    train_seconds: float = float('nan')
    train_cpu_seconds: float = float('nan')
    infer_seconds: float = float('nan')
    refined_infer_seconds: float = float('nan')
    load_at_train: float = float('nan')
    load_at_infer: float = float('nan')
    epochs: int | None = None
    clock: EpochClock = field(default_factory=EpochClock)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_refined: dict[str, float] = field(default_factory=dict)
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux ``/proc``); NaN
    where ``/proc`` is not there."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _cli(*words: str | Path, log: Path, clock: EpochClock | None = None
         ) -> tuple[float, float]:
    """Run ``ptychopinn WORDS`` (this interpreter's package), its output to ``log``; wall and
    CPU seconds. With ``clock``, every epoch line the CLI logs is timed as it arrives."""
    command = [sys.executable, '-m', 'ptycho.cli', *(str(w) for w in words)]
    logger.info('$ %s', shlex.join(command))
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}  # epoch lines arrive when logged
    tic = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, 'w', buffering=1) as handle, subprocess.Popen(  # follow with tail -f
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
            text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            handle.write(line)
            if clock is not None and EPOCH_LINE.search(line):
                clock.wall.append(time.perf_counter() - tic)
                clock.cpu.append(_cpu_seconds(child.pid))
                clock.load.append(os.getloadavg()[0])
        returncode = child.wait()
    seconds = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f'{shlex.join(command)} failed ({returncode}); log {log}:\n{tail}')
    return seconds, cpu


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


@dataclass(frozen=True)
class RunPlan:
    """What every run of one invocation shares: the training length, the extra flags."""

    minutes: float | None
    epochs: int | None
    train_args: tuple[str, ...] = ()
    infer_args: tuple[str, ...] = ()
    refine_epochs: int = 0
    """Epochs of the second, refined inference (0: none)."""
    tag: str = ''

    def training_flags(self) -> list[str]:
        if self.epochs is not None:
            return ['--nepochs', str(self.epochs)]
        return ['--max-minutes', f'{self.minutes:g}']

    def describe(self) -> str:
        length = (f'--nepochs {self.epochs}' if self.epochs is not None
                  else f'--max-minutes {self.minutes:g}')
        extra = ''.join(f'; {what} {shlex.join(flags)}' for what, flags in
                        (('train', self.train_args), ('infer', self.infer_args)) if flags)
        return f'ptychopinn train/infer defaults; {length}{extra}'


def run_one(preset: str, backend: str, train_path: Path, test_path: Path, plan: RunPlan,
            work: Path, lit_fraction: float) -> RunResult:
    """Train through the CLI (defaults + the plan's flags), infer on the test scan (network
    alone, then refined when the plan says so), score."""
    result = RunResult(preset, backend, plan.tag, list(plan.train_args), list(plan.infer_args))
    run_dir = work / 'runs' / preset / (f'{backend}_{plan.tag}' if plan.tag else backend)
    train_dir, infer_dir = run_dir / 'train', run_dir / 'infer'
    train_dir.mkdir(parents=True, exist_ok=True)
    infer_dir.mkdir(parents=True, exist_ok=True)
    result.load_at_train = round(os.getloadavg()[0], 2)
    result.train_seconds, result.train_cpu_seconds = _cli(
        'train', '--train-data', train_path, '--output-dir', train_dir, '--backend', backend,
        *plan.training_flags(), *plan.train_args, log=run_dir / 'train.log', clock=result.clock)
    bundle = train_dir / 'wts.h5.zip'
    if not bundle.exists():
        raise RuntimeError(f'{backend}: training left no bundle {bundle}')
    history = train_dir / 'history.json'
    if history.exists():
        losses = json.loads(history.read_text()).get('train_loss') or []
        result.epochs = len(losses)
        result.info['train_loss_last'] = losses[-1] if losses else None
    result.load_at_infer = round(os.getloadavg()[0], 2)
    result.infer_seconds, _ = _cli('infer', '--model', bundle, '--test-data', test_path,
                                   '--output-dir', infer_dir, *plan.infer_args,
                                   '--refine_epochs', '0', log=run_dir / 'infer.log')
    result.metrics, scoring = score_run(infer_dir / 'recon.npz', test_path, lit_fraction)
    if plan.refine_epochs > 0:
        refined_dir = run_dir / f'infer_refine{plan.refine_epochs}'
        refined_dir.mkdir(parents=True, exist_ok=True)
        result.refined_infer_seconds, _ = _cli(
            'infer', '--model', bundle, '--test-data', test_path, '--output-dir', refined_dir,
            *plan.infer_args, '--refine_epochs', str(plan.refine_epochs),
            log=run_dir / 'infer_refined.log')
        result.metrics_refined, _ = score_run(refined_dir / 'recon.npz', test_path, lit_fraction)
    result.info.update(scoring=scoring, run_dir=_shown(run_dir))
    return result


TABLE_METRICS = (('amp_ssim', 'amp'), ('phase_ssim', 'phase'))


def table(results: list[RunResult]) -> str:
    """One row per run: seconds of the CLI processes (start-up included), seconds and
    CPU-seconds per epoch with the load beside them, SSIM of the network alone and refined."""
    head = (f'{"preset":<21}{"backend":<11}{"tag":<14}{"epochs":>6}{"train s":>8}{"s/ep":>6}'
            f'{"cpu/ep":>7}{"load":>10}{"infer s":>8}  {"SSIM net amp/ph":>15}'
            f'  {"refined amp/ph":>14}{"refine s":>9}')
    lines = [head, '-' * len(head)]
    for r in results:
        timing = r.clock.per_epoch()
        load = timing.get('load_1min_during_epochs', [r.load_at_train] * 2)
        net = '/'.join(f'{r.metrics.get(k, float("nan")):.3f}' for k, _ in TABLE_METRICS)
        refined = ('/'.join(f'{r.metrics_refined.get(k, float("nan")):.3f}'
                            for k, _ in TABLE_METRICS) if r.metrics_refined else '-')
        lines.append(
            f'{r.preset:<21}{r.backend:<11}{r.tag or "-":<14}'
            f'{r.epochs if r.epochs is not None else -1:6d}{r.train_seconds:8.0f}'
            f'{timing.get("seconds_per_epoch", float("nan")):6.1f}'
            f'{timing.get("cpu_seconds_per_epoch", float("nan")):7.1f}'
            f'{f"{load[0]:.1f}-{load[1]:.1f}":>10}{r.infer_seconds:8.1f}  {net:>15}'
            f'  {refined:>14}{r.refined_infer_seconds:9.1f}')
    return '\n'.join(lines)


def verdict(result: RunResult) -> str | None:
    """Issue 13's 1e6-photon threshold met or not (None for other photon counts), on the
    refined image when there is one (what infer gives with its defaults)."""
    if not result.preset.endswith('-1e6'):
        return None
    scores = result.metrics_refined or result.metrics
    met = all(scores.get(k, 0.0) >= v for k, v in ACCEPTANCE.items())
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
    length = parser.add_mutually_exclusive_group()
    length.add_argument('--minutes', type=float, default=None,
                        help='training budget per backend (ptychopinn train --max-minutes; '
                             'default 10)')
    length.add_argument('--epochs', type=int, default=None,
                        help='train exactly this many epochs (ptychopinn train --nepochs) '
                             'instead of a time budget: comparisons that do not depend on '
                             "the machine's load")
    parser.add_argument('--train-args', default='',
                        help='extra ptychopinn train flags, one shell-quoted string, e.g. '
                             '"--gridsize 2 --amp_activation softplus" (recorded in the JSON)')
    parser.add_argument('--infer-args', default='',
                        help='extra ptychopinn infer flags, one shell-quoted string')
    parser.add_argument('--refine-epochs', type=int, default=None,
                        help='epochs of the second, refined inference (infer --refine_epochs '
                             'K; default: infer\'s default; 0: the network alone only)')
    parser.add_argument('--tag', default='',
                        help='names this setting: runs/<preset>/<backend>_<tag>, '
                             'realistic_<preset>_<backend>_<tag>.json')
    parser.add_argument('--work', type=Path, default=WORK,
                        help='data and run folders (default: bench/results/quick/realistic)')
    parser.add_argument('--data-only', action='store_true',
                        help='write the scans and stop')
    parser.add_argument('--regenerate', action='store_true',
                        help='rewrite the scans even when present')
    parser.add_argument('--lit-fraction', type=float, default=0.1)
    parser.add_argument('--results', type=Path, default=RESULTS, help='where the JSON go')
    args = parser.parse_args(argv)
    if args.epochs is None and args.minutes is None:
        args.minutes = 10.0
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f'--minutes must be > 0, found {args.minutes}')
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be >= 1, found {args.epochs}')
    if args.refine_epochs is None:
        from ptycho.config.config import InferenceConfig

        args.refine_epochs = InferenceConfig.refine_epochs  # what a user's infer does
    if args.refine_epochs < 0:
        parser.error(f'--refine-epochs must be >= 0, found {args.refine_epochs}')
    if args.tag and not re.fullmatch(r'[\w.-]+', args.tag):
        parser.error(f'--tag: letters, digits, _ . - only, found {args.tag!r}')
    try:
        plan = RunPlan(args.minutes, args.epochs, tuple(shlex.split(args.train_args)),
                       tuple(shlex.split(args.infer_args)), args.refine_epochs, args.tag)
    except ValueError as error:
        parser.error(f'--train-args/--infer-args: {error}')
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
            result = run_one(preset, backend, train_path, test_path, plan, args.work,
                             args.lit_fraction)
            results.append(result)
            report = {
                'preset': preset, 'backend': backend, 'tag': plan.tag, 'command': command,
                'settings': plan.describe(),
                'train_args': list(plan.train_args), 'infer_args': list(plan.infer_args),
                'epochs_requested': plan.epochs, 'minutes_budget': plan.minutes,
                'train_data': _shown(train_path), 'test_data': _shown(test_path),
                'train_seconds': round(result.train_seconds, 1),
                'train_cpu_seconds': round(result.train_cpu_seconds, 1),
                'infer_seconds': round(result.infer_seconds, 2),
                'epochs': result.epochs,
                'timing': {**result.clock.per_epoch(),
                           'note': 'medians over epochs 2..; the quiet figures are an '
                                   'ESTIMATE (CPU-seconds per epoch / 2 cores, '
                                   f'{QUIET_STARTUP_S:g} s start-up), not a measurement'},
                'load_average_1min_at_train': result.load_at_train,
                'load_average_1min_at_infer': result.load_at_infer,
                'cpu_count': os.cpu_count(), 'acceptance_1e6': verdict(result),
                'scoring': 'lit region of the given scan (illumination >= '
                           f'{args.lit_fraction} of its 99th percentile) covered by the '
                           'reconstruction; registration, constant phase and linear phase '
                           'ramp removed (ptycho.metrics.evaluate_reconstruction, '
                           'remove_ramp=True)',
                'metrics': result.metrics,
                'refine_epochs': plan.refine_epochs,
                'metrics_refined': result.metrics_refined or None,
                'refined_infer_seconds': (round(result.refined_infer_seconds, 2)
                                          if result.metrics_refined else None),
                **result.info,
            }
            suffix = f'_{plan.tag}' if plan.tag else ''
            out = args.results / f'realistic_{preset}_{backend}{suffix}.json'
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix('.json.tmp')
            tmp.write_text(json.dumps(report, indent=2, default=float))
            os.replace(tmp, out)
            print(f'wrote {out}')
    print('\nUnseen test scan, scored (shift, constant phase and phase ramp removed; lit region);'
          f' net: infer --refine_epochs 0; refined: --refine_epochs {plan.refine_epochs}')
    print(table(results))
    for r in results:
        if verdict(r) is not None:
            print(f'{r.preset} {r.backend}: issue 13 threshold (phase SSIM >= 0.90, amplitude '
                  f'SSIM >= 0.85) {verdict(r)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
