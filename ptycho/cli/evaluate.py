"""``ptychopinn evaluate``: score a saved reconstruction against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ptycho.cli.errors import EXIT_OK
from ptycho.cli.output import say
from ptycho.cli.parser import WITH_DEFAULTS, add_output_flags
from ptycho.cli.results import load_truth


def add_parser(sub: Any) -> None:
    p = sub.add_parser('evaluate', help='score a reconstruction against ground truth',
                       **WITH_DEFAULTS,
                       description='Metrics after phase-offset removal and registration.')
    p.add_argument('--reconstruction', type=Path, required=True,
                   help='recon.npz (complex "object") or a Ptychodus product .h5')
    p.add_argument('--ground-truth', type=Path, required=True, help='NPZ with objectGuess')
    p.add_argument('-o', '--output-dir', type=Path,
                   help='write metrics.json and comparison.png here')
    add_output_flags(p)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.run_outputs import (
        OutputReport, compare_to_truth, format_metrics, load_reconstruction,
        place_by_positions, write_comparison_outputs,
    )

    recon = load_reconstruction(args.reconstruction)
    truth, positions = load_truth(args.ground_truth)
    place_by_positions(recon, positions)
    comparison = compare_to_truth(recon, truth)
    say(f'{args.reconstruction} vs {args.ground_truth} ({comparison.n_pixels} pixels '
        f'compared, phase offset removed, registered):')
    say(format_metrics(comparison.metrics))
    if args.output_dir is not None:
        report = OutputReport()
        write_comparison_outputs(args.output_dir, comparison, report, recon.pixel_size_m)
        for label, path in report.files.items():
            say(f'{label}: {path}')
    return EXIT_OK
