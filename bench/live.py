"""Live-scan benchmark: how fast a stream of patterns becomes a stitched image.

A simulated detector releases the patterns of a scan at a chosen rate (arrival times on a
clock; the consumer takes whatever has arrived, up to ``--max-chunk`` at a time, and feeds
it to a :class:`ptycho.workflows.streaming.ScanStream`). Per backend it prints:

1. **per-chunk cost**: the scan fed in K equal chunks as fast as possible, seconds of each
   chunk (flat when the work per pattern does not grow with the image);
2. **latency at rates**: for each ``--rates`` value, p50/p99 of (time the pattern's group
   is in the image - the pattern's arrival), and whether the rate was sustained (the
   stream kept up: achieved rate >= 95 % of the offered one and the backlog at the end
   below one chunk);
3. **sustained rate**: the highest rate sustained, found by bisection between the rates;
4. **whole scan**: the standard scan reconstructed in one chunk (seconds, patterns/s).

    .venv/bin/python bench/live.py --backend pytorch --N 64
    .venv/bin/python bench/live.py --backend tensorflow --N 128 --model RUN/wts.h5.zip

Without ``--model`` a model is trained for one epoch on a small simulated scan: the cost
of a reconstruction does not depend on the weights. JSON in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads OpenMP

from ptycho.atomic import write_text  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig  # noqa: E402
from ptycho.workflows.backend_selector import get_backend  # noqa: E402
from ptycho.workflows.contract import Backend, LoadedModel, inference_config_for  # noqa: E402
from ptycho.workflows.streaming import ScanStream  # noqa: E402

logger = logging.getLogger('bench.live')


def quick_model(backend: Backend, N: int, gridsize: int, workdir: Path) -> LoadedModel:
    """A model of the benchmark's architecture after one epoch on 64 simulated positions."""
    from ptycho.simulation import simulate_dataset

    train = simulate_dataset(N=N, n_positions=64, seed=1)
    config = TrainingConfig(model=ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1,
                                              amp_activation='softplus'),
                            nepochs=1, batch_size=16, output_dir=workdir, backend=backend.name,
                            logger='none', validation_split=0.0, accelerator='cpu')
    return backend.train(train, None, config).model


def _positions(scan: Any) -> np.ndarray:
    return np.stack([scan.xcoords, scan.ycoords], axis=1).astype(np.float64)


def _stream(backend: Backend, model: LoadedModel, scan: Any, batch_size: int,
            plan: bool) -> ScanStream:
    config = inference_config_for(model, batch_size=batch_size)
    return ScanStream(backend, model, config, scan.probeGuess,
                      plan=_positions(scan) if plan else None)


def per_chunk_cost(backend: Backend, model: LoadedModel, scan: Any, chunks: int,
                   batch_size: int, plan: bool) -> list[float]:
    stream = _stream(backend, model, scan, batch_size, plan)
    edges = np.linspace(0, len(scan.xcoords), chunks + 1).astype(int)
    positions = _positions(scan)
    seconds = []
    for a, b in zip(edges[:-1], edges[1:]):
        seconds.append(stream.add(scan.diff3d[a:b], positions[a:b]).chunk_seconds)
    stream.close()
    return seconds


def run_at_rate(backend: Backend, model: LoadedModel, scan: Any, rate: float,
                max_chunk: int, batch_size: int, plan: bool) -> dict[str, Any]:
    """Release the scan's patterns at ``rate`` per second; time each one into the image."""
    stream = _stream(backend, model, scan, batch_size, plan)
    n = len(scan.xcoords)
    positions = _positions(scan)
    arrival = np.arange(n) / rate
    in_image = np.full(n, np.nan)
    taken = 0
    start = time.perf_counter()
    while taken < n:
        now = time.perf_counter() - start
        arrived = int(np.searchsorted(arrival, now, side='right'))
        if arrived <= taken:
            time.sleep(min(arrival[taken] - now, 0.05))
            continue
        upto = min(arrived, taken + max_chunk)
        status = stream.add(scan.diff3d[taken:upto], positions[taken:upto])
        # Group i is seeded at pattern i: patterns whose group entered the image now.
        in_image[list(status.seeds)] = time.perf_counter() - start
        taken = upto
    stream.close()
    in_image[np.isnan(in_image)] = time.perf_counter() - start
    latency = in_image - arrival
    elapsed = float(in_image.max())
    backlog = n - int(np.sum(in_image <= arrival[-1] + 1e-9))
    achieved = n / max(elapsed, 1e-9)
    return {'rate': rate, 'achieved_rate': round(achieved, 1),
            'latency_p50_s': round(float(np.percentile(latency, 50)), 4),
            'latency_p99_s': round(float(np.percentile(latency, 99)), 4),
            'backlog_at_last_arrival': backlog,
            'sustained': bool(achieved >= 0.95 * rate and backlog < max_chunk)}


