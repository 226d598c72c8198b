"""Streaming reconstruction (``ptycho.workflows.streaming``), the same checks for both backends.

A scan fed in chunks gives the same image as the scan fed whole; the pieces it rests on
(nearest neighbours among the patterns arrived, running sums) against brute force and the
numpy reference stitch.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance_backends import backend_params
from ptycho import physics
from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.simulation import simulate_dataset
from ptycho.workflows.backend_selector import get_backend
from ptycho.workflows.contract import inference_config_for
from ptycho.workflows.streaming import (NeighbourIndex, RunningCanvas, ScanStream,
                                        partition_groups, reconstruct_scan)


@pytest.fixture(scope='module')
def scans():
    return (simulate_dataset(N=64, n_positions=40, object_size=110, seed=1),
            simulate_dataset(N=64, n_positions=90, object_size=120, seed=2))


@pytest.fixture(scope='module', params=[
    pytest.param((name.values[0], gridsize), id=f'{name.values[0]}-gridsize{gridsize}',
                 marks=name.marks)
    for name in backend_params() for gridsize in (1, 2)])
def trained(request, scans, tmp_path_factory):
    name, gridsize = request.param
    out = tmp_path_factory.mktemp(f'{name}{gridsize}')
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1),
                            nepochs=1, batch_size=16, output_dir=out, backend=name,
                            logger='none', validation_split=0.0, accelerator='cpu')
    backend = get_backend(name)
    return backend, backend.train(scans[0], None, config).model


def _positions(scan) -> np.ndarray:
    return np.stack([scan.xcoords, scan.ycoords], axis=1).astype(np.float64)


CHUNKS = ((0, 7), (7, 1), (8, 25), (33, 40), (73, 17))


def _stream_in_chunks(stream: ScanStream, scan) -> list[tuple[int, int]]:
    seen = []
    for start, size in CHUNKS:
        status = stream.add(scan.diff3d[start:start + size],
                            _positions(scan)[start:start + size])
        seen.append((status.patterns, status.groups))
        assert np.isfinite(stream.image().obj).all()  # readable at any moment
    return seen


def _assert_same_image(streamed, whole) -> None:
    assert streamed.obj.shape == whole.obj.shape and streamed.origin_xy == whole.origin_xy
    np.testing.assert_allclose(streamed.obj, whole.obj, rtol=0,
                               atol=1e-5 * np.abs(whole.obj).max())
    np.testing.assert_allclose(streamed.coverage, whole.coverage, rtol=1e-6, atol=1e-6)
    assert streamed.uncovered == whole.uncovered


def test_a_scan_streamed_in_chunks_is_the_scan_reconstructed_whole(trained, scans) -> None:
    """With the scan plan known (a file, Ptychodus): the whole-scan path exactly."""
    backend, model = trained
    test = scans[1]
    config = inference_config_for(model, batch_size=32)
    whole = reconstruct_scan(backend, model, test, config, norm_patterns=30)
    stream = ScanStream(backend, model, config, test.probeGuess, plan=_positions(test),
                        norm_patterns=30)
    seen = _stream_in_chunks(stream, test)
    assert seen[0] == (7, 0)  # waiting for the 30 patterns that fix the normalisation
    assert 0 < seen[2][1] <= 33 and seen[-1] == (90, 90)
    streamed = stream.close()
    assert streamed.backend == backend.name
    _assert_same_image(streamed, whole)


def test_the_partition_tiling_streamed_is_the_partition_reconstructed_whole(trained,
                                                                             scans) -> None:
    """tiling='partition': every pattern in the image, in far fewer groups, chunk-proof
    with and without a plan."""
    backend, model = trained
    test = scans[1]
    config = inference_config_for(model, batch_size=32, tiling='partition')
    options = dict(norm_patterns=30)
    whole = reconstruct_scan(backend, model, test, config, **options)
    gridsize = model.config.model.gridsize
    expected = partition_groups(_positions(test), config.neighbor_count, gridsize ** 2)
    for plan in (_positions(test), None):
        stream = ScanStream(backend, model, config, test.probeGuess, plan=plan,
                            lookahead=10, **options)
        seen = _stream_in_chunks(stream, test)
        closed = stream.close()
        if plan is not None:
            assert seen[-1] == (90, len(expected))
            _assert_same_image(closed, whole)
        else:
            one = ScanStream(backend, model, config, test.probeGuess, lookahead=10, **options)
            one.add(test.diff3d, _positions(test))
            _assert_same_image(closed, one.close())
        assert stream.groups_done < (90 if gridsize > 1 else 91)


def test_without_a_plan_chunking_does_not_change_the_image(trained, scans) -> None:
    """Positions arriving with the patterns: groups wait `lookahead` patterns for partners."""
    backend, model = trained
    test = scans[1]
    config = inference_config_for(model, batch_size=32)
    one = ScanStream(backend, model, config, test.probeGuess, lookahead=10, norm_patterns=30)
    one.add(test.diff3d, _positions(test))
    whole = one.close()
    stream = ScanStream(backend, model, config, test.probeGuess, lookahead=10,
                        norm_patterns=30)
    seen = _stream_in_chunks(stream, test)
    if model.config.model.gridsize > 1:
        assert seen[2] == (33, 23)  # groups 23..32 wait for patterns 33..42
    assert seen[-1] == (90, 90 if model.config.model.gridsize == 1 else 80)
    # finish(): the groups that waited for partners are stitched; the running image then
    # holds every pattern, before close() rebuilds it with the phases aligned at once.
    status = stream.finish()
    assert (status.groups, status.waiting) == (90, 0)
    assert status.seeds == tuple(range(seen[-1][1], 90))
    assert stream.finish().seeds == ()  # a second call changes nothing
    with pytest.raises(RuntimeError, match='after finish'):
        stream.add(test.diff3d[:1], _positions(test)[:1])
    assert (stream.image().coverage > 0).sum() == (whole.coverage > 0).sum()
    _assert_same_image(stream.close(), whole)


def test_patterns_off_the_plan_are_refused(trained, scans) -> None:
    backend, model = trained
    test = scans[1]
    stream = ScanStream(backend, model, inference_config_for(model), test.probeGuess,
                        plan=_positions(test))
    with pytest.raises(ValueError, match='not at the planned positions'):
        stream.add(test.diff3d[:3], _positions(test)[:3] + 1.0)


def test_a_fixed_canvas_and_orientation_are_kept(trained, scans) -> None:
    backend, model = trained
    test = scans[1]
    config = inference_config_for(model)
    free = reconstruct_scan(backend, model, test, config, flip_x=True, align_phase=False)
    fixed = reconstruct_scan(backend, model, test, config, flip_x=True, align_phase=False,
                             canvas_shape=(40, 50), origin_xy=free.origin_xy)
    assert fixed.obj.shape == (40, 50) and fixed.origin_xy == free.origin_xy
    assert free.origin_xy[0] < 0  # x mirrored
    # The fixed canvas is the free one cut down (crops that spill over the edge are cut).
    inner = slice(0, 30), slice(0, 40)
    np.testing.assert_allclose(fixed.obj[inner], free.obj[inner], atol=1e-5)


def test_too_few_patterns_for_a_group_is_an_error(trained, scans) -> None:
    backend, model = trained
    if model.config.model.gridsize == 1:
        pytest.skip('a gridsize 1 group is one pattern')
    stream = ScanStream(backend, model, inference_config_for(model), scans[1].probeGuess)
    stream.add(scans[1].diff3d[:2], _positions(scans[1])[:2])
    with pytest.raises(ValueError, match='gridsize 2 needs at least 4'):
        stream.close()


def test_bad_chunks_are_refused_by_name(trained, scans) -> None:
    backend, model = trained
    stream = ScanStream(backend, model, inference_config_for(model), scans[1].probeGuess)
    with pytest.raises(ValueError, match=r'diffraction: expected \(n, 64, 64\)'):
        stream.add(np.zeros((3, 32, 32)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r'positions_xy: expected \(3, 2\)'):
        stream.add(np.zeros((3, 64, 64)), np.zeros((2, 2)))
    bad = np.ones((1, 64, 64))
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        stream.add(bad, np.zeros((1, 2)))
    assert stream.patterns == 0  # a refused chunk leaves nothing behind


def test_nearest_neighbours_among_the_arrived_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 200, size=(300, 2))
    positions[50] = positions[49]  # a duplicate position
    index = NeighbourIndex(cell=16.0)
    index.extend(positions[:120])
    index.extend(positions[120:])
    for i, limit, k in ((0, 3, 4), (10, 10, 4), (49, 49, 1), (50, 200, 6), (299, 299, 7),
                        (5, 299, 12)):
        candidates = np.array([j for j in range(limit + 1) if j != i])
        d2 = np.sum((positions[candidates] - positions[i]) ** 2, axis=1)
        expected = candidates[np.lexsort((candidates, d2))][:k]
        np.testing.assert_array_equal(index.nearest(i, k, limit), expected)


def test_the_partition_puts_each_pattern_in_a_group_of_near_neighbours() -> None:
    rng = np.random.default_rng(6)
    positions = rng.uniform(0, 100, size=(200, 2))
    K, C = 4, 4
    groups = partition_groups(positions, K, C)
    assert groups.shape[1] == C and len(groups) < 200 / 2
    assert set(groups.ravel()) == set(range(200))  # every pattern reconstructed
    taken = set()
    for row in groups:
        assert row[0] not in taken  # a seed no earlier group took
        distances = np.sum((positions - positions[row[0]]) ** 2, axis=1)
        kth = np.sort(distances)[K]  # the K-th nearest other position
        assert np.all(distances[row[1:]] <= kth) and len(set(row)) == C
        taken.update(row.tolist())
    np.testing.assert_array_equal(partition_groups(positions, K, 1),
                                  np.arange(200)[:, None])


def test_a_canvas_that_follows_a_long_scan_grows_geometrically() -> None:
    canvas = RunningCanvas(20)
    sizes = set()
    for x in np.arange(0, 4000, 3.0):
        canvas.add(np.ones((20, 20)), x, 0.5 * x, align=False)
        sizes.add(canvas.numerator.shape)
    # Each axis grows by half its size at least: ~8 re-allocations per axis here, where
    # fixed 64-pixel steps took ~90 in all.
    assert canvas.numerator.shape[1] > 4000 and len(sizes) <= 20


@pytest.mark.parametrize('fixed', [False, True])
def test_running_sums_equal_the_reference_stitch(fixed: bool) -> None:
    rng = np.random.default_rng(4)
    M = 12
    crops = rng.normal(size=(30, M, M)) + 1j * rng.normal(size=(30, M, M))
    positions = rng.uniform(-40, 60, size=(30, 2))
    if fixed:
        shape, origin = (50, 70), (-20.5, -10.0)
    else:
        shape, origin = physics.canvas_geometry(positions, M)
    patches = np.zeros((30, M, M), complex)
    patches[:] = crops
    expected, expected_cov = physics.stitch(patches, positions, M, shape, origin)
    canvas = RunningCanvas(M, shape if fixed else None, origin if fixed else None)
    for crop, (x, y) in zip(crops, positions):
        canvas.add(crop, x, y, align=False)
    image, coverage, origin_out = canvas.image(shape, origin)
    assert origin_out == (float(origin[0]), float(origin[1]))
    np.testing.assert_allclose(image, expected, atol=1e-5)
    np.testing.assert_allclose(coverage, expected_cov, atol=1e-6)
    at_once = RunningCanvas(M, shape if fixed else None, origin if fixed else None)
    at_once.add_many(crops[:10], positions[:10, 0], positions[:10, 1])
    at_once.add_many(crops[10:], positions[10:, 0], positions[10:, 1])  # grows, if not fixed
    image, coverage, _ = at_once.image(shape, origin)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    np.testing.assert_allclose(coverage, expected_cov, atol=1e-6)


def test_alignment_removes_constant_phases_between_overlapping_groups() -> None:
    rng = np.random.default_rng(5)
    M = 16
    obj = np.exp(1j * rng.uniform(-1, 1, (80, 80)))
    positions = rng.uniform(20, 60, size=(40, 2))
    crops = physics.extract_patches(obj, positions, M)
    turned = crops * np.exp(1j * rng.uniform(-np.pi, np.pi, 40))[:, None, None]
    canvas = RunningCanvas(M)
    for crop, (x, y) in zip(turned, positions):
        canvas.add(crop, x, y, align=True)
    image, coverage, origin = canvas.image(*physics.canvas_geometry(positions, M))
    truth, _ = physics.stitch(crops, positions, M)
    covered = coverage > 0.5
    offset = np.angle(np.vdot(image[covered], truth[covered]))
    np.testing.assert_allclose(image[covered] * np.exp(1j * offset), truth[covered], atol=0.05)


def test_a_group_of_crops_is_turned_as_one() -> None:
    """Crops of one group object share its unknown phase: ``add_group`` turns each group
    as a whole onto the image, and the groups then agree with the truth."""
    rng = np.random.default_rng(6)
    M = 16
    obj = np.exp(1j * rng.uniform(-1, 1, (90, 90)))
    positions = rng.uniform(20, 70, size=(36, 2))
    crops = physics.extract_patches(obj, positions, M)
    canvas = RunningCanvas(M)
    for members in np.arange(36).reshape(12, 3):
        turn = rng.uniform(-np.pi, np.pi)
        canvas.add_group(crops[members] * np.exp(1j * turn), positions[members, 0],
                         positions[members, 1], align=True)
    image, coverage, _ = canvas.image(*physics.canvas_geometry(positions, M))
    truth, _ = physics.stitch(crops, positions, M)
    covered = coverage > 0.5
    offset = np.angle(np.vdot(image[covered], truth[covered]))
    np.testing.assert_allclose(image[covered] * np.exp(1j * offset), truth[covered], atol=0.05)
