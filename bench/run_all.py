"""Run the benchmarks that exist, one after another, and say what ran and where the JSON went.

    .venv/bin/python bench/run_all.py              # what `make bench` runs (about 10-20 min)
    .venv/bin/python bench/run_all.py --quick      # small sizes, a few minutes: does it all run?
    .venv/bin/python bench/run_all.py --quality    # also bench/quality.py --minutes 10, both
                                                   # backends (20 more minutes)
    .venv/bin/python bench/run_all.py --only speed plugin --dry-run

Each benchmark runs in its own process (``sys.executable``), so one backend's framework
state never leaks into the next measurement, and a failure does not stop the others; the
exit status is 1 when any failed. The benchmarks are:

* ``speed``: ``bench/speed.py`` for each backend (network throughput, inference and
  training) -> ``speed_<backend>.json``;
* ``plugin``: ``bench/plugin_latency.py`` (cold vs warm reconstruct through the Ptychodus
  plugin, both backends) -> ``plugin_latency.json``;
* ``gpu``: ``bench/gpu.py`` (both backends, N = 64 and 128, on a GPU when one is visible)
  -> ``gpu_<backend>_<device>.json``;
* ``quality`` (only with ``--quality``): ``bench/quality.py --minutes 10`` for each backend
  -> ``quality_<backend>_gridsize2.json``.

JSON goes to ``bench/results/`` (``--quick``: ``bench/results/quick/``, so a smoke run never
replaces the measured figures the README quotes; ``--results-dir`` chooses another place).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / 'bench'
BACKENDS = ('tensorflow', 'pytorch')
KINDS = ('speed', 'plugin', 'gpu', 'quality')


@dataclass
class Run:
    """One benchmark process: its command and the JSON files it is expected to write."""

    name: str
    command: list[str]
    outputs: list[Path] = field(default_factory=list)
    output_glob: str | None = None
    """For benchmarks that name their file after what they find (the device)."""
    status: str = 'not run'
    seconds: float = 0.0
    written: list[Path] = field(default_factory=list)


def plan(kinds: list[str], results: Path, quick: bool, quality_minutes: float) -> list[Run]:
    """The runs for ``kinds``, in order (``--quick``: small sizes)."""
    python = sys.executable
    runs: list[Run] = []
    if 'speed' in kinds:
        for backend in BACKENDS:
            out = results / f'speed_{backend}.json'
            runs.append(Run(f'speed ({backend})', [
                python, str(BENCH / 'speed.py'), '--backend', backend, '--output', str(out),
                *(['--batch-sizes', '1', '16'] if quick else [])], [out]))
    if 'plugin' in kinds:
        out = results / 'plugin_latency.json'
        runs.append(Run('plugin latency (both backends)', [
            python, str(BENCH / 'plugin_latency.py'), '--backend', 'both', '--json', str(out),
            *(['--patterns', '200'] if quick else [])], [out]))
    if 'gpu' in kinds:
        runs.append(Run('gpu (both backends)', [
            python, str(BENCH / 'gpu.py'), '--backend', 'both', '--output-dir', str(results),
            *(['--smoke'] if quick else [])], output_glob='gpu_*.json'))
    if 'quality' in kinds:
        for backend in BACKENDS:
            out = results / f'quality_{backend}_gridsize2.json'
            runs.append(Run(f'quality ({backend}, {quality_minutes:g} min)', [
                python, str(BENCH / 'quality.py'), '--backend', backend,
                '--minutes', f'{quality_minutes:g}', '--output', str(out),
                *(['--n-positions', '400'] if quick else [])], [out]))
    return runs


def execute(run: Run, results: Path) -> None:
    """Run one benchmark, streaming its output; record its status and the files it wrote."""
    print(f'\n=== {run.name}\n$ {shlex.join(run.command)}', flush=True)
    started_wall = time.time()
    tic = time.perf_counter()
    code = subprocess.call(run.command, cwd=ROOT)
    run.seconds = time.perf_counter() - tic
    run.status = 'ok' if code == 0 else f'failed (exit status {code})'
    candidates = list(run.outputs)
    if run.output_glob:
        candidates += sorted(results.glob(run.output_glob))
    run.written = [p for p in candidates if p.is_file() and p.stat().st_mtime >= started_wall - 1]


def summary(runs: list[Run]) -> str:
    lines = ['', 'benchmark                          status                 time   JSON']
    for run in runs:
        files = ', '.join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
                          for p in run.written) or '-'
        lines.append(f'{run.name:34s} {run.status:22s} {run.seconds:6.0f}s  {files}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Without --quality the 20-minute quality runs are skipped.')
    parser.add_argument('--quality', action='store_true',
                        help='also run bench/quality.py (--quality-minutes per backend)')
    parser.add_argument('--quality-minutes', type=float, default=10.0,
                        help='training budget of each quality run (default 10)')
    parser.add_argument('--quick', action='store_true',
                        help='small sizes (speed batch 1 and 16, 200 plugin patterns, gpu '
                             '--smoke, quality on 400 positions); JSON in bench/results/quick')
    parser.add_argument('--only', nargs='+', choices=KINDS, metavar='KIND',
                        help=f'run only these ({", ".join(KINDS)}; quality still needs '
                             f'--quality)')
    parser.add_argument('--results-dir', type=Path, default=None,
                        help='where the JSON goes (default bench/results, or '
                             'bench/results/quick with --quick)')
    parser.add_argument('--dry-run', action='store_true', help='print the commands only')
    args = parser.parse_args(argv)

    results = args.results_dir or BENCH / 'results' / ('quick' if args.quick else '')
    kinds = [k for k in (args.only or KINDS) if k != 'quality' or args.quality]
    if args.only and 'quality' in args.only and not args.quality:
        print('note: quality is skipped without --quality (it takes 20 minutes)')
    runs = plan(kinds, results, args.quick, args.quality_minutes)
    if args.dry_run:
        for run in runs:
            print(f'{run.name}: {shlex.join(run.command)}')
        return 0
    results.mkdir(parents=True, exist_ok=True)
    for run in runs:
        execute(run, results)
    print(summary(runs))
    if not args.quality:
        print('\n(quality benchmarks not run: add --quality for bench/quality.py --minutes '
              f'{args.quality_minutes:g}, both backends)')
    return 0 if all(run.status == 'ok' for run in runs) else 1


if __name__ == '__main__':
    raise SystemExit(main())
