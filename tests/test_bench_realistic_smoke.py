"""bench/realistic.py and the realistic path of bench/compare_ptychi.py, without training.

The scoring of a reconstruction on the realistic test scan (the truth itself must score
perfectly, a flat image must not) and the comparison's realistic scan (true probe apart from
the guess). The benchmark itself (training through the CLI) is not a test: it is run by hand.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

from ptycho import simulation
from ptycho.run_outputs import Reconstruction, save_recon_npz

REPO = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(REPO / 'bench'))  # the bench scripts are not a package
import compare_ptychi as compare  # noqa: E402
import realistic  # noqa: E402

SPEC = simulation.RealisticScanSpec(N=64, n_positions=120, nphotons=1e5, split='test')


def test_scoring_the_truth_is_perfect_and_a_flat_image_is_not(tmp_path: Path) -> None:
    scan = simulation.realistic_scan(SPEC)
    test_path = scan.to_file(tmp_path / 'test.npz')
    origin = (20.0, 30.0)  # a canvas that starts inside the object, as a stitched one does
    canvas = scan.object[30:, 20:]
    perfect = save_recon_npz(tmp_path / 'perfect.npz', Reconstruction(
        obj=canvas * np.exp(1j * 0.7), coverage=np.ones(canvas.shape), origin_xy=origin))
    metrics, info = realistic.score_run(perfect, test_path, lit_fraction=0.1)
    assert metrics['phase_ssim'] > 0.99 and metrics['amp_ssim'] > 0.99
    assert info['scored_pixels'] > 1000 and info['origin_xy'] == list(origin)
    flat = save_recon_npz(tmp_path / 'flat.npz', Reconstruction(
        obj=np.exp(0.01j * np.random.default_rng(0).standard_normal(canvas.shape)),
        coverage=np.ones(canvas.shape), origin_xy=origin))
    metrics, _ = realistic.score_run(flat, test_path, lit_fraction=0.1)
    assert metrics['phase_ssim'] < 0.5


def test_preset_names_and_the_comparison_scan() -> None:
    names = realistic.preset_names(types.SimpleNamespace(
        presets=None, objects=['siemens'], phases=['weak'], N=[64, 128], photons=['1e4', '1e6']))
    assert names == ['siemens-weak-64-1e4', 'siemens-weak-64-1e6', 'siemens-weak-128-1e4',
                     'siemens-weak-128-1e6']
    assert set(names) <= set(simulation.REALISTIC_PRESETS)
    scan = compare.load_scan(None, 50, 'siemens-weak-64-1e4')
    truth = simulation.realistic_scan(simulation.realistic_preset('siemens-weak-64-1e4', 'test'))
    assert scan.probe_true is not None
    np.testing.assert_array_equal(scan.probe_true, truth.probe.astype(np.complex64))
    np.testing.assert_array_equal(scan.probe, truth.probe_guess.astype(np.complex64))
    assert len(scan.positions_xy) == 50 and scan.nphotons == 1e4
