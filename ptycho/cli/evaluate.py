"""``ptychopinn evaluate``: score a saved reconstruction, with or without ground truth.

With ``--ground-truth``: SSIM, PSNR and FRC against the known object (simulations). With
``--data`` (the measured scan) the scores real data allow: the data residual per pattern
(the reconstruction pushed through the forward model against the measured amplitudes) and,
with ``--model``, the half-scan FRC (the model reconstructs two interleaved halves of the
scan; their half-bit FRC crossing is the resolution). See :mod:`ptycho.no_truth`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ptycho.cli.errors import EXIT_OK, UsageError
from ptycho.cli.output import say
from ptycho.cli.parser import WITH_DEFAULTS, add_output_flags
from ptycho.cli.results import load_truth
from ptycho.cli_config import add_convention_flags, conventions_from_args

NO_TRUTH_JSON = 'no_truth.json'
NO_TRUTH_NPZ = 'no_truth.npz'
RESIDUAL_PNG = 'residual_map.png'
HALVES_FRC_PNG = 'frc_halves.png'


def add_parser(sub: Any) -> None:
    from ptycho.no_truth import SPLITS

    p = sub.add_parser('evaluate', help='score a reconstruction: against ground truth, or '
                                        'against the measured data (no truth needed)',
                       **WITH_DEFAULTS,
                       description='With --ground-truth: metrics after phase-offset removal and '
                                   'registration. With --data: the data residual per pattern; '
                                   'with --data and --model also the FRC between '
                                   'reconstructions of two interleaved halves of the scan.')
    p.add_argument('--reconstruction', type=Path, required=True,
                   help='recon.npz (complex "object") or a Ptychodus product .h5')
    p.add_argument('--ground-truth', type=Path, help='NPZ with objectGuess')
    p.add_argument('--data', type=Path,
                   help='the measured scan the reconstruction was made from (NPZ, or Ptychodus '
                        'diffraction.h5 + product.h5): data residual per pattern')
    p.add_argument('--model', type=Path,
                   help='with --data: the trained model (bundle directory) that reconstructs '
                        'two halves of the scan for the half-scan FRC')
    p.add_argument('--halves', choices=SPLITS, default='alternate',
                   help="how the scan is halved: 'alternate' (even/odd positions in scan "
                        "order) or 'checkerboard' (of a raster)")
    p.add_argument('-o', '--output-dir', type=Path,
                   help='write metrics.json and comparison.png (ground truth), '
                        f'{NO_TRUTH_JSON}, {NO_TRUTH_NPZ}, {RESIDUAL_PNG} and {HALVES_FRC_PNG} '
                        f'(data) here')
    add_convention_flags(p)
    add_output_flags(p)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ptycho.run_outputs import OutputReport, load_reconstruction

    if args.ground_truth is None and args.data is None:
        raise UsageError('evaluate: nothing to score against; give --ground-truth NPZ (a known '
                         'object) or --data SCAN (the measured patterns: no truth needed)')
    if args.model is not None and args.data is None:
        raise UsageError('evaluate: --model reconstructs halves of the measured scan; give '
                         '--data SCAN too')
    recon = load_reconstruction(args.reconstruction)
    report = OutputReport()
    if args.ground_truth is not None:
        _against_truth(args, recon, report)
    if args.data is not None:
        _against_data(args, recon, report)
    for label, path in report.files.items():
        say(f'{label}: {path}')
    return EXIT_OK


def _against_truth(args: argparse.Namespace, recon: Any, report: Any) -> None:
    from ptycho.run_outputs import (
        compare_to_truth, format_metrics, place_by_positions, write_comparison_outputs,
    )

    truth, positions = load_truth(args.ground_truth)
    place_by_positions(recon, positions)
    comparison = compare_to_truth(recon, truth)
    say(f'{args.reconstruction} vs {args.ground_truth} ({comparison.n_pixels} pixels '
        f'compared, phase offset removed, registered):')
    say(format_metrics(comparison.metrics))
    if args.output_dir is not None:
        write_comparison_outputs(args.output_dir, comparison, report, recon.pixel_size_m)


def _against_data(args: argparse.Namespace, recon: Any, report: Any) -> None:
    from ptycho.data_files import load_data
    from ptycho.no_truth import data_residual
    from ptycho.photons import are_counts
    from ptycho.run_outputs import place_by_positions

    data = load_data(args.data, conventions_from_args(args))
    raw = data.raw
    if recon.origin_xy is None:
        place_by_positions(recon, raw.positions_xy)
    if recon.origin_xy is None:
        raise ValueError(f'{args.reconstruction}: expected origin_xy (where the canvas lies in '
                         f'object pixels) to put the scan on the reconstruction, found none')
    probe, probe_source = _probe(args.reconstruction, raw)
    positions, positions_source = raw.positions_xy, 'data'
    if recon.positions_xy is not None and np.shape(recon.positions_xy) == positions.shape:
        positions, positions_source = np.asarray(recon.positions_xy), 'reconstruction'
    counts = are_counts(raw.diff3d)
    residual = data_residual(recon.obj, probe, positions, raw.diff3d,
                             origin_xy=recon.origin_xy, covered=recon.mask,
                             bad_pixels=raw.bad_pixels, counts=counts)
    summary = residual.summary()
    results: dict[str, Any] = {'reconstruction': args.reconstruction, 'data': args.data,
                               'probe': probe_source, 'positions': positions_source,
                               'counts': counts,
                               'data_residual': summary}
    _say_residual(summary, probe_source)
    frc = None
    if args.model is not None:
        frc, halves = _half_scan_frc(args.model, raw, args.halves)
        results['half_scan_frc'] = {'halves': args.halves, 'n_a': len(halves[0]),
                                    'n_b': len(halves[1]),
                                    **frc.summary(recon.pixel_size_m)}
        _say_frc(results['half_scan_frc'])
    if args.output_dir is not None:
        _write(args.output_dir, results, residual, frc, report)


def _probe(path: Path, raw: Any) -> tuple[Any, str]:
    """The probe that goes with the reconstruction: its own (a refined probe saved under
    ``probe`` in recon.npz), else the scan's. (Positions likewise: recon.npz's ``positions``
    when they are one per pattern of the scan, else the scan's.)"""
    from ptycho.probe import reduce_probe_modes

    if path.suffix.lower() == '.npz':
        with np.load(path, allow_pickle=False) as npz:
            if 'probe' in npz.files:
                probe = reduce_probe_modes(np.asarray(npz['probe']), what=f'{path}: key "probe"')
                if probe.shape == (raw.N, raw.N):
                    return probe, 'reconstruction'
                raise ValueError(f'{path}: key "probe": expected a ({raw.N}, {raw.N}) probe '
                                 f'(the data\'s pattern size), found {probe.shape}')
    return raw.probeGuess, 'data'


