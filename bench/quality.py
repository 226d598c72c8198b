"""Reconstruction quality on the standard simulated benchmark, within a wall-clock budget.

Trains self-supervised (PINN: no ground truth used) on ``standard_dataset('train')``,
stops at ``--minutes``, reconstructs the training scan and the separate ``'test'`` scan,
stitches both, and scores them with :func:`ptycho.metrics.evaluate_reconstruction`
(phase-offset removal, amplitude scale fit, sub-pixel registration). Prints a table and
writes JSON.

    nice .venv/bin/python bench/quality.py --backend pytorch --gridsize 1 --minutes 10

The backend is a parameter: training and reconstruction go through
``ptycho.workflows.backend_selector`` when the backend's trainer takes a time limit, so
adding a backend means adding its entry to :data:`TRAINERS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see ptycho_torch)

from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig  # noqa: E402
from ptycho.physics import COVERAGE_EPS, canvas_geometry, default_crop  # noqa: E402

logger = logging.getLogger('bench.quality')

# Defaults tuned for a 2-core CPU and a 10-minute budget (see README / report).
DEFAULTS: dict[str, Any] = dict(gridsize=2, n_filters_scale=1, batch_size=16,
                                learning_rate=2e-3, n_groups=None, amp_activation='softplus',
                                mae_weight=0.0, input_features=ModelConfig.input_features,
                                backprojection_iterations=ModelConfig.backprojection_iterations,
                                skip_connections=ModelConfig.skip_connections)


def train_pytorch(train: Any, test: Any | None, config: TrainingConfig, minutes: float
                  ) -> dict[str, Any]:
    from ptycho_torch.workflows.components import train_cdi_model_torch

    return train_cdi_model_torch(train, test, config, max_time=timedelta(minutes=minutes))


def train_tensorflow(train: Any, test: Any | None, config: TrainingConfig, minutes: float
                     ) -> dict[str, Any]:
    from ptycho.tf.persistence import save_models
    from ptycho.tf.workflows import train_cdi_model

    trained = train_cdi_model(train, test, config, max_time=timedelta(minutes=minutes))
    # The bundle, as the PyTorch trainer leaves one: `bench/live.py --quality --model` and
    # `bench/compare_ptychi.py` take it.
    save_models(trained['ptycho_models'], trained['config'], config.output_dir)
    return trained


TRAINERS: dict[str, Callable[[Any, Any, TrainingConfig, float], dict[str, Any]]] = {
    'pytorch': train_pytorch,
    'tensorflow': train_tensorflow,
}


def reconstruct(raw: Any, config: TrainingConfig, models: Any, M: int) -> dict[str, Any]:
    """Stitch a scan through the dispatcher; returns the image in object coordinates."""
    from ptycho.workflows import backend_selector

    infer = InferenceConfig(model=config.model, backend=config.backend, n_groups=None,
                            neighbor_count=config.neighbor_count, batch_size=256,
                            output_dir=config.output_dir)
    start = time.perf_counter()
    _, _, results = backend_selector.reassemble_with_backend(raw, infer, models=models, M=M)
    elapsed = time.perf_counter() - start
    image = np.asarray(results['reconstruction']).reshape(results['coverage'].shape)
    return {'image': image, 'coverage': np.asarray(results['coverage']), 'seconds': elapsed,
            'origin_xy': results.get('origin_xy')}


def ground_truth_window(obj: np.ndarray, origin_xy: tuple[float, float],
                        shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The part of the object under a canvas (zeros + False where the canvas overhangs)."""
    ox, oy = int(round(origin_xy[0])), int(round(origin_xy[1]))
    out = np.zeros(shape, dtype=obj.dtype)
    inside = np.zeros(shape, dtype=bool)
    r0, c0 = max(oy, 0), max(ox, 0)
    r1, c1 = min(oy + shape[0], obj.shape[0]), min(ox + shape[1], obj.shape[1])
    out[r0 - oy:r1 - oy, c0 - ox:c1 - ox] = obj[r0:r1, c0:c1]
    inside[r0 - oy:r1 - oy, c0 - ox:c1 - ox] = True
    return out, inside


