"""Cold vs warm reconstruct latency through the Ptychodus plugin.

A 1,000-pattern simulated scan goes through the plugin exactly as Ptychodus hands it
over (counts, metres, probe stack). Three calls are timed per backend:

* ``cold``: no worker running; the call starts the worker, loads the model, infers,
  stitches and refines (the settings' default; what the first scan after launching
  Ptychodus pays);
* ``warm``: the next scan on the same loaded model (must show 0 start-up and 0 load);
* ``warm 2``: once more, to show the warm figure is stable.

Usage::

    python bench/plugin_latency.py [--backend tensorflow|pytorch|both] [--patterns 1000]
                                   [--model bundle.zip] [--json out.json]

Without ``--model`` a small model is trained first (1 epoch on 256 patterns): latency does
not depend on how well the model is trained.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests' / 'plugin'))

COLUMNS = ('worker_start_s', 'model_load_s', 'convert_s', 'prepare_s', 'inference_s',
           'stitch_s', 'refine_s', 'total_s')


def _library(backend: str) -> Any:
    from ptychodus.api.settings import SettingsRegistry

    from ptychopinn_plugin.library import PinnDualReconstructorLibrary

    library = PinnDualReconstructorLibrary(SettingsRegistry())
    library.settings.backend.backend.set_value(backend)
    library.settings.model.n_filters_scale.set_value(1)
    library.settings.training.nepochs.set_value(1)
    return library


def _train(backend: str, workdir: Path) -> Path:
    import scenes

    library = _library(backend)
    try:
        pinn = library.reconstructor('PINN')
        pinn.export_training_data(workdir / 'train_data.npz',
                                  scenes.reconstruct_input(scenes.simulate(256, seed=21)))
        for _ in pinn.train(workdir, workdir):
            pass
        return workdir / 'model.zip'
    finally:
        library.shutdown()


def measure(backend: str, model: Path, n_patterns: int) -> dict[str, dict[str, float]]:
    import scenes

    parameters = scenes.reconstruct_input(scenes.simulate(n_patterns, seed=22))
    library = _library(backend)
    try:
        pinn = library.reconstructor('PINN')
        pinn.load_model_from_file(model)      # records the model (and warms a worker) ...
        library.workers.current().kill()      # ... which we stop: the next call is cold
        rows: dict[str, dict[str, float]] = {}
        for label in ('cold', 'warm', 'warm 2'):
            tic = time.perf_counter()
            outputs = list(pinn.reconstruct(parameters))  # partial images, then the whole
            output = outputs[-1]
            timings = dict(pinn.last_timings)
            timings['outputs'] = len(outputs)
            timings['wall_s'] = time.perf_counter() - tic
            rows[label] = timings
        assert output.product.object_.get_array().shape[-2:] == \
            parameters.product.object_.get_array().shape[-2:]
        return rows
    finally:
        library.shutdown()


def _print(backend: str, n_patterns: int, rows: dict[str, dict[str, float]]) -> None:
    print(f'\n{backend}: reconstruct {n_patterns} patterns through the plugin (seconds)')
    header = ['call'] + [c.removesuffix('_s') for c in COLUMNS] + ['patterns/s']
    print(' '.join(f'{h:>13}' for h in header))
    for label, t in rows.items():
        cells = [f'{t.get(c, 0.0):13.3f}' for c in COLUMNS]
        rate = n_patterns / t['total_s'] if t['total_s'] > 0 else float('nan')
        print(f'{label:>13} ' + ' '.join(cells) + f' {rate:13.0f}')
    cold, warm = rows['cold'], rows['warm']
    print(f'warm call pays start-up {warm["worker_start_s"]:.3f} s and model load '
          f'{warm["model_load_s"]:.3f} s; cold/warm = {cold["total_s"] / warm["total_s"]:.1f}x')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backend', choices=('tensorflow', 'pytorch', 'both'), default='both')
    parser.add_argument('--patterns', type=int, default=1000)
    parser.add_argument('--model', type=Path, help='bundle to use (default: train a tiny one)')
    parser.add_argument('--json', type=Path, help='also write the timings here')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s')

    backends = ('tensorflow', 'pytorch') if args.backend == 'both' else (args.backend,)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix='plugin-latency-') as tmp:
        for backend in backends:
            model = args.model or _train(backend, Path(tmp) / backend)
            rows = measure(backend, model, args.patterns)
            report[backend] = rows
            _print(backend, args.patterns, rows)
            if rows['warm']['worker_start_s'] or rows['warm']['model_load_s']:
                print('FAIL: the warm call paid start-up or model loading', file=sys.stderr)
                return 1
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