def _half_scan_frc(model_dir: Path, raw: Any, scheme: str) -> tuple[Any, tuple[Any, Any]]:
    """Reconstruct each half of the scan with the model on one canvas; their FRC."""
    from ptycho import physics
    from ptycho.bundle import peek_backend
    from ptycho.cli.backend import require_backend
    from ptycho.cli.infer import bundle_model_config, load_model
    from ptycho.config.config import InferenceConfig
    from ptycho.no_truth import half_scan_frc, split_scan
    from ptycho.run_outputs import COVERED
    from ptycho.workflows.contract import reconstruct

    if not model_dir.exists():
        raise FileNotFoundError(f'{model_dir}: model directory not found')
    backend_name = peek_backend(model_dir)
    require_backend(backend_name)
    model_N = bundle_model_config(model_dir).N
    if raw.N != model_N:
        raise ValueError(f'{raw.source}: patterns are {raw.N}x{raw.N} but the model in '
                         f'{model_dir} was trained on {model_N}x{model_N}')
    backend, model, run_config = load_model(
        model_dir, InferenceConfig(model_path=model_dir, backend=backend_name))
    M = physics.default_crop(raw.N)
    shape, origin = physics.canvas_geometry(raw.positions_xy, M)
    halves = split_scan(raw.positions_xy, scheme)
    images = [reconstruct(backend, model, raw.subset(half), run_config, M=M,
                          canvas_shape=shape, origin_xy=origin) for half in halves]
    both = (np.asarray(images[0].coverage) >= COVERED) & (np.asarray(images[1].coverage)
                                                           >= COVERED)
    return half_scan_frc(images[0].obj, images[1].obj, both), halves


