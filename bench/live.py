"""Live-scan benchmark: how fast a stream of patterns becomes a stitched image.

A simulated detector releases the patterns of a scan at a chosen rate (arrival times on a
clock; the consumer takes whatever has arrived, up to ``--max-chunk`` at a time, and feeds
it to a :class:`ptycho.workflows.streaming.ScanStream`). Per backend it prints:

1. **per-chunk cost**: the scan fed in K equal chunks as fast as possible, seconds of each
   chunk (flat when the work per pattern does not grow with the image);
2. **latency at rates**: for each ``--rates`` value, p50/p99 of (time the pattern first
   shows in the image, i.e. the first group holding it is stitched - the pattern's
   arrival; the groups still waiting when the scan ends are stitched by
   ``ScanStream.finish``), and whether the rate was sustained (the stream kept up: achieved
   rate >= 95 % of the offered one and the backlog at the end below one chunk); beside it,
   how long after the last arrival the final image was ready (``close``: every crop again
   with the phases aligned over all overlaps);
3. **sustained rate**: the highest rate sustained, found by bisection between the rates;
4. **whole scan**: the scan reconstructed in one chunk (seconds, patterns/s, and the
   process's CPU seconds, which a busy machine inflates far less than the wall clock).

The 1-min load average is printed beside each figure: on a shared machine the wall-clock
figures mean little unless it is below the core count. ``--tiling partition`` streams
with the partition tiling (:data:`ptycho.config.config.TILINGS`: about 2.5x fewer
groups at gridsize 2, at some quality). ``--N 64 128`` runs both patch sizes in one go.

    .venv/bin/python bench/live.py --backend pytorch --N 64 128
    .venv/bin/python bench/live.py --backend tensorflow --N 128 --model RUN/wts.h5.zip
    .venv/bin/python bench/live.py --backend pytorch --model RUN/wts.h5.zip --quality

``--quality`` (a trained N = 64 model) instead reconstructs the standard benchmark's test
scan whole with each tiling and scores it as ``bench/quality.py`` does: the quality each
tiling costs, beside its time.

Without ``--model`` a model is trained for one epoch on a small simulated scan: the cost
of a reconstruction does not depend on the weights. JSON in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
from ptycho.config.config import (  # noqa: E402
    INFERENCE_PRECISIONS,
    TILINGS,
    ModelConfig,
    TrainingConfig,
)
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


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _stream(backend: Backend, model: LoadedModel, scan: Any, batch_size: int,
            plan: bool, settings: dict[str, Any]) -> ScanStream:
    config = inference_config_for(model, batch_size=batch_size, **settings)
    return ScanStream(backend, model, config, scan.probeGuess,
                      plan=_positions(scan) if plan else None)


def per_chunk_cost(backend: Backend, model: LoadedModel, scan: Any, chunks: int,
                   batch_size: int, plan: bool, settings: dict[str, Any]
                   ) -> tuple[list[float], list[int], list[float]]:
    """Seconds, groups completed and process CPU-seconds of each of ``chunks`` equal
    chunks: the first chunk completes fewer groups (partners of its last patterns arrive
    later), the last one completes all that waited; the cost per group is what must stay
    flat (CPU-seconds tell more work from a busy machine)."""
    stream = _stream(backend, model, scan, batch_size, plan, settings)
    edges = np.linspace(0, len(scan.xcoords), chunks + 1).astype(int)
    positions = _positions(scan)
    seconds, groups, cpu = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        before = time.process_time()
        status = stream.add(scan.diff3d[a:b], positions[a:b])
        cpu.append(time.process_time() - before)
        seconds.append(status.chunk_seconds)
        groups.append(status.groups - sum(groups))
    stream.close()
    return seconds, groups, cpu


def run_at_rate(backend: Backend, model: LoadedModel, scan: Any, rate: float,
                max_chunk: int, batch_size: int, plan: bool, settings: dict[str, Any]
                ) -> dict[str, Any]:
    """Release the scan's patterns at ``rate`` per second; time each one into the image."""
    stream = _stream(backend, model, scan, batch_size, plan, settings)
    n = len(scan.xcoords)
    positions = _positions(scan)
    arrival = np.arange(n) / rate
    in_image = np.full(n, np.nan)
    taken = 0
    start = time.perf_counter()

    def first_shown(status: Any) -> None:
        """Now, for the patterns of the groups just stitched that were not in the image."""
        placed = np.asarray(status.members, np.int64)
        in_image[placed[np.isnan(in_image[placed])]] = time.perf_counter() - start

    while taken < n:
        now = time.perf_counter() - start
        arrived = int(np.searchsorted(arrival, now, side='right'))
        if arrived <= taken:
            time.sleep(min(arrival[taken] - now, 0.05))
            continue
        upto = min(arrived, taken + max_chunk)
        first_shown(stream.add(scan.diff3d[taken:upto], positions[taken:upto]))
        taken = upto
    first_shown(stream.finish())  # the groups still waiting, stitched
    stream.close()  # the final image: every crop again, phases aligned over all overlaps
    final = time.perf_counter() - start
    in_image[np.isnan(in_image)] = final
    latency = in_image - arrival
    elapsed = float(in_image.max())
    backlog = n - int(np.sum(in_image <= arrival[-1] + 1e-9))
    achieved = n / max(elapsed, 1e-9)
    return {'rate': rate, 'achieved_rate': round(achieved, 1),
            'latency_p50_s': round(float(np.percentile(latency, 50)), 4),
            'latency_p99_s': round(float(np.percentile(latency, 99)), 4),
            'backlog_at_last_arrival': backlog,
            'final_image_after_last_arrival_s': round(final - float(arrival[-1]), 3),
            'sustained': bool(achieved >= 0.95 * rate and backlog < max_chunk),
            'load_average_1min': _load()}


