"""``ptychopinn``: simulate, train, infer, evaluate, demo.

The command imports only the numpy core at start-up; TensorFlow or torch load when a
command actually trains or reconstructs, through ``ptycho.workflows.backend_selector``.
User mistakes (a missing file, a bad flag value, data that break the contract, a bundle
from the other backend) end with exit status 2 and one line on stderr; Ctrl-C during
training ends with status 130 and the command that resumes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ptycho.cli_config import (
    add_config_flags,
    given_overrides,
    resolve_config,
)
from ptycho.config.config import (
    BACKENDS,
    PATCH_SIZES,
    InferenceConfig,
    TrainingConfig,
    read_yaml_mapping,
    save_yaml,
)
from ptycho.progress import ENV as PROGRESS_ENV
from ptycho.workflows.training_files import checkpoint_path

logger = logging.getLogger('ptycho.cli')

PROG = 'ptychopinn'
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake the user can fix; reported as one line, exit status 2."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; carries the resume hint."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) through :class:`UsageError`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f'{message} (see {self.prog} --help)')


def _say(text: str = '') -> None:
    """User-facing output: stdout, flushed so it interleaves sanely with progress bars."""
    print(text, flush=True)


# --------------------------------------------------------------------------- parser

def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('output')
    group.add_argument('-v', '--verbose', action='store_true',
                       help='debug logging (and full tracebacks on errors)')
    group.add_argument('-q', '--quiet', action='store_true',
                       help='only warnings and errors; no progress bars')


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptychopinn`` parser (subcommands with their flags)."""
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description='PtychoPINN: physics-informed neural-network ptychography.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    kw: dict[str, Any] = dict(allow_abbrev=False,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = sub.add_parser('simulate', help='simulate a dataset with ground truth', **kw,
                       description='Simulate a scan of a synthetic object and write an NPZ '
                                   'contract file (with objectGuess) and a preview PNG.')
    from_sim = _simulation_choices()
    p.add_argument('--object', dest='object_kind', default='lines', choices=from_sim[0])
    p.add_argument('--positions', type=_positive_int, default=2000, help='scan positions')
    p.add_argument('--nphotons', type=_positive_float, default=1e9, help='photons per pattern')
    p.add_argument('--N', type=int, choices=PATCH_SIZES, default=64, help='pattern size')
    p.add_argument('--probe', dest='probe_kind', default='focused', choices=from_sim[1])
    p.add_argument('--scan', default='fermat', choices=from_sim[2])
    p.add_argument('--object-size', type=_positive_int, default=None,
                   help='object side in pixels (default: fits the scan)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('-o', '--output', type=Path, required=True, help='NPZ file to write')
    _common(p)

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
    add_config_flags(p, TrainingConfig)
    _common(p)

    p = sub.add_parser('infer', help='reconstruct a scan with a trained model',
                       allow_abbrev=False,
                       description='Reconstruct and stitch a scan with a trained model. The '
                                   'backend is read from the model bundle.')
    p.add_argument('--config', type=Path, help='YAML file with InferenceConfig fields')
    p.add_argument('--flip-x', action='store_true', help='mirror scan x coordinates')
    p.add_argument('--flip-y', action='store_true', help='mirror scan y coordinates')
    p.add_argument('--transpose', action='store_true', help='swap scan x and y')
    p.add_argument('--ground-truth', type=Path,
                   help='NPZ with objectGuess to score against (default: the test data\'s '
                        'objectGuess for NPZ input)')
    add_config_flags(p, InferenceConfig, include_model=False)
    _common(p)

    p = sub.add_parser('evaluate', help='score a reconstruction against ground truth', **kw,
                       description='Metrics after phase-offset removal and registration.')
    p.add_argument('--reconstruction', type=Path, required=True,
                   help='recon.npz (complex "object") or a Ptychodus product .h5')
    p.add_argument('--ground-truth', type=Path, required=True, help='NPZ with objectGuess')
    p.add_argument('-o', '--output-dir', type=Path,
                   help='write metrics.json and comparison.png here')
    _common(p)

    p = sub.add_parser('demo', help='simulate, train, reconstruct and score', **kw,
                       description='End to end on the built-in standard dataset (fewer '
                                   'positions, so it runs in minutes on a laptop CPU).')
    p.add_argument('-o', '--output-dir', type=Path, default=Path('demo_output'))
    p.add_argument('--backend', choices=BACKENDS, default='pytorch')
    p.add_argument('--positions', type=_positive_int, default=DEMO.n_positions,
                   help='scan positions per split')
    p.add_argument('--minutes', type=_positive_float, default=DEMO.minutes,
                   help='training time budget (wall clock)')
    p.add_argument('--nepochs', type=_positive_int, default=DEMO.nepochs,
                   help='at most this many epochs')
    p.add_argument('--n-filters-scale', type=_positive_int, default=DEMO.n_filters_scale)
    p.add_argument('--learning-rate', type=_positive_float, default=DEMO.learning_rate)
    _common(p)
    return parser


@dataclass(frozen=True)
class DemoSettings:
    """Sized so ``make demo`` finishes in a few minutes on 2 CPU cores.

    The standard benchmark's object, probe, photon dose and scan density, on a smaller
    field of view (fewer positions, the object shrunk to keep the benchmark's step), and
    training stopped by a wall-clock budget rather than an epoch count.
    """

    n_positions: int = 512
    minutes: float = 3.0
    nepochs: int = 200  # upper bound; the time budget normally ends training first
    n_filters_scale: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-3
    gridsize: int = 2  # the benchmark's settings (bench/quality.py)
    amp_activation: str = 'softplus'


DEMO = DemoSettings()


def _simulation_choices() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Object, probe and scan kinds of ``ptycho.simulation`` (kept in sync by a test).

    Spelled out here because importing the simulation module (scipy) would slow every
    command's start-up, including ``--help``.
    """
    return ('lines', 'siemens'), ('focused', 'disk', 'gaussian'), ('fermat', 'raster', 'random')


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if 'e' in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {text!r}')
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive number, found {text!r}') from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'expected a positive number, found {text!r}')
    return value


# --------------------------------------------------------------------------- logging

def _setup_logging(verbose: bool, quiet: bool) -> None:
    """Our packages' records at WARNING (DEBUG with --verbose) through one handler; other
    libraries' records only from WARNING up, so their INFO chatter is not echoed twice."""
    formatter = logging.Formatter('%(levelname)s %(name)s: %(message)s' if verbose
                                  else '%(message)s')
    ours = logging.StreamHandler(sys.stderr)
    ours.setFormatter(formatter)
    for name in ('ptycho', 'ptycho_torch', 'ptychopinn_plugin'):
        package = logging.getLogger(name)
        package.handlers[:] = [ours]
        package.propagate = False
        package.setLevel(logging.DEBUG if verbose else logging.WARNING)
    others = logging.StreamHandler(sys.stderr)
    others.setFormatter(formatter)
    others.setLevel(logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [others]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    if quiet:  # progress bars (ptycho.progress) too; without it they show on a terminal
        os.environ[PROGRESS_ENV] = 'off'
    if not verbose:
        import warnings
        # Third-party deprecation notices are for developers, not for someone running a scan.
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings('ignore', category=category)
        os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # read when TensorFlow loads


def _progress(args: argparse.Namespace) -> str:
    """'bar' on a terminal, 'lines' when piped, 'off' with --quiet."""
    if args.quiet:
        return 'off'
    return 'bar' if sys.stdout.isatty() else 'lines'


# --------------------------------------------------------------------------- backend glue

def _backend_selector():
    from ptycho.workflows import backend_selector
    return backend_selector


def _require_backend(backend: str) -> None:
    """Import the backend now, so a missing install is a one-line user error up front."""
    try:
        _backend_selector().get_backend(backend)
    except (ImportError, RuntimeError) as exc:
        raise UsageError(str(exc)) from exc


class _InterruptGuard:
    """Remember whether SIGINT arrived, even when a library turns it into SystemExit.

    Lightning catches KeyboardInterrupt, shuts down, and calls ``sys.exit(1)``; the flag
    lets the command tell that apart from a real exit and report it as an interruption.
    """

    def __init__(self) -> None:
        self.fired = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> '_InterruptGuard':
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------------------- results

def _outputs_reconstruction(recon: Any, data: Any):
    """The :class:`ptycho.run_outputs.Reconstruction` written for a backend's stitched
    :class:`ptycho.workflows.contract.Reconstruction` of ``data`` (an ``InputData``);
    Ptychodus input supplies the physical pixel size for the figures' axes."""
    from ptycho.run_outputs import Reconstruction

    pixel = data.ptychodus.frame.pixel_size_m if getattr(data, 'ptychodus', None) else None
    return Reconstruction(obj=recon.obj, coverage=recon.coverage, origin_xy=recon.origin_xy,
                          positions_xy=data.raw.positions_xy, pixel_size_m=pixel)


def _history(history: Mapping[str, Any]) -> dict[str, list[float]]:
    return {k: [float(v) for v in history.get(k, []) or []] for k in ('train_loss', 'val_loss')}


def _truth_of(data: Any) -> Any:
    """Ground truth from NPZ input only: a Ptychodus product's object is a starting guess."""
    if data is None or data.ptychodus is not None:
        return None
    return data.raw.objectGuess


def _load_truth(path: Path) -> tuple[Any, Any]:
    """``(objectGuess, positions_xy or None)`` from a ground-truth NPZ."""
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f'{path}: ground-truth file not found')
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'objectGuess' not in data.files:
                raise ValueError(f'{path}: key "objectGuess": expected the complex ground-truth '
                                 f'object, found no such key (keys: {sorted(data.files)})')
            truth = np.squeeze(np.asarray(data['objectGuess']))
            positions = None
            if 'xcoords' in data.files and 'ycoords' in data.files:
                positions = np.stack([np.asarray(data['xcoords'], np.float64).ravel(),
                                      np.asarray(data['ycoords'], np.float64).ravel()], axis=1)
    except (OSError, EOFError) as exc:
        raise ValueError(f'{path}: not a readable NPZ file ({exc})') from exc
    if truth.ndim != 2:
        raise ValueError(f'{path}: key "objectGuess": expected a 2-D array, found {truth.shape}')
    return truth, positions


def _print_report(report: Any, heading: str) -> None:
    from ptycho.run_outputs import format_metrics

    _say(heading)
    width = max((len(k) for k in report.files), default=0)
    for label, path in report.files.items():
        _say(f'  {label:<{width}}  {path}')
    for note in report.notes:
        _say(f'  note: {note}')
    if report.metrics:
        _say('Metrics (phase offset removed, registered to ground truth):')
        for line in format_metrics(report.metrics).splitlines():
            _say(f'  {line}')


# --------------------------------------------------------------------------- commands

def cmd_simulate(args: argparse.Namespace) -> int:
    from ptycho.simulation import simulate_dataset, write_preview_png

    output: Path = args.output
    if output.suffix.lower() != '.npz':
        raise UsageError(f'{output}: the output of simulate is an NPZ file; name it *.npz')
    raw = simulate_dataset(object_kind=args.object_kind, N=args.N, n_positions=args.positions,
                           nphotons=args.nphotons, probe_kind=args.probe_kind, scan=args.scan,
                           object_size=args.object_size, seed=args.seed)
    raw.to_file(output)
    preview = write_preview_png(raw, output.with_suffix('.png'),
                                title=f'{args.object_kind}, {args.positions} positions')
    _say(f'Wrote {len(raw)} simulated patterns ({raw.N}x{raw.N}, '
         f'object {raw.objectGuess.shape[1]}x{raw.objectGuess.shape[0]}) to {output}')
    _say(f'Preview: {preview}')
    return EXIT_OK


def _resolve(cls: type, args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(config, flag overrides, raw YAML mapping)."""
    overrides = given_overrides(args, cls)
    if args.config is not None and not args.config.exists():
        raise FileNotFoundError(f'{args.config}: config file not found')
    yaml_data = read_yaml_mapping(args.config) if args.config is not None else None
    config = resolve_config(cls, yaml_data, overrides, yaml_source=str(args.config))
    return config, overrides, yaml_data or {}


def _explicit(key: str, overrides: Mapping[str, Any], yaml_data: Mapping[str, Any],
              model: bool = False) -> bool:
    if model:
        return key in (overrides.get('model') or {}) or key in (yaml_data.get('model') or {})
    return key in overrides or key in yaml_data


def _match_patch_size(config: Any, N_data: int, source: Any, explicit: bool) -> None:
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


def run_training(config: TrainingConfig, train: Any, test: Any | None, *, resume: bool,
                 progress: str, max_minutes: float | None = None) -> tuple[Any, Any | None]:
    """Train through the dispatcher's backend; reconstruct the test data when there is some.

    Returns the backend's :class:`~ptycho.workflows.contract.TrainResult` and the stitched
    :class:`~ptycho.workflows.contract.Reconstruction` of ``test`` (or None).
    """
    import datetime

    from ptycho.workflows.contract import inference_config_for, reconstruct

    backend = _backend_selector().backend_for(config)
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


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.data_files import load_data
    from ptycho.run_outputs import OutputReport, write_loss_outputs, write_reconstruction_outputs

    config, overrides, yaml_data = _resolve(TrainingConfig, args)
    saved = Path(config.output_dir) / 'config.yaml'
    if args.resume and args.config is None and saved.exists():
        # Resuming continues the run that is there: its saved config is the base, so the
        # network rebuilt for the checkpoint is the one that was trained; flags still win.
        args.config = saved
        config, overrides, yaml_data = _resolve(TrainingConfig, args)
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
    train = load_data(config.train_data_file)
    test = load_data(config.test_data_file) if config.test_data_file is not None else None
    _require_backend(config.backend)
    _match_patch_size(config, train.raw.N, train.path, _explicit('N', overrides, yaml_data, True))
    if test is not None and test.raw.N != config.model.N:
        raise ValueError(f'{test.path}: patterns are {test.raw.N}x{test.raw.N} but the training '
                         f'data are {config.model.N}x{config.model.N}')
    config.validate()
    config_path = save_yaml(config, output_dir / 'config.yaml')
    _say(f'Training on {len(train.raw)} patterns ({config.backend} backend, '
         f'{config.nepochs} epochs); config saved to {config_path}')

    start, wall_start = time.perf_counter(), time.time()
    guard = _InterruptGuard()
    try:
        with guard:
            trained, stitched = run_training(config, train, test, resume=args.resume,
                                             progress=_progress(args))
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not guard.fired:
            raise
        raise TrainingInterrupted(_interrupt_message(
            checkpoint, argv, resumed=args.resume, started=wall_start)) from None
    elapsed = time.perf_counter() - start
    if not trained.primary:
        return EXIT_OK  # another process of a DDP run: rank 0 writes the outputs

    report = OutputReport()
    history = _history(trained.history)
    bundle = output_dir / 'wts.h5.zip'
    if bundle.exists():
        report.files['model bundle'] = bundle
    if checkpoint.exists():
        report.files['checkpoint'] = checkpoint
    report.files['config'] = config_path
    write_loss_outputs(output_dir, history, report)
    if test is not None and stitched is not None:
        recon = _outputs_reconstruction(stitched, test)
        write_reconstruction_outputs(output_dir, recon, truth=_truth_of(test),
                                     ptychodus_source=test.ptychodus, probe=test.raw.probeGuess,
                                     nphotons=config.nphotons,
                                     losses=history['train_loss'], report=report)
    last = history['train_loss'][-1] if history['train_loss'] else float('nan')
    _print_report(report, f'Training finished in {elapsed:.1f} s (final train loss {last:.4g}). '
                          f'Outputs:')
    return EXIT_OK


def _interrupt_message(checkpoint: Path, argv: Sequence[str], *, resumed: bool,
                       started: float) -> str:
    """What Ctrl-C left behind in the backend's ``checkpoint`` (both keep one per epoch);
    a checkpoint older than this run counts only when resuming."""
    if checkpoint.exists() and (resumed or checkpoint.stat().st_mtime >= started):
        return (f'training interrupted; the last completed epoch is saved in {checkpoint}. '
                f'Resume with: {_resume_command(argv)}')
    return 'training interrupted before the first epoch finished; no checkpoint was written'


def run_inference(model_dir: Path, test: Any, config: InferenceConfig, *, flip_x: bool,
                  flip_y: bool, transpose: bool) -> Any:
    """Load the bundle with its backend and reconstruct + stitch ``test``.

    The model settings (N, gridsize, ...) come from the bundle's manifest; ``config``
    supplies the run settings (batch size, grouping, output directory).
    """
    from ptycho.workflows.contract import inference_config_for, reconstruct

    selector = _backend_selector()
    config.model = _bundle_model_config(model_dir)
    config.validate()
    selector.check_bundle_backend(model_dir, config.backend)
    backend = selector.backend_for(config)
    model = backend.load(model_dir)
    run = inference_config_for(model, batch_size=config.batch_size,
                               neighbor_count=config.neighbor_count, n_groups=config.n_groups,
                               subsample_seed=config.subsample_seed,
                               sequential_sampling=config.sequential_sampling,
                               device=config.device, debug=config.debug)
    return reconstruct(backend, model, test.raw, run, flip_x=flip_x, flip_y=flip_y,
                       transpose=transpose)


def _bundle_model_config(model_dir: Path) -> Any:
    from ptycho.bundle import read_bundle
    from ptycho.config.config import ModelConfig

    bundle = read_bundle(model_dir)
    model = bundle.config.get('model')
    if not isinstance(model, dict):
        raise ValueError(f'{bundle.path}: manifest config has no "model" settings')
    try:
        return ModelConfig(**model)
    except TypeError as exc:
        raise ValueError(f'{bundle.path}: manifest model settings are not understood ({exc})'
                         ) from exc


def cmd_infer(args: argparse.Namespace) -> int:
    from ptycho.bundle import bundle_path, peek_backend
    from ptycho.data_files import load_data
    from ptycho.run_outputs import OutputReport, write_reconstruction_outputs

    config, overrides, yaml_data = _resolve(InferenceConfig, args)
    if config.model_path is None:
        raise UsageError('infer: no model; give --model DIR (the output directory of train, '
                         'holding wts.h5.zip)')
    if config.test_data_file is None:
        raise UsageError('infer: no data; give --test-data FILE (NPZ, or Ptychodus '
                         'diffraction.h5 + product.h5)')
    model_dir = Path(config.model_path)
    if not model_dir.exists():
        raise FileNotFoundError(f'{model_dir}: model directory not found')
    bundle_backend = peek_backend(model_dir)
    if _explicit('backend', overrides, yaml_data) and config.backend != bundle_backend:
        raise ValueError(f'{bundle_path(model_dir)}: the model was trained with the '
                         f'{bundle_backend} backend but --backend {config.backend} was asked '
                         f'for; drop --backend or use --backend {bundle_backend}')
    config.backend = bundle_backend
    test = load_data(config.test_data_file)
    _require_backend(bundle_backend)
    bundle_N = _bundle_model_config(model_dir).N
    if test.raw.N != bundle_N:
        raise ValueError(f'{test.path}: patterns are {test.raw.N}x{test.raw.N} but the model in '
                         f'{model_dir} was trained on {bundle_N}x{bundle_N}')
    truth = _load_truth(args.ground_truth)[0] if args.ground_truth else _truth_of(test)
    output_dir = Path(config.output_dir)
    _say(f'Reconstructing {len(test.raw)} patterns with the {bundle_backend} model in '
         f'{model_dir}')
    start = time.perf_counter()
    stitched = run_inference(model_dir, test, config, flip_x=args.flip_x, flip_y=args.flip_y,
                             transpose=args.transpose)
    elapsed = time.perf_counter() - start
    recon = _outputs_reconstruction(stitched, test)
    report = write_reconstruction_outputs(output_dir, recon, truth=truth,
                                          ptychodus_source=test.ptychodus,
                                          probe=test.raw.probeGuess, report=OutputReport())
    rate = len(test.raw) / elapsed if elapsed > 0 else float('inf')
    _print_report(report, f'Reconstructed in {elapsed:.1f} s ({rate:.0f} patterns/s). Outputs:')
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ptycho.run_outputs import (
        OutputReport, compare_to_truth, format_metrics, load_reconstruction,
        place_by_positions, write_comparison_outputs,
    )

    recon = load_reconstruction(args.reconstruction)
    truth, positions = _load_truth(args.ground_truth)
    place_by_positions(recon, positions)
    comparison = compare_to_truth(recon, truth)
    _say(f'{args.reconstruction} vs {args.ground_truth} ({comparison.n_pixels} pixels '
         f'compared, phase offset removed, registered):')
    _say(format_metrics(comparison.metrics))
    if args.output_dir is not None:
        report = OutputReport()
        write_comparison_outputs(args.output_dir, comparison, report, recon.pixel_size_m)
        for label, path in report.files.items():
            _say(f'{label}: {path}')
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from ptycho.data_files import InputData
    from ptycho.run_outputs import OutputReport, write_loss_outputs, write_reconstruction_outputs
    from ptycho.simulation import (
        STANDARD, default_object_size, simulate_dataset, write_preview_png,
    )

    out: Path = args.output_dir
    start = time.perf_counter()
    _say(f'[1/4] Simulating the standard dataset\'s object and scan density '
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
        batch_size=DEMO.batch_size, learning_rate=args.learning_rate,
        nphotons=STANDARD.nphotons)
    config.model.N = splits['train'].raw.N
    config.model.n_filters_scale = args.n_filters_scale
    config.model.gridsize = DEMO.gridsize
    config.model.amp_activation = DEMO.amp_activation
    minutes: float | None = args.minutes
    config.validate()
    save_yaml(config, config.output_dir / 'config.yaml')

    budget = f'{minutes:g} min budget, at most ' if minutes else ''
    _say(f'[2/4] Training ({args.backend} backend, {budget}{config.nepochs} epochs)')
    t0 = time.perf_counter()
    guard = _InterruptGuard()
    try:
        with guard:
            trained, _ = run_training(config, splits['train'], None, resume=False,
                                      progress=_progress(args), max_minutes=minutes)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not guard.fired:
            raise
        raise TrainingInterrupted('demo interrupted during training') from None
    train_s = time.perf_counter() - t0
    report = OutputReport()
    history = _history(trained.history)
    write_loss_outputs(out, history, report)

    _say('[3/4] Reconstructing the test split with the saved model')
    t0 = time.perf_counter()
    infer_config = InferenceConfig(model=config.model, model_path=config.output_dir,
                                   test_data_file=splits['test'].path, output_dir=out,
                                   backend=args.backend)
    inferred = run_inference(config.output_dir, splits['test'], infer_config, flip_x=False,
                             flip_y=False, transpose=False)
    infer_s = time.perf_counter() - t0

    _say('[4/4] Scoring against the ground truth')
    recon = _outputs_reconstruction(inferred, splits['test'])
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
    _print_report(report, f'Demo finished in {time.perf_counter() - start:.0f} s '
                          f'(training {train_s:.0f} s, reconstruction {infer_s:.1f} s). '
                          f'Outputs:')
    return EXIT_OK


# --------------------------------------------------------------------------- main

_USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
    NotADirectoryError, PermissionError)
EXIT_FAILED = 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) and \
            getattr(exc, 'filename', None) and str(exc.filename) not in text:
        text = f'{exc.filename}: {text}'
    return ' '.join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptychopinn`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = '-v' in argv or '--verbose' in argv
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:
            raise UsageError(f'unrecognized arguments: {" ".join(extra)} '
                             f'(see {PROG} {args.command} --help)')
        _setup_logging(args.verbose, args.quiet)
        if args.command == 'simulate':
            return cmd_simulate(args)
        if args.command == 'train':
            return cmd_train(args, argv)
        if args.command == 'infer':
            return cmd_infer(args)
        if args.command == 'evaluate':
            return cmd_evaluate(args)
        if args.command == 'demo':
            return cmd_demo(args)
        raise UsageError(f'unknown command {args.command!r}')  # pragma: no cover
    except TrainingInterrupted as exc:
        print(f'{PROG}: {exc}', file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted', file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except _USER_ERRORS as exc:
        if verbose:
            logger.exception('details')
        print(f'{PROG}: error: {_one_line(exc)}', file=sys.stderr, flush=True)
        return EXIT_USAGE
    except ImportError as exc:
        if verbose:
            logger.exception('details')
        print(f'{PROG}: error: a required package is missing ({_one_line(exc)})',
              file=sys.stderr, flush=True)
        return EXIT_USAGE
    except FloatingPointError as exc:  # TF NonFiniteLossError: training diverged
        print(f'{PROG}: training failed: {_one_line(exc)}', file=sys.stderr, flush=True)
        return EXIT_FAILED
    except RuntimeError as exc:
        if type(exc).__name__ != 'NonFiniteLossError':  # torch's divergence error
            return _internal_error(exc, verbose)
        print(f'{PROG}: training failed: {_one_line(exc)}', file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless --verbose
        return _internal_error(exc, verbose)


def _internal_error(exc: BaseException, verbose: bool) -> int:
    if verbose:
        logger.error('internal error', exc_info=exc)
    else:
        print(f'{PROG}: internal error: {type(exc).__name__}: {_one_line(exc)} '
              f'(rerun with --verbose for the traceback)', file=sys.stderr, flush=True)
    return EXIT_INTERNAL


if __name__ == '__main__':
    sys.exit(main())
