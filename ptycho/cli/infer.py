"""``ptychopinn infer``: reconstruct and stitch a scan with a trained model bundle."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.backend import backend_selector, require_backend
from ptycho.cli.errors import EXIT_OK, UsageError
from ptycho.cli.output import print_report, say
from ptycho.cli.parser import add_output_flags
from ptycho.cli.results import load_truth, outputs_reconstruction, truth_of
from ptycho.cli.run_config import explicit, resolve
from ptycho.cli_config import add_config_flags, add_convention_flags, conventions_from_args
from ptycho.config.config import InferenceConfig


def add_parser(sub: Any) -> None:
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
    add_convention_flags(p)
    add_output_flags(p)


def load_model(model_dir: Path, config: InferenceConfig) -> tuple[Any, Any, InferenceConfig]:
    """Load the bundle with its backend: ``(backend, model, run config for its scans)``.

    The model settings (N, gridsize, ...) come from the bundle's manifest; ``config``
    supplies the run settings (batch size, grouping, device).
    """
    from ptycho.workflows.contract import inference_config_for, run_settings

    selector = backend_selector()
    config.model = bundle_model_config(model_dir)
    config.validate()
    selector.check_bundle_backend(model_dir, config.backend)
    backend = selector.backend_for(config)
    model = backend.load(model_dir)
    run_config = inference_config_for(model, **run_settings(
        config, 'n_groups', 'subsample_seed', 'sequential_sampling', 'debug'))
    return backend, model, run_config


def load_kept_model(bundle: Path, config: InferenceConfig) -> tuple[Any, Any, InferenceConfig]:
    """:func:`load_model` for the commands that keep one model for many scans (watch,
    follow): the backend read from the bundle and checked first; says how long it took."""
    from ptycho.bundle import peek_backend

    if not bundle.exists():
        raise FileNotFoundError(f'{bundle}: model not found')
    config.backend = peek_backend(bundle)
    require_backend(config.backend)
    tic = time.perf_counter()
    loaded = load_model(bundle, config)
    say(f'Loaded the {config.backend} model {bundle} in {time.perf_counter() - tic:.1f} s')
    return loaded


def run_inference(model_dir: Path, test: Any, config: InferenceConfig, *, flip_x: bool,
                  flip_y: bool, transpose: bool) -> Any:
    """Load the bundle with its backend (:func:`load_model`) and reconstruct + stitch
    ``test``."""
    from ptycho.workflows.contract import reconstruct

    backend, model, run_config = load_model(model_dir, config)
    return reconstruct(backend, model, test.raw, run_config, flip_x=flip_x, flip_y=flip_y,
                       transpose=transpose)


def bundle_model_config(model_dir: Path) -> Any:
    """The ``ModelConfig`` a bundle's manifest records (the network it holds)."""
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


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.bundle import bundle_path, peek_backend
    from ptycho.data_files import load_data
    from ptycho.run_outputs import OutputReport, write_reconstruction_outputs

    config, overrides, yaml_data = resolve(InferenceConfig, args)
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
    if explicit('backend', overrides, yaml_data) and config.backend != bundle_backend:
        raise ValueError(f'{bundle_path(model_dir)}: the model was trained with the '
                         f'{bundle_backend} backend but --backend {config.backend} was asked '
                         f'for; drop --backend or use --backend {bundle_backend}')
    config.backend = bundle_backend
    test = load_data(config.test_data_file, conventions_from_args(args))
    require_backend(bundle_backend)
    bundle_N = bundle_model_config(model_dir).N
    if test.raw.N != bundle_N:
        raise ValueError(f'{test.path}: patterns are {test.raw.N}x{test.raw.N} but the model in '
                         f'{model_dir} was trained on {bundle_N}x{bundle_N}')
    truth = load_truth(args.ground_truth)[0] if args.ground_truth else truth_of(test)
    output_dir = Path(config.output_dir)
    say(f'Reconstructing {len(test.raw)} patterns with the {bundle_backend} model in '
        f'{model_dir}')
    start = time.perf_counter()
    stitched = run_inference(model_dir, test, config, flip_x=args.flip_x, flip_y=args.flip_y,
                             transpose=args.transpose)
    elapsed = time.perf_counter() - start
    recon = outputs_reconstruction(stitched, test)
    report = write_reconstruction_outputs(output_dir, recon, truth=truth,
                                          ptychodus_source=test.ptychodus,
                                          probe=test.raw.probeGuess, report=OutputReport())
    rate = len(test.raw) / elapsed if elapsed > 0 else float('inf')
    print_report(report, f'Reconstructed in {elapsed:.1f} s ({rate:.0f} patterns/s). Outputs:')
    return EXIT_OK