def whole_scan(backend: Backend, model: LoadedModel, scan: Any, batch_size: int,
               settings: dict[str, Any]) -> dict[str, float]:
    from ptycho.workflows.streaming import reconstruct_scan

    config = inference_config_for(model, batch_size=batch_size, **settings)
    tic, cpu = time.perf_counter(), time.process_time()
    result = reconstruct_scan(backend, model, scan, config)
    seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
    return {'seconds': round(seconds, 2), 'patterns_per_s': round(len(scan.xcoords) / seconds, 1),
            'cpu_seconds': round(cpu, 2), 'groups': len(result.groups.positions_xy),
            'load_average_1min': _load(),
            **{k: round(v, 2) for k, v in result.timings.items()}}


def warm_up(backend: Backend, model: LoadedModel, N: int, batch_size: int,
            settings: dict[str, Any]) -> None:
    """First-call costs out of the figures: kernel selection, graph tracing and the XLA
    compilation of every batch shape a stream can send (on a CPU one XLA shape per patch
    size, and Keras traces for any batch after two; where the back-projection compiles per
    batch, the batch size and the powers of two from 8 below it:
    ``ptycho.tf.workflows.prediction_batches``)."""
    from ptycho.simulation import simulate_dataset
    from ptycho.workflows.streaming import reconstruct_scan

    config = inference_config_for(model, batch_size=batch_size, **settings)
    size = 8
    while True:
        scan = simulate_dataset(N=N, n_positions=max(size, 8), seed=3)
        reconstruct_scan(backend, model, scan, config)
        if size >= batch_size:
            break
        size *= 2


