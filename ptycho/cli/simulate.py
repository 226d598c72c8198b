"""``ptychopinn simulate``: a synthetic scan with ground truth, as an NPZ contract file."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_OK, UsageError
from ptycho.cli.output import say
from ptycho.cli.parser import WITH_DEFAULTS, add_output_flags, positive_float, positive_int
from ptycho.config.config import PATCH_SIZES

#: Defaults of the flags that describe an idealised simulation; ``--realistic`` refuses
#: them when they are changed (a preset fixes all of it).
SYNTHETIC_DEFAULTS: dict[str, Any] = dict(object_kind='lines', positions=2000, nphotons=1e9,
                                          N=64, probe_kind='focused', scan='fermat',
                                          object_size=None, seed=0)


def simulation_choices() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Object, probe and scan kinds of ``ptycho.simulation`` (kept in sync by a test).

    Spelled out here because importing the simulation module (scipy) would slow every
    command's start-up, including ``--help``.
    """
    return ('lines', 'siemens'), ('focused', 'disk', 'gaussian'), ('fermat', 'raster', 'random')


def realistic_choices() -> tuple[str, ...]:
    """Names of ``ptycho.simulation.REALISTIC_PRESETS`` (kept in sync by a test), spelled
    out for the same reason as :func:`simulation_choices`."""
    return tuple(f'{kind}-{phase}-{N}-{photons}' for kind, phase, N, photons in itertools.product(
        ('siemens', 'lines', 'texture'), ('weak', 'strong'), (64, 128), ('1e4', '1e5', '1e6')))


def add_parser(sub: Any) -> None:
    p = sub.add_parser('simulate', help='simulate a dataset with ground truth', **WITH_DEFAULTS,
                       description='Simulate a scan of a synthetic object and write an NPZ '
                                   'contract file (with objectGuess) and a preview PNG. '
                                   'With --realistic, a beamline-realistic benchmark scan '
                                   '(experimental probe given as a perturbed guess, position '
                                   'errors, bad pixels): the flags of the idealised '
                                   'simulation do not apply then.')
    objects, probes, scans = simulation_choices()
    d = SYNTHETIC_DEFAULTS
    p.add_argument('--object', dest='object_kind', default=d['object_kind'], choices=objects)
    p.add_argument('--positions', type=positive_int, default=d['positions'],
                   help='scan positions')
    p.add_argument('--nphotons', type=positive_float, default=d['nphotons'],
                   help='photons per pattern')
    p.add_argument('--N', type=int, choices=PATCH_SIZES, default=d['N'], help='pattern size')
    p.add_argument('--probe', dest='probe_kind', default=d['probe_kind'], choices=probes)
    p.add_argument('--scan', default=d['scan'], choices=scans)
    p.add_argument('--object-size', type=positive_int, default=d['object_size'],
                   help='object side in pixels (default: fits the scan)')
    p.add_argument('--seed', type=int, default=d['seed'])
    p.add_argument('--realistic', metavar='PRESET', default=None, choices=realistic_choices(),
                   help='a beamline-realistic preset, OBJECT-PHASE-N-PHOTONS with OBJECT in '
                        'siemens, lines, texture; PHASE weak or strong; N 64 or 128; PHOTONS '
                        '1e4, 1e5 or 1e6 (e.g. siemens-weak-64-1e6); the NPZ also holds the '
                        'true probe and positions (probe_true, xcoords_true, ycoords_true)')
    p.add_argument('--split', choices=('train', 'test'), default='train',
                   help='with --realistic: the training scan or the unseen test scan (another '
                        'object instance of the same kind)')
    p.add_argument('-o', '--output', type=Path, required=True, help='NPZ file to write')
    add_output_flags(p)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.simulation import write_preview_png

    output: Path = args.output
    if output.suffix.lower() != '.npz':
        raise UsageError(f'{output}: the output of simulate is an NPZ file; name it *.npz')
    if args.realistic is not None:
        return _run_realistic(args, output)
    if args.split != 'train':
        raise UsageError('simulate: --split chooses a split of a --realistic preset; the '
                         'idealised simulation takes --seed instead')
    from ptycho.simulation import simulate_dataset

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


def _run_realistic(args: argparse.Namespace, output: Path) -> int:
    from ptycho.simulation import realistic_preset, realistic_scan, write_preview_png

    changed = [f'--{key.replace("_kind", "").replace("_", "-")}'
               for key, default in SYNTHETIC_DEFAULTS.items() if getattr(args, key) != default]
    if changed:
        raise UsageError(f'simulate: --realistic {args.realistic} fixes the whole scan; '
                         f'drop {", ".join(changed)}')
    spec = realistic_preset(args.realistic, args.split)
    scan = realistic_scan(spec)
    scan.to_file(output)
    raw = scan.raw_data()
    preview = write_preview_png(raw, output.with_suffix('.png'),
                                title=f'{args.realistic} ({args.split}): given positions')
    say(f'Wrote {len(raw)} realistic patterns ({raw.N}x{raw.N}, {spec.nphotons:g} photons, '
        f'object {scan.object.shape[1]}x{scan.object.shape[0]}, probe guess error '
        f'{scan.probe_error:.2f}, {int(scan.bad_pixels.sum())} bad pixels) to {output}')
    say(f'Preview: {preview}')
    return EXIT_OK
