"""``ptychopinn follow``: reconstruct one scan while its HDF5 file grows.

The model is loaded once; :func:`ptycho.follow.follow` reads the patterns new in the file
every ``--interval`` seconds into a stream (no scan plan: groups form from the patterns
that have arrived, :mod:`ptycho.workflows.streaming`). While the scan runs the image so far
is written every ``--preview-every`` seconds; when it ends (the writer's end marker, or no
growth for ``--idle`` seconds, or Ctrl-C) the final image and what ``ptychopinn infer``
writes go to the output folder.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_OK
from ptycho.cli.infer import load_kept_model
from ptycho.cli.output import say
from ptycho.cli.parser import add_model_flag, add_output_flags, positive_float
from ptycho.cli.results import as_outputs
from ptycho.cli.run_config import resolve
from ptycho.cli_config import add_config_flags
from ptycho.config.config import InferenceConfig

#: InferenceConfig fields ``follow`` sets itself or reads from the bundle.
OWN_FIELDS = ('model_path', 'test_data_file', 'output_dir', 'backend')
OUTPUT_SUFFIX = '_ptychopinn'


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        'follow', help='reconstruct one scan while its HDF5 file grows', allow_abbrev=False,
        description='Follow FILE, an HDF5 scan file that a detector pipeline appends to '
                    '(datasets diffraction (n, N, N) amplitudes or integer counts, xcoords, '
                    'ycoords, probeGuess; best written in SWMR mode), and reconstruct the '
                    'patterns as they arrive with a model loaded once. The image so far is '
                    'written to OUT while the scan runs; the final outputs when it ends: the '
                    'root attribute n_positions reached, a "complete" attribute or dataset '
                    'set true, no growth for --idle seconds, or Ctrl-C. See '
                    'specs/data_contracts.md.')
    p.add_argument('file', type=Path, metavar='FILE', help='the growing HDF5 scan file')
    add_model_flag(p)
    p.add_argument('--output-dir', dest='follow_output', type=Path, metavar='OUT',
                   help=f'where the image goes (default: FILE without its suffix + '
                        f'"{OUTPUT_SUFFIX}")')
    p.add_argument('--probe', type=Path, metavar='NPZ',
                   help='NPZ with probeGuess, when FILE holds no probe (FILE\'s own wins '
                        'otherwise)')
    p.add_argument('--interval', type=positive_float, default=0.5, metavar='SECONDS',
                   help='seconds between looks at the file (default: 0.5)')
    p.add_argument('--idle', type=positive_float, default=60.0, metavar='SECONDS',
                   help='the scan is over when the file has not grown for this long '
                        '(default: 60)')
    p.add_argument('--settle', type=positive_float, default=0.2, metavar='SECONDS',
                   help='read a pattern once the file has shown it this long: an HDF5 '
                        'reader can see a dataset grow before the data land (default: 0.2; '
                        'a "complete" marker lifts the wait)')
    p.add_argument('--preview-every', type=positive_float, default=5.0, metavar='SECONDS',
                   help='write the image so far this often while the scan runs (default: 5)')
    p.add_argument('--config', type=Path, help='YAML file with InferenceConfig fields')
    add_config_flags(p, InferenceConfig, skip=OWN_FIELDS, include_model=False)
    add_output_flags(p)


def _probe_file(path: Path) -> Any:
    from ptycho.cli.results import npz_arrays

    return npz_arrays(path, ('probeGuess',), 'complex probe', 'probeGuess')['probeGuess']


def _refined(backend: Any, stream: Any, probe: Any, result: Any, config: Any,
             source: Path) -> Any:
    """The whole scan's image as ``ptychopinn infer`` returns it: the physics refinement on
    the patterns the stream took (when ``config.refine_epochs`` > 0)."""
    from ptycho.probe import reduce_probe_modes
    from ptycho.raw_data import RawData
    from ptycho.workflows.contract import with_refinement

    positions = stream.index.positions
    scan = RawData(positions[:, 0], positions[:, 1], None, None, stream.diffraction,
                   reduce_probe_modes(probe), None, source=str(source),
                   diffraction_units='amplitude')
    if config.refine_epochs > 0:
        say(f'Refining the image on the scan\'s data ({config.refine_epochs} epochs)')
    return with_refinement(backend, scan, result, config)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.follow import FollowOptions, GrowingScanFile, follow
    from ptycho.run_outputs import write_reconstruction_outputs
    from ptycho.workflows.streaming import ScanStream

    config, _, _ = resolve(InferenceConfig, args)
    options = FollowOptions(interval_s=args.interval, idle_s=args.idle,
                            preview_s=args.preview_every, settle_s=args.settle)
    given_probe = _probe_file(args.probe) if args.probe is not None else None
    out = args.follow_output or args.file.with_name(args.file.stem + OUTPUT_SUFFIX)
    backend, model, run_config = load_kept_model(args.bundle, config)
    say(f'Following {args.file} (Ctrl-C ends the scan here)')

    stream_holder: list[Any] = []
    probe_holder: list[Any] = []

    def stream_for(file_probe: Any) -> Any:
        probe = file_probe if file_probe is not None else given_probe
        if probe is None:
            raise ValueError(f'{args.file}: key "probeGuess": expected the probe in the file '
                             f'or --probe NPZ, found neither')
        stream = ScanStream(backend, model, run_config, probe)
        stream_holder.append(stream)
        probe_holder.append(probe)
        return stream

    started = time.perf_counter()

    def preview(result: Any, patterns: int) -> None:
        stream = stream_holder[0]
        write_reconstruction_outputs(out, as_outputs(result, stream.index.positions))
        rate = patterns / max(time.perf_counter() - started, 1e-9)
        say(f'{patterns} patterns, {stream.groups_done} groups in the image '
            f'({rate:.0f} patterns/s); image so far in {out}')

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with GrowingScanFile(args.file) as reader:
            result, summary = follow(reader, stream_for, options, preview=preview, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    stream = stream_holder[0]
    result = _refined(backend, stream, probe_holder[0], result, run_config, args.file)
    report = write_reconstruction_outputs(out, as_outputs(result, stream.index.positions),
                                          probe=probe_holder[0])
    say(f'Scan ended ({summary.ended_by}): {summary.patterns} patterns in {summary.seconds:.1f} s; '
        f'{", ".join(str(p) for p in report.files.values())}')
    return EXIT_OK
