"""Physics refinement's time per backend and thread count, on the realistic benchmark.

Refinement's operations are small (16 patterns, a canvas of ~10^5 pixels). Under this
package's passive OpenMP wait each parallel operation wakes sleeping threads, so the torch
refinement runs with one intra-op thread (``ptycho_torch.refine``); this benchmark is the
measurement behind that rule. It refines the unseen test scan of a realistic preset from a
flat start (no model needed) for a few epochs with torch at 1 and 2 threads, and with
TensorFlow (its own thread pool), optionally beside K busy processes (``--load K``) to see
a shared machine. Prints a table; JSON in ``bench/results/refine_threads.json``.

    .venv/bin/python bench/refine_threads.py [--presets siemens-weak-64-1e4 ...] \\
        [--epochs 5] [--load 0]

Run it with nothing else on the machine (the load is recorded beside each figure); set
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` in the environment to measure other wait policies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # as the package sets it

RESULTS = BENCH / 'results'


def _busy() -> None:
    while True:
        pass


def _flat_start(preset: str) -> tuple[Any, Any]:
    """The preset's test scan and a flat object over its field of view."""
    import numpy as np

    from ptycho.simulation import realistic_preset, realistic_scan
    from ptycho.workflows.contract import GroupObjects, Reconstruction

    simulated = realistic_scan(realistic_preset(preset, 'test'))
    shape = simulated.object.shape
    N = simulated.probe.shape[-1]
    empty = GroupObjects(patches=np.zeros((0, N, N), np.complex64), positions_xy=np.zeros((0, 2)))
    recon = Reconstruction(obj=np.ones(shape, np.complex64),
                           coverage=np.ones(shape, np.float32), origin_xy=(0.0, 0.0), M=1,
                           backend='none', groups=empty)
    return simulated.raw_data(), recon


def _time_torch(scan: Any, recon: Any, config: Any, threads: int) -> tuple[float, float]:
    """``ptycho_torch.refine.refine``'s work (prepare, optimise, finish) at ``threads``
    intra-op threads, bypassing its own choice of threads."""
    import torch

    from ptycho import refinement
    from ptycho_torch.refine import optimise

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tic = time.perf_counter()
        problem = refinement.prepare(scan, recon, config)
        obj, probe, losses, positions = optimise(problem, torch.device('cpu'))
        refinement.finish(problem, recon, obj, probe, losses, 0.0, positions)
        return time.perf_counter() - tic, losses[-1]
    finally:
        torch.set_num_threads(before)


def _time_refine(backend: str, scan: Any, recon: Any, config: Any) -> tuple[float, float]:
    """The backend's ``refine`` as users get it (the torch one picks its threads)."""
    if backend == 'pytorch':
        from ptycho_torch.refine import refine
    else:
        from ptycho.tf.refine import refine

    tic = time.perf_counter()
    result = refine(scan, recon, config)
    return time.perf_counter() - tic, result.losses[-1]


METHODS: tuple[tuple[str, int | None], ...] = (
    ('pytorch', None), ('pytorch', 1), ('pytorch', 2), ('tensorflow', None))
"""What is timed: torch's ``refine`` as it runs by default, then forced to 1 and 2 intra-op
threads; TensorFlow with its own thread pool."""


def _time(backend: str, threads: int | None, scan: Any, recon: Any,
          config: Any) -> tuple[float, float]:
    if backend == 'pytorch' and threads is not None:
        return _time_torch(scan, recon, config, threads)
    return _time_refine(backend, scan, recon, config)


def run(presets: list[str], epochs: int, load: int) -> dict[str, Any]:
    from ptycho.config.config import InferenceConfig

    config = InferenceConfig(refine_epochs=epochs, device='cpu')
    warm = dataclasses.replace(config, refine_epochs=1)
    workers = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(load)]
    for worker in workers:
        worker.start()
    rows = []
    try:
        for preset in presets:
            scan, recon = _flat_start(preset)
            for backend, threads in METHODS:
                name = (f'{backend}, default' if threads is None
                        else f'{backend}, {threads} thread(s)')
                _time(backend, threads, scan, recon, warm)  # graphs, caches, allocator
                load_now = os.getloadavg()[0]
                seconds, residual = _time(backend, threads, scan, recon, config)
                rows.append({'preset': preset, 'N': scan.N, 'method': name, 'epochs': epochs,
                             'seconds': round(seconds, 2),
                             'seconds_per_epoch': round(seconds / epochs, 3),
                             'residual': round(float(residual), 5),
                             'load_1min': round(load_now, 2)})
                print(f"{preset:22s} {name:20s} {seconds:7.2f} s  "
                      f"{seconds / epochs:6.3f} s/epoch  residual {residual:.4f}  "
                      f"load {load_now:.2f}", flush=True)
    finally:
        for worker in workers:
            worker.terminate()
    return {'command': ' '.join([Path(sys.executable).name, *sys.argv]),
            'busy_processes': load, 'cpu_count': os.cpu_count(),
            'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
            'gomp_spincount': os.environ.get('GOMP_SPINCOUNT'), 'rows': rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--presets', nargs='+',
                        default=['siemens-weak-64-1e4', 'siemens-weak-128-1e4'])
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--load', type=int, default=0,
                        help='busy processes running beside the timings (a shared machine)')
    parser.add_argument('--output', type=Path, default=RESULTS / 'refine_threads.json')
    args = parser.parse_args(argv)
    result = run(args.presets, args.epochs, args.load)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(result, indent=2) + '\n')
    os.replace(tmp, args.output)
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