def _say_residual(summary: dict[str, Any], probe_source: str) -> None:
    if 'median' not in summary:
        say(f'Data residual: none of the {summary["n_patterns"]} patterns has its probe on '
            f'the reconstruction')
        return
    worst = summary['worst'][0]
    text = (f'Data residual ||s A - D|| / ||D|| over {summary["n_evaluated"]} of '
            f'{summary["n_patterns"]} patterns (probe from the {probe_source}, scale '
            f's={summary["scale"]:.4g}): median {summary["median"]:.4f}, p90 '
            f'{summary["p90"]:.4f}, worst {worst["residual"]:.4f} (pattern {worst["index"]} '
            f'at x={worst["x"]:.1f}, y={worst["y"]:.1f})')
    if 'over_noise_median' in summary:
        text += (f'; {summary["over_noise_median"]:.2f}x the Poisson noise floor '
                 f'({summary["noise_floor_median"]:.4f}) at the median')
    say(text)


def _say_frc(summary: dict[str, Any]) -> None:
    def period(value: float | None) -> str:
        return 'unresolved' if value is None else f'{value:.2f} px'

    say(f'Half-scan FRC ({summary["halves"]} halves of {summary["n_a"]} + {summary["n_b"]} '
        f'patterns, {summary["n_pixels"]} pixels): half-bit crossing amplitude '
        f'{summary["amp_frc_halfbit"]:.3f}, phase {summary["phase_frc_halfbit"]:.3f} '
        f'cycles/px; resolution (full period) amplitude '
        f'{period(summary["amp_resolution_px"])}, phase {period(summary["phase_resolution_px"])}')
    for name in ('amp', 'phase'):
        recovered = summary[f'{name}_frc_recovers_to']
        if recovered is not None:
            say(f'  {name}: the FRC comes back above half-bit up to {recovered:.3f} cycles/px '
                f'(the halves agree on finer detail than on large scales: phase jumps or '
                f'blocks that differ between them)')


def _write(output_dir: Path, results: dict[str, Any], residual: Any, frc: Any,
           report: Any) -> None:
    from ptycho import figures
    from ptycho.atomic import atomic_path
    from ptycho.run_outputs import write_json

    output_dir.mkdir(parents=True, exist_ok=True)
    report.files['no-truth scores'] = write_json(output_dir / NO_TRUTH_JSON, results)
    arrays: dict[str, Any] = {'residual': residual.residual,
                              'lit_fraction': residual.lit_fraction,
                              'evaluated': residual.evaluated,
                              'positions': residual.positions_xy}
    if residual.noise_floor is not None:
        arrays['noise_floor'] = residual.noise_floor
    if frc is not None:
        arrays.update(frc_frequency=frc.amp.frequency, frc_amp=frc.amp.frc,
                      frc_phase=frc.phase.frc, frc_halfbit=frc.amp.halfbit)
    path = output_dir / NO_TRUTH_NPZ
    with atomic_path(path) as tmp, open(tmp, 'wb') as handle:
        np.savez(handle, **arrays)
    report.files['no-truth arrays'] = path
    report.files['residual map'] = figures.residual_map_png(
        residual.positions_xy, residual.residual, output_dir / RESIDUAL_PNG,
        evaluated=residual.evaluated)
    if frc is not None:
        report.files['half-scan FRC'] = figures.frc_png(
            {'amplitude': frc.amp, 'phase': frc.phase}, output_dir / HALVES_FRC_PNG,
            title='FRC between two halves of the scan', halfbit=True)
