"""``ptychopinn train``: train a model (and reconstruct the test data), resumable."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import time
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.backend import backend_selector, require_backend
from ptycho.cli.errors import EXIT_OK, PROG, UsageError
from ptycho.cli.interrupt import InterruptGuard
from ptycho.cli.output import print_report, progress_mode, say
from ptycho.cli.parser import add_output_flags, positive_float
from ptycho.cli.results import loss_history, outputs_reconstruction, truth_of
from ptycho.cli.run_config import explicit, resolve
from ptycho.cli_config import add_config_flags, add_convention_flags, conventions_from_args
from ptycho.config.config import PATCH_SIZES, TrainingConfig, save_yaml
from ptycho.photons import resolve_nphotons
from ptycho.workflows.training_files import checkpoint_path

logger = logging.getLogger('ptycho.cli')


def add_parser(sub: Any) -> None:
    p = sub.add_parser('train', help='train a model (and reconstruct the test data)',
                       allow_abbrev=False,
                       description='Train on an NPZ file or Ptychodus files. Every config field '
                                   'is a flag; --config YAML is the base, flags win. The '
                                   'resolved config is saved as OUTPUT_DIR/config.yaml.')
    p.add_argument('--config', type=Path, help='YAML file with TrainingConfig fields')
    p.add_argument('--resume', action='store_true',
                   help='continue from the checkpoint of the last completed epoch, '
                        'OUTPUT_DIR/checkpoints/last.ckpt (pytorch) or last.npz (tensorflow); '
                        'without --config, OUTPUT_DIR/config.yaml of that run is the base')
    p.add_argument('--max-minutes', type=positive_float, default=None,
                   help='wall-time budget of training, data preparation included: when it '
                        'is spent training stops and keeps the model it has (default: none, '
                        'nepochs decides)')
    add_config_flags(p, TrainingConfig)
    add_convention_flags(p)
    add_output_flags(p)


def run_training(config: TrainingConfig, train: Any, test: Any | None, *, resume: bool,
                 progress: str, max_minutes: float | None = None) -> tuple[Any, Any | None]:
    """Train through the dispatcher's backend; reconstruct the test data when there is some.

    Returns the backend's :class:`~ptycho.workflows.contract.TrainResult` and the stitched
    :class:`~ptycho.workflows.contract.Reconstruction` of ``test`` (or None).
    """
    import datetime

    from ptycho.workflows.contract import inference_config_for, reconstruct

    backend = backend_selector().backend_for(config)
    max_time = datetime.timedelta(minutes=max_minutes) if max_minutes else None
    trained = backend.train(train.raw, None if test is None else test.raw,
                            _with_progress(config, progress), resume=resume, max_time=max_time)
    recon = None
    if test is not None and trained.primary:
        recon = reconstruct(backend, trained.model, test.raw,
                            inference_config_for(trained.model))
    return trained, recon


def _with_progress(config: TrainingConfig, progress: str) -> TrainingConfig:
    """The config the backend runs with, so that it reports progress the right way.

    Both backends report per-epoch progress only with ``debug`` on (Keras: one line per
    epoch; Lightning: a progress bar). On a terminal that is what we want; when output
    is piped, Lightning's bar would flood the log, so the torch backend's per-epoch log
    line is shown instead. The saved config.yaml keeps the user's own ``debug`` value.
    """
    if config.debug or progress == 'off':
        return config
    if progress == 'lines' and config.backend == 'pytorch':
        logging.getLogger('ptycho_torch.workflows.training').setLevel(logging.INFO)
        return config
    return dataclasses.replace(config, debug=True)


def _match_patch_size(config: Any, N_data: int, source: Any, explicit: bool) -> None:
    """Take N from the data unless the user asked for another (then it is an error)."""
    if config.model.N == N_data:
        return
    if explicit:
        raise ValueError(f'{source}: patterns are {N_data}x{N_data} but N={config.model.N} was '
                         f'asked for; use --N {N_data} or resample the data')
    if N_data not in PATCH_SIZES:
        raise ValueError(f'{source}: patterns are {N_data}x{N_data}; PtychoPINN needs one of '
                         f'{list(PATCH_SIZES)}')
    logger.info('Patch size N=%d taken from the data', N_data)
    config.model.N = N_data


def _resume_command(argv: Sequence[str]) -> str:
    words = [PROG, *argv]
    if '--resume' not in words:
        words.append('--resume')
    return ' '.join(shlex.quote(w) for w in words)


def _interrupt_message(checkpoint: Path, argv: Sequence[str], *, resumed: bool,
                       started: float) -> str:
    """What Ctrl-C left behind in the backend's ``checkpoint`` (both keep one per epoch);
    a checkpoint older than this run counts only when resuming."""
    if checkpoint.exists() and (resumed or checkpoint.stat().st_mtime >= started):
        return (f'training interrupted; the last completed epoch is saved in {checkpoint}. '
                f'Resume with: {_resume_command(argv)}')
    return 'training interrupted before the first epoch finished; no checkpoint was written'


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.data_files import load_data
    from ptycho.run_outputs import OutputReport, write_loss_outputs, write_reconstruction_outputs

    config, overrides, yaml_data = resolve(TrainingConfig, args)
    saved = Path(config.output_dir) / 'config.yaml'
    if args.resume and args.config is None and saved.exists():
        # Resuming continues the run that is there: its saved config is the base, so the
        # network rebuilt for the checkpoint is the one that was trained; flags still win.
        args.config = saved
        config, overrides, yaml_data = resolve(TrainingConfig, args)
        logger.info('Resuming with %s as the base config', saved)
    if config.train_data_file is None:
        raise UsageError('train: no training data; give --train-data FILE (NPZ, or Ptychodus '
                         'diffraction.h5 + product.h5)')
    output_dir = Path(config.output_dir)
    checkpoint = checkpoint_path(output_dir, config.backend)
    if args.resume:
        if not checkpoint.exists():
            raise FileNotFoundError(f'{checkpoint}: no checkpoint to resume from (train '
                                    f'without --resume first)')
    conventions = conventions_from_args(args)
    train = load_data(config.train_data_file, conventions)
    test = (load_data(config.test_data_file, conventions) if config.test_data_file is not None
            else None)
    require_backend(config.backend)
    _match_patch_size(config, train.raw.N, train.path, explicit('N', overrides, yaml_data, True))
    if test is not None and test.raw.N != config.model.N:
        raise ValueError(f'{test.path}: patterns are {test.raw.N}x{test.raw.N} but the training '
                         f'data are {config.model.N}x{config.model.N}')
    config.validate()
    config = resolve_nphotons(config, train.raw)  # None: the data's count; saved as decided
    config_path = save_yaml(config, output_dir / 'config.yaml')
    say(f'Training on {len(train.raw)} patterns ({config.backend} backend, '
        f'{config.nepochs} epochs); config saved to {config_path}')

    start, wall_start = time.perf_counter(), time.time()
    with InterruptGuard(lambda: _interrupt_message(checkpoint, argv, resumed=args.resume,
                                                   started=wall_start)):
        trained, stitched = run_training(config, train, test, resume=args.resume,
                                         progress=progress_mode(args),
                                         max_minutes=args.max_minutes)
    elapsed = time.perf_counter() - start
    if not trained.primary:
        return EXIT_OK  # another process of a DDP run: rank 0 writes the outputs

    report = OutputReport()
    history = loss_history(trained.history)
    bundle = output_dir / 'wts.h5.zip'
    if bundle.exists():
        report.files['model bundle'] = bundle
    if checkpoint.exists():
        report.files['checkpoint'] = checkpoint
    report.files['config'] = config_path
    write_loss_outputs(output_dir, history, report)
    if test is not None and stitched is not None:
        recon = outputs_reconstruction(stitched, test)
        write_reconstruction_outputs(output_dir, recon, truth=truth_of(test),
                                     ptychodus_source=test.ptychodus, probe=test.raw.probeGuess,
                                     nphotons=config.nphotons,
                                     losses=history['train_loss'], report=report)
    last = history['train_loss'][-1] if history['train_loss'] else float('nan')
    print_report(report, f'Training finished in {elapsed:.1f} s (final train loss {last:.4g}). '
                         f'Outputs:')
    return EXIT_OK