def score(raw: Any, recon: dict[str, Any], M: int) -> dict[str, float]:
    from ptycho.metrics import evaluate_reconstruction

    origin = recon['origin_xy']
    if origin is None:
        _, origin = canvas_geometry(np.stack([raw.xcoords, raw.ycoords], axis=1), M)
    truth, inside = ground_truth_window(np.asarray(raw.objectGuess), origin,
                                        recon['image'].shape)
    mask = inside & (recon['coverage'] >= COVERAGE_EPS)
    metrics = evaluate_reconstruction(recon['image'], truth, mask=mask)
    return {k: float(v) for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', default='pytorch', choices=sorted(TRAINERS))
    parser.add_argument('--gridsize', type=int, default=DEFAULTS['gridsize'], choices=(1, 2))
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--epochs', type=int, default=1000, help='upper bound; time stops first')
    parser.add_argument('--n-positions', type=int, default=None, help='thin the standard scan')
    parser.add_argument('--n-filters-scale', type=int, default=DEFAULTS['n_filters_scale'])
    parser.add_argument('--batch-size', type=int, default=DEFAULTS['batch_size'])
    parser.add_argument('--learning-rate', type=float, default=DEFAULTS['learning_rate'])
    parser.add_argument('--n-groups', type=int, default=DEFAULTS['n_groups'])
    parser.add_argument('--amp-activation', default=DEFAULTS['amp_activation'])
    parser.add_argument('--model-type', default='pinn', choices=('pinn', 'supervised'),
                        help='supervised trains on the true patches: a learnability check')
    parser.add_argument('--mae-weight', type=float, default=DEFAULTS['mae_weight'])
    parser.add_argument('--input-features', default=DEFAULTS['input_features'],
                        choices=('backprojection', 'amplitude'))
    parser.add_argument('--backprojection-iterations', type=int,
                        default=DEFAULTS['backprojection_iterations'])
    parser.add_argument('--skip-connections', action=argparse.BooleanOptionalAction,
                        default=DEFAULTS['skip_connections'])
    parser.add_argument('--lr-plateau-patience', type=int, default=3)
    parser.add_argument('--M', type=int, default=None, help='stitching crop (default physics.default_crop(N))')
    parser.add_argument('--seed', type=int, default=42)
    parser.add_argument('--output', type=Path, default=None, help='JSON results file')
    args = parser.parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')

    from ptycho.simulation import STANDARD, standard_dataset

    t0 = time.perf_counter()
    train_raw = standard_dataset('train', n_positions=args.n_positions)
    test_raw = standard_dataset('test', n_positions=args.n_positions)
    sim_s = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix=f'quality_{args.backend}_'))
    config = TrainingConfig(
        model=ModelConfig(N=STANDARD.N, gridsize=args.gridsize,
                          n_filters_scale=args.n_filters_scale,
                          amp_activation=args.amp_activation, model_type=args.model_type,
                          input_features=args.input_features,
                          backprojection_iterations=args.backprojection_iterations,
                          skip_connections=args.skip_connections),
        nepochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        n_groups=args.n_groups, nphotons=STANDARD.nphotons, mae_weight=args.mae_weight,
        output_dir=workdir, backend=args.backend, subsample_seed=args.seed,
        validation_split=0.0, lr_plateau_patience=args.lr_plateau_patience, logger='csv')
    t1 = time.perf_counter()
    trained = TRAINERS[args.backend](train_raw, None, config, args.minutes)
    train_s = time.perf_counter() - t1
    history = trained['history']['train_loss']
    epochs = len(history)
    n_train_groups = len(trained.get('train_container') or []) or len(train_raw)
    M = args.M or default_crop(STANDARD.N)
    results: dict[str, Any] = {
        'backend': args.backend, 'gridsize': args.gridsize, 'minutes_budget': args.minutes,
        'train_seconds': round(train_s, 1), 'simulate_seconds': round(sim_s, 1),
        'epochs': epochs, 'final_train_loss': history[-1] if history else None,
        'settings': {k: getattr(args, k) for k in ('n_filters_scale', 'batch_size',
                                                    'learning_rate', 'n_groups', 'amp_activation',
                                                    'mae_weight', 'seed', 'n_positions',
                                                    'model_type', 'input_features',
                                                    'backprojection_iterations',
                                                    'skip_connections')},
        'cpu_count': os.cpu_count(),
        'command': ' '.join(['.venv/bin/python', 'bench/quality.py',
                             *(sys.argv[1:] if argv is None else argv)]),
        # other jobs on the machine show here (this benchmark has not started working yet)
        'load_average_1min_at_start': load_at_start,
    }
    for split, raw in (('train', train_raw), ('test', test_raw)):
        recon = reconstruct(raw, config, trained['models'], M)
        results[split] = score(raw, recon, M)
        results[split]['inference_seconds'] = round(recon['seconds'], 2)
        np.save(workdir / f'recon_{split}.npy', recon['image'])
    results['train_patterns_per_s'] = round(epochs * n_train_groups * args.gridsize ** 2
                                            / max(train_s, 1e-9), 1)
    results['workdir'] = str(workdir)
    print(f"\nbackend={args.backend} gridsize={args.gridsize} epochs={epochs} "
          f"train={train_s:.0f}s")
    for split in ('train', 'test'):
        r = results[split]
        print(f"{split:5s} amp SSIM {r['amp_ssim']:.3f} PSNR {r['amp_psnr']:.1f} "
              f"FRC50 {r['amp_frc50']:.3f} | phase SSIM {r['phase_ssim']:.3f} "
              f"PSNR {r['phase_psnr']:.1f} FRC50 {r['phase_frc50']:.3f}")
    output = args.output or workdir / 'quality.json'
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(results, indent=2, default=float))
    os.replace(tmp, output)
    print(f'wrote {output}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