def run_one(args: argparse.Namespace, backend: Backend, N: int, argv: list[str] | None
            ) -> dict[str, Any]:
    """Every figure for one patch size; prints them and returns the JSON record."""
    from ptycho.simulation import simulate_dataset

    load_at_start = _load()
    n = args.positions or (2000 if N == 64 else 516)
    scan = simulate_dataset(N=N, n_positions=n, seed=2)
    with tempfile.TemporaryDirectory(prefix='live_') as tmp:
        model = (backend.load(args.model) if args.model is not None
                 else quick_model(backend, N, args.gridsize, Path(tmp)))
    if model.config.model.N != N:
        raise SystemExit(f'--model was trained on N={model.config.model.N}, not --N {N}')
    settings = {'tiling': args.tiling, 'inference_precision': args.inference_precision[0]}
    tiling = args.tiling
    tic = time.perf_counter()
    warm_up(backend, model, N, args.batch_size, settings)
    warm_seconds = time.perf_counter() - tic
    plan = not args.no_plan
    results: dict[str, Any] = {
        'backend': args.backend, 'N': N, 'gridsize': model.config.model.gridsize,
        'positions': n, 'batch_size': args.batch_size, 'max_chunk': args.max_chunk,
        'scan_plan_known': plan, 'tiling': tiling,
        'inference_precision': settings['inference_precision'],
        'model': str(args.model) if args.model else 'one-epoch quick model',
        'cpu_count': os.cpu_count(), 'load_average_1min_at_start': load_at_start,
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'gomp_spincount': os.environ.get('GOMP_SPINCOUNT'),
        'warm_up_seconds': round(warm_seconds, 1),
        'command': ' '.join(['.venv/bin/python', 'bench/live.py', *(sys.argv[1:] if argv is None
                                                                   else argv)])}
    chunk_seconds, chunk_groups, chunk_cpu = per_chunk_cost(backend, model, scan, args.chunks,
                                                            args.batch_size, plan, settings)
    results['per_chunk_seconds'] = [round(s, 3) for s in chunk_seconds]
    results['per_chunk_groups'] = chunk_groups
    results['per_chunk_cpu_seconds'] = [round(s, 3) for s in chunk_cpu]
    results['per_chunk_load_average_1min'] = _load()
    print(f'{args.backend} N={N} gridsize={results["gridsize"]} tiling={tiling} '
          f'precision={settings["inference_precision"]}: {n} '
          f'patterns in {args.chunks} chunks of ~{n // args.chunks} (load {load_at_start}; '
          f'warm-up {warm_seconds:.1f} s)')
    for k, (seconds, groups, cpu) in enumerate(zip(chunk_seconds, chunk_groups, chunk_cpu), 1):
        per_group = (f'{1e3 * seconds / groups:6.1f} ms/group, {1e3 * cpu / groups:6.1f} '
                     f'CPU-ms/group' if groups else '')
        print(f'  chunk {k:2d}: {seconds:6.3f} s, {groups:4d} groups {per_group}')
    print(f'  (load {results["per_chunk_load_average_1min"]})')
    rows = []

    def offer(rate: float) -> dict[str, Any]:
        row = run_at_rate(backend, model, scan, rate, args.max_chunk, args.batch_size, plan,
                          settings)
        rows.append(row)
        print(f'  offered {rate:7.1f}/s: achieved {row["achieved_rate"]:7.1f}/s, latency p50 '
              f'{row["latency_p50_s"]:.3f} s, p99 {row["latency_p99_s"]:.3f} s, '
              f'{"sustained" if row["sustained"] else "NOT sustained"}, final image '
              f'{row["final_image_after_last_arrival_s"]:.2f} s after the last arrival '
              f'(load {row["load_average_1min"]})')
        return row

    for rate in sorted(args.rates):
        offer(rate)
    ok = [r['rate'] for r in rows if r['sustained']]
    bad = [r['rate'] for r in rows if not r['sustained']]
    low, high = (max(ok) if ok else 0.0), (min(bad) if bad else None)
    if high is not None and low > 0:
        for _ in range(4):  # bisection between the last sustained and first failed rate
            mid = round((low + high) / 2, 1)
            low, high = (mid, high) if offer(mid)['sustained'] else (low, mid)
    results['rates'] = rows
    results['sustained_rate'] = low
    whole = results['whole_scan'] = whole_scan(backend, model, scan, args.batch_size,
                                               settings)
    print(f'  highest sustained rate: {low:.1f} patterns/s')
    print(f'  whole scan in one chunk: {whole["seconds"]:.2f} s '
          f'({whole["patterns_per_s"]:.1f} patterns/s, {whole["groups"]} groups, '
          f'{whole["cpu_seconds"]:.1f} CPU-s; load {whole["load_average_1min"]})')
    return results


