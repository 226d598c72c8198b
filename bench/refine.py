"""Physics refinement after the network (issue 13, items 2-3), on the realistic benchmark.

A trained model reconstructs the unseen test scan of a realistic preset
(:data:`ptycho.simulation.REALISTIC_PRESETS`: experimental probe given as a perturbed guess,
1 px position errors, bad pixels, 500 positions), then ``contract.reconstruct`` refines the
network's image on the scan's own data for 0 (network alone), 5, 10, 20, 40 epochs: the
object alone, with the probe, with the probe and the positions; the same refinement from a
flat object (no network) is the reference for what the network's start is worth. Each row:
wall time of the whole reconstruction (network + refinement, model warm), the scoring of ``bench/realistic.py``
(lit region, registration, constant phase and phase ramp removed), the data residual
before/after and the probe error against the TRUE probe (``ptycho.refinement.probe_error``:
after shift, ramp, phase and scale). Prints a table; JSON in
``bench/results/refine_<preset>_<backend>.json``.

    nice -n 10 .venv/bin/python bench/refine.py --bundle RUN/wts.h5.zip \\
        [--preset siemens-weak-64-1e6] [--epochs 0 5 10 20 40]

The bundle's backend runs the refinement (TensorFlow refines with TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from realistic import score_run  # noqa: E402

RESULTS = BENCH / 'results'
LIT_FRACTION = 0.1


def _row(name: str, result: Any, seconds: float, load: float, scan: Any, test_path: Path,
         truth_probe: np.ndarray, work: Path) -> dict[str, Any]:
    from ptycho.refinement import probe_error
    from ptycho.run_outputs import Reconstruction, save_recon_npz

    path = save_recon_npz(work / f'{name}.npz', Reconstruction(
        obj=result.obj, coverage=result.coverage, origin_xy=result.origin_xy,
        positions_xy=scan.positions_xy))
    metrics, info = score_run(path, test_path, LIT_FRACTION)
    probe = result.probe if result.probe is not None else scan.probeGuess
    return {'name': name, 'seconds': round(seconds, 2), 'load_1min': round(load, 2),
            'timings': {k: round(float(v), 3) for k, v in result.timings.items()},
            'residual': [round(v, 5) for v in result.losses],
            'probe_error': round(probe_error(probe, truth_probe), 4),
            'metrics': {k: round(float(v), 4) for k, v in metrics.items()}, **info}


def run(bundle: Path, preset: str, epochs: list[int], repeat_flat: bool) -> dict[str, Any]:
    from ptycho.physics import COVERAGE_EPS
    from ptycho.refinement import probe_error
    from ptycho.simulation import realistic_preset, realistic_scan
    from ptycho.bundle import peek_backend
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import inference_config_for, reconstruct

    backend = get_backend(peek_backend(bundle))
    model = backend.load(bundle)
    simulated = realistic_scan(realistic_preset(preset, 'test'))
    scan = simulated.raw_data()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        test_path = simulated.to_file(work / 'test.npz')
        base = inference_config_for(model, refine_epochs=0)
        reconstruct(backend, model, scan, base)  # warm-up: graphs, caches
        network = None
        for n_epochs in epochs:
            for what in (('',) if n_epochs == 0 else ('object', 'probe', 'probe+positions')):
                config = dataclasses.replace(base, refine_epochs=n_epochs,
                                             refine_probe='probe' in what,
                                             refine_positions='positions' in what)
                load = os.getloadavg()[0]
                tic = time.perf_counter()
                result = reconstruct(backend, model, scan, config)
                seconds = time.perf_counter() - tic
                name = ('network alone' if n_epochs == 0 else
                        f'network + {n_epochs} ep: {what}')
                rows.append(_row(name, result, seconds, load, scan, test_path, simulated.probe,
                                 work))
                print(_format(rows[-1]), flush=True)
                if n_epochs == 0:
                    network = result
        if repeat_flat and network is not None and max(epochs) > 0:
            covered = network.coverage >= COVERAGE_EPS
            flat = dataclasses.replace(network, obj=np.where(covered, 1, 0).astype(np.complex64))
            config = dataclasses.replace(base, refine_epochs=max(epochs), refine_probe=True,
                                         refine_positions=True)
            load = os.getloadavg()[0]
            tic = time.perf_counter()
            result = backend.refine(scan, flat, config)
            seconds = time.perf_counter() - tic
            rows.append(_row(f'flat start + {max(epochs)} ep: probe+positions',
                             result, seconds, load, scan, test_path, simulated.probe, work))
            print(_format(rows[-1]), flush=True)
    return {'preset': preset, 'backend': backend.name, 'bundle': str(bundle),
            'n_positions': len(scan), 'N': scan.N,
            'probe_guess_error': round(probe_error(scan.probeGuess, simulated.probe), 4),
            'cpu_count': os.cpu_count(), 'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
            'command': ' '.join([Path(sys.executable).name, *sys.argv]), 'rows': rows}


def _format(row: dict[str, Any]) -> str:
    residual = row['residual']
    res = f'{residual[0]:.4f}->{residual[-1]:.4f}' if residual else '-'
    return (f'{row["name"]:<52}{row["seconds"]:8.1f}{row["metrics"]["amp_ssim"]:9.3f}'
            f'{row["metrics"]["phase_ssim"]:9.3f}{row["probe_error"]:9.3f}  {res:<17}'
            f'{row["load_1min"]:5.2f}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', type=Path, required=True, help='a trained wts.h5.zip')
    parser.add_argument('--preset', default='siemens-weak-64-1e6')
    parser.add_argument('--epochs', type=int, nargs='+', default=[0, 5, 10, 20, 40])
    parser.add_argument('--no-flat', action='store_true', help='skip the flat-start reference')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f'{"method":<52}{"wall s":>8}{"amp SSIM":>9}{"ph SSIM":>9}{"probe err":>9}  '
          f'{"residual":<17}{"load":>5}')
    report = run(args.bundle, args.preset, sorted(set(args.epochs)), not args.no_flat)
    out = RESULTS / f'refine_{args.preset}_{report["backend"]}.json'
    RESULTS.mkdir(parents=True, exist_ok=True)
    from ptycho.run_outputs import write_json

    write_json(out, report)
    print(f'probe guess error {report["probe_guess_error"]}; wrote {out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