def whole_scan(backend: Backend, model: LoadedModel, scan: Any, batch_size: int
               ) -> dict[str, float]:
    from ptycho.workflows.streaming import reconstruct_scan

    config = inference_config_for(model, batch_size=batch_size)
    tic = time.perf_counter()
    result = reconstruct_scan(backend, model, scan, config)
    seconds = time.perf_counter() - tic
    return {'seconds': round(seconds, 2), 'patterns_per_s': round(len(scan.xcoords) / seconds, 1),
            **{k: round(v, 2) for k, v in result.timings.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backend', default='pytorch', choices=('pytorch', 'tensorflow'))
    parser.add_argument('--N', type=int, default=64, choices=(64, 128))
    parser.add_argument('--gridsize', type=int, default=2, choices=(1, 2))
    parser.add_argument('--model', type=Path, default=None, help='a trained bundle to use')
    parser.add_argument('--positions', type=int, default=None,
                        help='scan length (default: 2000 at N=64, 516 at N=128)')
    parser.add_argument('--chunks', type=int, default=10, help='chunks of the per-chunk run')
    parser.add_argument('--rates', type=float, nargs='+', default=[50, 150, 500],
                        help='patterns per second offered by the simulated detector')
    parser.add_argument('--max-chunk', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--no-plan', action='store_true',
                        help='positions arrive with the patterns (groups wait --lookahead)')
    parser.add_argument('--output', type=Path, default=None)
    args = parser.parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(name)s: %(message)s')

    from ptycho.simulation import simulate_dataset

    backend = get_backend(args.backend)
    n = args.positions or (2000 if args.N == 64 else 516)
    scan = simulate_dataset(N=args.N, n_positions=n, seed=2)
    with tempfile.TemporaryDirectory(prefix='live_') as tmp:
        model = (backend.load(args.model) if args.model is not None
                 else quick_model(backend, args.N, args.gridsize, Path(tmp)))
    if model.config.model.N != args.N:
        parser.error(f'--model was trained on N={model.config.model.N}, not --N {args.N}')
    # Warm up (first-call kernel selection, graph tracing) on a few patterns.
    plan = not args.no_plan
    per_chunk_cost(backend, model, simulate_dataset(N=args.N, n_positions=48, seed=3), 2,
                   args.batch_size, plan)
    results: dict[str, Any] = {
        'backend': args.backend, 'N': args.N, 'gridsize': model.config.model.gridsize,
        'positions': n, 'batch_size': args.batch_size, 'max_chunk': args.max_chunk,
        'scan_plan_known': plan,
        'model': str(args.model) if args.model else 'one-epoch quick model',
        'cpu_count': os.cpu_count(), 'load_average_1min_at_start': load_at_start,
        'command': ' '.join(['.venv/bin/python', 'bench/live.py', *(sys.argv[1:] if argv is None
                                                                   else argv)])}
    chunk_seconds = per_chunk_cost(backend, model, scan, args.chunks, args.batch_size, plan)
    results['per_chunk_seconds'] = [round(s, 3) for s in chunk_seconds]
    print(f'{args.backend} N={args.N} gridsize={results["gridsize"]}: {n} patterns in '
          f'{args.chunks} chunks of ~{n // args.chunks}')
    for k, seconds in enumerate(chunk_seconds, 1):
        print(f'  chunk {k:2d}: {seconds:6.3f} s')
    rows = []
    for rate in sorted(args.rates):
        row = run_at_rate(backend, model, scan, rate, args.max_chunk, args.batch_size, plan)
        rows.append(row)
        print(f'  offered {rate:7.1f}/s: achieved {row["achieved_rate"]:7.1f}/s, latency p50 '
              f'{row["latency_p50_s"]:.3f} s, p99 {row["latency_p99_s"]:.3f} s, '
              f'{"sustained" if row["sustained"] else "NOT sustained"}')
    results['rates'] = rows
    ok = [r['rate'] for r in rows if r['sustained']]
    bad = [r['rate'] for r in rows if not r['sustained']]
    low, high = (max(ok) if ok else 0.0), (min(bad) if bad else None)
    if high is not None and low > 0:
        for _ in range(4):  # bisection between the last sustained and first failed rate
            mid = round((low + high) / 2, 1)
            row = run_at_rate(backend, model, scan, mid, args.max_chunk, args.batch_size, plan)
            rows.append(row)
            low, high = (mid, high) if row['sustained'] else (low, mid)
    results['sustained_rate'] = low
    results['whole_scan'] = whole_scan(backend, model, scan, args.batch_size)
    print(f'  highest sustained rate: {low:.1f} patterns/s')
    print(f'  whole scan in one chunk: {results["whole_scan"]["seconds"]:.2f} s '
          f'({results["whole_scan"]["patterns_per_s"]:.1f} patterns/s)')
    output = args.output or (Path(__file__).parent / 'results'
                             / f'live_{args.backend}_N{args.N}.json')
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, json.dumps(results, indent=2))
    print(f'wrote {output}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
