"""``ptychopinn demo``: simulate, train, reconstruct and score, end to end in minutes."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_OK
from ptycho.cli.infer import run_inference
from ptycho.cli.interrupt import InterruptGuard
from ptycho.cli.output import print_report, progress_mode, say
from ptycho.cli.parser import WITH_DEFAULTS, add_output_flags, positive_float, positive_int
from ptycho.cli.results import loss_history, outputs_reconstruction
from ptycho.cli.train import run_training
from ptycho.config.config import BACKENDS, InferenceConfig, ModelConfig, TrainingConfig, save_yaml


@dataclass(frozen=True)
class DemoSettings:
    """Sized so ``make demo`` finishes in a few minutes on 2 CPU cores.

    The standard benchmark's object, probe, photon dose and scan density, on a smaller
    field of view (fewer positions, the object shrunk to keep the benchmark's step), and
    training stopped by a wall-clock budget rather than an epoch count. The network and
    optimiser are the configs' defaults (the benchmark's settings, chosen on the realistic
    benchmark).
    """

    n_positions: int = 512
    minutes: float = 3.0
    nepochs: int = 200  # upper bound; the time budget normally ends training first


DEMO = DemoSettings()


def add_parser(sub: Any) -> None:
    p = sub.add_parser('demo', help='simulate, train, reconstruct and score', **WITH_DEFAULTS,
                       description='End to end on the built-in standard dataset (fewer '
                                   'positions, so it runs in minutes on a laptop CPU).')
    p.add_argument('-o', '--output-dir', type=Path, default=Path('demo_output'))
    p.add_argument('--backend', choices=BACKENDS, default='pytorch')
    p.add_argument('--positions', type=positive_int, default=DEMO.n_positions,
                   help='scan positions per split')
    p.add_argument('--minutes', type=positive_float, default=DEMO.minutes,
                   help='training time budget (wall clock)')
    p.add_argument('--nepochs', type=positive_int, default=DEMO.nepochs,
                   help='at most this many epochs')
    p.add_argument('--n-filters-scale', type=positive_int,
                   default=ModelConfig.n_filters_scale, help='network width multiplier')
    p.add_argument('--learning-rate', type=positive_float,
                   default=TrainingConfig.learning_rate, help='Adam learning rate')
    add_output_flags(p)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.data_files import InputData
    from ptycho.run_outputs import OutputReport, write_loss_outputs, write_reconstruction_outputs
    from ptycho.simulation import (
        STANDARD, default_object_size, simulate_dataset, write_preview_png,
    )

    out: Path = args.output_dir
    start = time.perf_counter()
    say(f'[1/4] Simulating the standard dataset\'s object and scan density '
        f'({args.positions} positions per split)')
    splits = {}
    for split, seed in (('train', STANDARD.train_seed), ('test', STANDARD.test_seed)):
        raw = simulate_dataset(
            object_kind=STANDARD.object_kind, N=STANDARD.N, n_positions=args.positions,
            nphotons=STANDARD.nphotons, probe_kind=STANDARD.probe_kind, scan=STANDARD.scan,
            object_size=default_object_size(STANDARD.N, args.positions), seed=seed)
        path = raw.to_file(out / 'data' / f'{split}.npz')
        write_preview_png(raw, path.with_suffix('.png'), title=f'demo {split} scan')
        splits[split] = InputData(raw=raw, path=path)
    config = TrainingConfig(
        train_data_file=splits['train'].path, test_data_file=splits['test'].path,
        output_dir=out / 'model', backend=args.backend, nepochs=args.nepochs,
        learning_rate=args.learning_rate,
        nphotons=STANDARD.nphotons)
    config.model.N = splits['train'].raw.N
    config.model.n_filters_scale = args.n_filters_scale
    minutes: float | None = args.minutes
    config.validate()
    save_yaml(config, config.output_dir / 'config.yaml')

    budget = f'{minutes:g} min budget, at most ' if minutes else ''
    say(f'[2/4] Training ({args.backend} backend, {budget}{config.nepochs} epochs)')
    t0 = time.perf_counter()
    with InterruptGuard(lambda: 'demo interrupted during training'):
        trained, _ = run_training(config, splits['train'], None, resume=False,
                                  progress=progress_mode(args), max_minutes=minutes)
    train_s = time.perf_counter() - t0
    report = OutputReport()
    history = loss_history(trained.history)
    write_loss_outputs(out, history, report)

    say('[3/4] Reconstructing the test split with the saved model')
    t0 = time.perf_counter()
    infer_config = InferenceConfig(model=config.model, model_path=config.output_dir,
                                   test_data_file=splits['test'].path, output_dir=out,
                                   backend=args.backend)
    inferred = run_inference(config.output_dir, splits['test'], infer_config, flip_x=False,
                             flip_y=False, transpose=False)
    infer_s = time.perf_counter() - t0

    say('[4/4] Scoring against the ground truth')
    recon = outputs_reconstruction(inferred, splits['test'])
    write_reconstruction_outputs(out, recon, truth=splits['test'].raw.objectGuess,
                                 probe=splits['test'].raw.probeGuess, nphotons=config.nphotons,
                                 losses=history['train_loss'], report=report)
    if report.metrics is not None:
        from ptycho.run_outputs import write_json

        report.metrics.update(train_seconds=round(train_s, 2), infer_seconds=round(infer_s, 2),
                              backend=args.backend, n_positions=args.positions,
                              epochs_run=len(history['train_loss']))
        write_json(out / 'metrics.json', report.metrics)
    report.files['model bundle'] = config.output_dir / 'wts.h5.zip'
    print_report(report, f'Demo finished in {time.perf_counter() - start:.0f} s '
                         f'(training {train_s:.0f} s, reconstruction {infer_s:.1f} s). '
                         f'Outputs:')
    return EXIT_OK
