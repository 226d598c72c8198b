"""The framework-free half of the physics refinement (:mod:`ptycho.refinement`).

The padded starting canvas holds every patch and the input canvas unchanged; the probe's
linear phase ramp is moved into the object without changing any exit wave; the probe error
ignores exactly what the data cannot fix; bad settings are refused by name. The outputs
carry the refined probe: ``recon.npz`` and ``product-out.h5`` round trips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho import physics
from ptycho.config.config import InferenceConfig
from ptycho.raw_data import RawData
from ptycho.refinement import (far_field_centroid, finish, prepare, probe_error)
from ptycho.run_outputs import Reconstruction as Outputs
from ptycho.run_outputs import load_reconstruction, write_reconstruction_outputs
from ptycho.simulation import fourier_shift, fresnel_propagate, make_probe
from ptycho.workflows.contract import GroupObjects, Reconstruction

N = 32


def _scan_and_start(rng: np.random.Generator) -> tuple[RawData, Reconstruction]:
    positions = rng.uniform(30, 60, (12, 2))
    probe = make_probe('gaussian', N)
    D = rng.uniform(0, 2, (12, N, N)).astype(np.float32)
    bad = np.zeros((N, N), bool)
    bad[3, 5] = True
    scan = RawData(positions[:, 0], positions[:, 1], None, None, D, probe.astype(np.complex64),
                   None, diffraction_units='amplitude', bad_pixels=bad)
    M = 10
    shape, origin = physics.canvas_geometry(positions, M)
    obj = (rng.uniform(0.5, 1, shape) * np.exp(1j * rng.uniform(-1, 1, shape)))
    coverage = np.ones(shape, np.float32)
    coverage[0, :] = 0.0  # one uncovered row
    obj[0, :] = 0
    start = Reconstruction(obj.astype(np.complex64), coverage, (float(origin[0]),
                           float(origin[1])), M, 'test',
                           GroupObjects(np.zeros((12, N, N), np.complex64), positions))
    return scan, start


def test_prepare_pads_the_canvas_around_every_patch() -> None:
    scan, start = _scan_and_start(np.random.default_rng(0))
    problem = prepare(scan, start, InferenceConfig(refine_epochs=3))
    np.testing.assert_array_equal(problem.canvas[problem.inner][1:], start.obj[1:])
    # Uncovered pixels start from their covered neighbours, not from zero.
    np.testing.assert_array_equal(problem.canvas[problem.inner][0], start.obj[1])
    assert np.all(problem.canvas != 0)
    # Canvas pixels are object coordinates minus the origin; patches lie inside.
    np.testing.assert_allclose(problem.positions + problem.origin_xy, scan.positions_xy)
    low = problem.positions - N // 2
    assert low.min() >= 1 and np.all(low + N + 1 < np.array(problem.canvas.shape)[::-1])
    assert problem.mask[3, 5] == 0 and problem.mask.sum() == N * N - 1
    assert len(problem.batches) == 3
    for epoch in problem.batches:  # each epoch visits every pattern once
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(12))


def test_finish_moves_the_probe_ramp_into_the_object() -> None:
    scan, start = _scan_and_start(np.random.default_rng(1))
    problem = prepare(scan, start, InferenceConfig(refine_epochs=1, refine_probe=True))
    rows, cols = np.indices((N, N))
    k = np.array([1.5, -0.75])  # far-field pixels
    tilted = problem.probe * np.exp(2j * np.pi * (k[0] * cols + k[1] * rows) / N)
    out = finish(problem, start, problem.canvas, tilted, [0.2, 0.1], 1.0)
    np.testing.assert_allclose(far_field_centroid(out.probe), far_field_centroid(problem.probe),
                               atol=1e-3)
    np.testing.assert_allclose(out.probe, problem.probe, rtol=0, atol=1e-4 * np.abs(
        problem.probe).max())
    # The object took the opposite ramp: exit waves change by a constant phase only.
    ratio = out.obj[1:] / problem.canvas[problem.inner][1:]
    step_x = np.angle(ratio[:, 1:] / ratio[:, :-1])
    step_y = np.angle(ratio[1:, :] / ratio[:-1, :])
    np.testing.assert_allclose(step_x, 2 * np.pi * k[0] / N, atol=1e-4)
    np.testing.assert_allclose(step_y, 2 * np.pi * k[1] / N, atol=1e-4)
    assert np.all(out.obj[0] == 0)  # uncovered stays zero
    assert out.probe_refined and out.losses == (0.2, 0.1) and out.timings['refine_s'] == 1.0


def test_probe_error_ignores_what_the_data_cannot_fix() -> None:
    probe = make_probe('focused', 64)
    rows, cols = np.indices(probe.shape)
    same = 3.0 * np.exp(0.7j) * fourier_shift(probe, (0.4, -0.3)) * np.exp(
        2j * np.pi * (0.8 * cols - 0.5 * rows) / 64)
    assert probe_error(same, probe) < 0.05  # sub-pixel registration and resampling
    assert probe_error(fresnel_propagate(probe, 40.0), probe) > 0.2
    with pytest.raises(ValueError, match='probe_error: expected two probes'):
        probe_error(probe[:32], probe)


@pytest.mark.parametrize('field, value', [('refine_epochs', -1), ('refine_epochs', 2.5),
                                          ('refine_epochs', True), ('refine_probe', 'yes'),
                                          ('refine_probe', 1), ('refine_positions', None)])
def test_bad_refinement_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f'InferenceConfig.{field}: expected ') as info:
        InferenceConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_the_refined_probe_is_written_and_read_back(tmp_path: Path) -> None:
    pytest.importorskip('ptychodus')
    from ptychodus.api.io import load_product

    rng = np.random.default_rng(2)
    obj = (rng.uniform(0.5, 1, (40, 50)) * np.exp(1j * rng.uniform(-1, 1, (40, 50))))
    given = make_probe('gaussian', N).astype(np.complex64)
    refined = (given * np.exp(0.3j) * 1.7).astype(np.complex64)
    positions = rng.uniform(10, 30, (8, 2))
    moved = positions + rng.normal(0, 0.5, positions.shape)
    plain = None
    for probe, is_refined in ((refined, True), (given, False)):
        out = tmp_path / str(is_refined)
        recon = Outputs(obj=obj, coverage=np.ones(obj.shape), origin_xy=(0.0, 0.0),
                        positions_xy=moved if is_refined else positions, probe=probe,
                        probe_refined=is_refined, losses=(0.3, 0.1) if is_refined else (),
                        positions_refined=is_refined)
        report = write_reconstruction_outputs(out, recon, probe=given)
        back = load_reconstruction(report.files['reconstruction'])
        np.testing.assert_array_equal(back.probe, probe)
        assert back.probe_refined is is_refined and back.losses == recon.losses
        assert back.positions_refined is is_refined
        np.testing.assert_array_equal(back.positions_xy, recon.positions_xy)
        product = load_product(report.files['Ptychodus product'])
        np.testing.assert_array_equal(product.probes.get_probe_no_opr().get_array()[0], probe)
        assert [loss.value for loss in product.losses] == list(recon.losses)
        geometry = product.object_.get_geometry()
        read = np.stack([geometry.map_probe_positions_to_object_x_px(product.probe_positions),
                         geometry.map_probe_positions_to_object_y_px(product.probe_positions)],
                        axis=1)
        if plain is None:
            plain = read
        else:  # the product's positions moved as the refined ones did, in its own pixels
            np.testing.assert_allclose(plain - read, moved - positions, atol=1e-9)