def tiling_quality(backend: Backend, model: LoadedModel, batch_size: int,
                   precisions: list[str]) -> dict[str, Any]:
    """The standard test scan reconstructed whole with each tiling and each inference
    precision, scored as ``bench/quality.py`` scores it (amplitude/phase SSIM, PSNR,
    FRC50), with its time. Rows are keyed by the tiling, followed by the precision where
    it is not 'trained'."""
    import importlib.util

    from ptycho.physics import default_crop
    from ptycho.simulation import standard_dataset
    from ptycho.workflows.streaming import reconstruct_scan

    spec = importlib.util.spec_from_file_location('bench_quality',
                                                  Path(__file__).with_name('quality.py'))
    assert spec is not None and spec.loader is not None
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    scan = standard_dataset('test')
    config = inference_config_for(model, batch_size=batch_size)
    M = default_crop(model.config.model.require_size())
    reconstruct_scan(backend, model, standard_dataset('test', n_positions=64), config)  # warm
    out: dict[str, Any] = {}
    for tiling, precision in itertools.product(TILINGS, precisions):
        run = dataclasses.replace(config, tiling=tiling, inference_precision=precision)
        reconstruct_scan(backend, model, standard_dataset('test', n_positions=64), run)  # warm
        tic, cpu = time.perf_counter(), time.process_time()
        result = reconstruct_scan(backend, model, scan, run)
        seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
        scores = quality.score(scan, {'image': result.obj, 'coverage': result.coverage,
                                      'origin_xy': result.origin_xy}, M)
        key = tiling if precision == 'trained' else f'{tiling} {precision}'
        row = out[key] = {'groups': len(result.groups.positions_xy),
                             'seconds': round(seconds, 2), 'cpu_seconds': round(cpu, 2),
                             'load_average_1min': _load(),
                             **{k: round(v, 4) for k, v in scores.items()}}
        print(f'  {key:18s}: {row["groups"]:5d} groups, {seconds:6.2f} s '
              f'({cpu:.1f} CPU-s, load {row["load_average_1min"]}), amplitude SSIM '
              f'{row["amp_ssim"]:.3f} PSNR {row["amp_psnr"]:.1f}, phase SSIM '
              f'{row["phase_ssim"]:.3f} PSNR {row["phase_psnr"]:.1f}')
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backend', default='pytorch', choices=('pytorch', 'tensorflow'))
    parser.add_argument('--N', type=int, nargs='+', default=[64], choices=(64, 128))
    parser.add_argument('--gridsize', type=int, default=2, choices=(1, 2))
    parser.add_argument('--model', type=Path, default=None,
                        help='a trained bundle to use (one --N only)')
    parser.add_argument('--positions', type=int, default=None,
                        help='scan length (default: 2000 at N=64, 516 at N=128)')
    parser.add_argument('--chunks', type=int, default=10, help='chunks of the per-chunk run')
    parser.add_argument('--rates', type=float, nargs='+', default=[50, 150, 500],
                        help='patterns per second offered by the simulated detector')
    parser.add_argument('--max-chunk', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--tiling', default='seeds', choices=TILINGS,
                        help='how groups are formed (InferenceConfig.tiling)')
    parser.add_argument('--inference-precision', nargs='+', default=['trained'],
                        choices=INFERENCE_PRECISIONS,
                        help="the network's arithmetic (InferenceConfig.inference_precision); "
                             'several only with --quality, which scores each')
    parser.add_argument('--no-plan', action='store_true',
                        help='positions arrive with the patterns (groups wait --lookahead)')
    parser.add_argument('--quality', action='store_true',
                        help='score each tiling on the standard test scan (needs --model)')
    parser.add_argument('--output', type=Path, default=None,
                        help='JSON file (one --N only; default bench/results/live_*.json)')
    args = parser.parse_args(argv)
    if len(args.N) > 1 and (args.model is not None or args.output is not None):
        parser.error('--model and --output name one patch size: give one --N with them')
    if len(args.inference_precision) > 1 and not args.quality:
        parser.error('several --inference-precision values only with --quality')
    if args.quality and (args.model is None or args.N != [64]):
        parser.error('--quality scores the standard N = 64 test scan: give --model (N = 64)')
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(name)s: %(message)s')
    backend = get_backend(args.backend)
    if args.quality:
        print(f'{args.backend}: standard test scan (2,000 positions) by tiling, {args.model} '
              f'(load {_load()})')
        results = {'backend': args.backend, 'model': str(args.model),
                   'batch_size': args.batch_size, 'cpu_count': os.cpu_count(),
                   'load_average_1min_at_start': _load(),
                   'command': ' '.join(['.venv/bin/python', 'bench/live.py',
                                        *(sys.argv[1:] if argv is None else argv)]),
                   'tilings': tiling_quality(backend, backend.load(args.model),
                                             args.batch_size, args.inference_precision)}
        output = args.output or (Path(__file__).parent / 'results'
                                 / f'live_tiling_quality_{args.backend}.json')
        write_text(output, json.dumps(results, indent=2))
        print(f'wrote {output}')
        return 0
    for N in args.N:
        results = run_one(args, backend, N, argv)
        suffix = '' if args.tiling == 'seeds' else f'_{args.tiling}'
        if args.inference_precision[0] != 'trained':
            suffix += f'_{args.inference_precision[0]}'
        output = args.output or (Path(__file__).parent / 'results'
                                 / f'live_{args.backend}_N{N}{suffix}.json')
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text(output, json.dumps(results, indent=2))
        print(f'wrote {output}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
