"""``ptychopinn simulate``: a synthetic scan with ground truth, as an NPZ contract file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_OK, UsageError
from ptycho.cli.output import say
from ptycho.cli.parser import WITH_DEFAULTS, add_output_flags, positive_float, positive_int
from ptycho.config.config import PATCH_SIZES


def simulation_choices() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Object, probe and scan kinds of ``ptycho.simulation`` (kept in sync by a test).

    Spelled out here because importing the simulation module (scipy) would slow every
    command's start-up, including ``--help``.
    """
    return ('lines', 'siemens'), ('focused', 'disk', 'gaussian'), ('fermat', 'raster', 'random')


def add_parser(sub: Any) -> None:
    p = sub.add_parser('simulate', help='simulate a dataset with ground truth', **WITH_DEFAULTS,
                       description='Simulate a scan of a synthetic object and write an NPZ '
                                   'contract file (with objectGuess) and a preview PNG.')
    objects, probes, scans = simulation_choices()
    p.add_argument('--object', dest='object_kind', default='lines', choices=objects)
    p.add_argument('--positions', type=positive_int, default=2000, help='scan positions')
    p.add_argument('--nphotons', type=positive_float, default=1e9, help='photons per pattern')
    p.add_argument('--N', type=int, choices=PATCH_SIZES, default=64, help='pattern size')
    p.add_argument('--probe', dest='probe_kind', default='focused', choices=probes)
    p.add_argument('--scan', default='fermat', choices=scans)
    p.add_argument('--object-size', type=positive_int, default=None,
                   help='object side in pixels (default: fits the scan)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('-o', '--output', type=Path, required=True, help='NPZ file to write')
    add_output_flags(p)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.simulation import simulate_dataset, write_preview_png

    output: Path = args.output
    if output.suffix.lower() != '.npz':
        raise UsageError(f'{output}: the output of simulate is an NPZ file; name it *.npz')
    raw = simulate_dataset(object_kind=args.object_kind, N=args.N, n_positions=args.positions,
                           nphotons=args.nphotons, probe_kind=args.probe_kind, scan=args.scan,
                           object_size=args.object_size, seed=args.seed)
    assert raw.objectGuess is not None  # a simulation carries its ground truth
    raw.to_file(output)
    preview = write_preview_png(raw, output.with_suffix('.png'),
                                title=f'{args.object_kind}, {args.positions} positions')
    say(f'Wrote {len(raw)} simulated patterns ({raw.N}x{raw.N}, '
        f'object {raw.objectGuess.shape[1]}x{raw.objectGuess.shape[0]}) to {output}')
    say(f'Preview: {preview}')
    return EXIT_OK
