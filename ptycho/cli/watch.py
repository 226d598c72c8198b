"""``ptychopinn watch``: reconstruct each scan that lands in a folder, as it lands.

The model is loaded once; :mod:`ptycho.watch` decides when a scan is complete and calls
:class:`ScanReconstructor` for it, which reconstructs the whole scan and writes what
``ptychopinn infer`` writes into the scan's own output folder.
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from ptycho.cli.infer import load_kept_model
from ptycho.cli.output import say
from ptycho.cli.parser import add_model_flag, add_output_flags, positive_float
from ptycho.cli.results import outputs_reconstruction, truth_of
from ptycho.cli.run_config import resolve
from ptycho.cli_config import add_config_flags
from ptycho.config.config import InferenceConfig
from ptycho.watch import DEFAULT_OUTPUT_NAME

#: InferenceConfig fields ``watch`` sets itself (model, data, output folder) or reads from
#: the bundle (backend).
OWN_FIELDS = ('model_path', 'test_data_file', 'output_dir', 'backend')


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        'watch', help='reconstruct each new scan in a folder as it lands', allow_abbrev=False,
        description='Watch DIR (and its sub-folders) and reconstruct each scan that lands in '
                    'it: an NPZ contract file, or a folder holding Ptychodus diffraction.h5 + '
                    'product.h5. The model is loaded once. Each scan\'s outputs (what '
                    'ptychopinn infer writes) appear complete in OUT/<scan name>/. A file that '
                    'cannot be read is reported on stderr and skipped; it is tried again if it '
                    'changes. Ctrl-C stops.')
    p.add_argument('directory', type=Path, metavar='DIR', help='the folder to watch')
    add_model_flag(p)
    p.add_argument('--output-dir', dest='watch_output', type=Path, metavar='OUT',
                   help=f'where the per-scan output folders go (default: '
                        f'DIR/{DEFAULT_OUTPUT_NAME}, which is not watched)')
    p.add_argument('--settle', type=positive_float, default=1.0, metavar='SECONDS',
                   help='a scan is read once its files have not changed for this long '
                        '(default: 1)')
    p.add_argument('--ignore-existing', action='store_true',
                   help='leave the scans already in DIR at start (default: reconstruct them '
                        'first, except those whose output folder is newer)')
    p.add_argument('--poll', action='store_true',
                   help='poll the folder instead of OS notifications (network file systems, '
                        'where writes from other hosts raise none)')
    p.add_argument('--config', type=Path, help='YAML file with InferenceConfig fields')
    add_config_flags(p, InferenceConfig, skip=OWN_FIELDS, include_model=False)
    add_output_flags(p)


@dataclass
class ScanReconstructor:
    """A model loaded once, reconstructing one whole scan per call (the watcher's handler)."""

    backend: Any
    model: Any
    config: InferenceConfig

    def __call__(self, scan: Any, output_dir: Path) -> str:
        from ptycho.data_files import load_data
        from ptycho.run_outputs import write_reconstruction_outputs
        from ptycho.workflows.contract import reconstruct

        data = load_data(scan.source)
        N = self.model.config.model.N
        if data.raw.N != N:
            raise ValueError(f'patterns are {data.raw.N}x{data.raw.N} but the model was '
                             f'trained on {N}x{N}')
        result = reconstruct(self.backend, self.model, data.raw, self.config)
        write_reconstruction_outputs(output_dir, outputs_reconstruction(result, data),
                                     truth=truth_of(data), ptychodus_source=data.ptychodus,
                                     probe=data.raw.probeGuess)
        return f'{len(data.raw)} patterns'


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.watch import FolderWatcher, WatchOptions, watched_folder

    config, _, _ = resolve(InferenceConfig, args)
    root = watched_folder(args.directory)  # before the model load: mistakes fail at once
    options = WatchOptions(settle_s=args.settle, process_existing=not args.ignore_existing,
                           polling=args.poll)
    handler = ScanReconstructor(*load_kept_model(args.bundle, config))
    watcher = FolderWatcher(root, handler, output_root=args.watch_output, options=options,
                            notify=say)
    say('Ctrl-C stops watching')
    # Ctrl-C stops watching even when the parent started us with SIGINT ignored (pytest-xdist
    # workers, some job runners): Python installs no KeyboardInterrupt handler then.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        watcher.run()
    except KeyboardInterrupt:
        say(f'Stopped: {watcher.summary.line()}')
        return EXIT_INTERRUPTED
    return EXIT_OK
