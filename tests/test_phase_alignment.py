"""Group phase alignment: removes per-group constant phases, touches nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.phase_alignment import align_group_phases, group_phase_corrections

N, M = 32, 16


def _scan(rng: np.random.Generator, centre: float, n: int) -> np.ndarray:
    """Whole-pixel positions: the overlaps are registered to the pixel, and this object is
    white noise, which a sub-pixel misregistration would decorrelate."""
    return np.rint(centre + rng.uniform(-10, 10, (n, 2)))


def _patches(obj: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return physics.extract_patches(obj, positions, N)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def obj(rng):
    return (rng.uniform(0.5, 1.0, (160, 160)) * np.exp(1j * rng.uniform(-1, 1, (160, 160))))


def _spread_of_residual_phase(aligned: np.ndarray, truth: np.ndarray) -> float:
    """Spread of each group's remaining constant phase (0 when they all agree)."""
    residual = np.angle(np.sum(aligned * truth.conj(), axis=(-2, -1)))
    centred = np.angle(np.exp(1j * (residual - residual[0])))
    return float(np.abs(centred).max())


def test_random_group_phases_are_removed_up_to_one_global_phase(rng, obj):
    positions = _scan(rng, 60.0, 40)
    truth = _patches(obj, positions)
    scrambled = truth * np.exp(1j * rng.uniform(-np.pi, np.pi, len(truth)))[:, None, None]
    aligned = align_group_phases(scrambled, positions, M)
    assert _spread_of_residual_phase(scrambled, truth) > 1.0
    assert _spread_of_residual_phase(aligned, truth) < 1e-6
    np.testing.assert_allclose(np.abs(aligned), np.abs(scrambled), rtol=1e-12)


def test_separate_regions_are_aligned_separately(rng, obj):
    positions = np.concatenate([_scan(rng, 40.0, 12), _scan(rng, 120.0, 12)])
    truth = _patches(obj, positions)
    offsets = rng.uniform(-np.pi, np.pi, len(truth))
    aligned = align_group_phases(truth * np.exp(1j * offsets)[:, None, None], positions, M)
    assert _spread_of_residual_phase(aligned[:12], truth[:12]) < 1e-6
    assert _spread_of_residual_phase(aligned[12:], truth[12:]) < 1e-6


def test_isolated_groups_and_single_patch_are_left_alone(rng, obj):
    positions = np.array([[30.0, 30.0], [90.0, 90.0], [30.0, 130.0]])
    patches = _patches(obj, positions) * np.exp(1j * np.array([0.3, -1.0, 2.0]))[:, None, None]
    assert np.array_equal(group_phase_corrections(patches, positions, M), np.zeros(3))
    assert np.array_equal(group_phase_corrections(patches[:1], positions[:1], M), np.zeros(1))


def test_bad_input_is_named(rng, obj):
    patches = _patches(obj, _scan(rng, 60.0, 4))
    with pytest.raises(ValueError, match=r'one position per patch \(4\), found 3'):
        group_phase_corrections(patches, np.zeros((3, 2)), M)
    with pytest.raises(ValueError, match='crop size M must be in 1..32, found 40'):
        group_phase_corrections(patches, np.zeros((4, 2)), 40)


def test_corrections_average_to_zero_so_the_phase_level_is_kept(rng, obj):
    """The free global phase is fixed at 'no net rotation', not wherever the solver lands."""
    positions = _scan(rng, 60.0, 30)
    truth = _patches(obj, positions)
    offsets = rng.normal(0.0, 0.2, len(truth))
    phases = group_phase_corrections(truth * np.exp(1j * offsets)[:, None, None], positions, M)
    energy = np.sum(np.abs(truth[:, 8:24, 8:24]) ** 2, axis=(-2, -1))
    assert abs(np.angle(np.sum(energy * np.exp(1j * phases)))) < 1e-9
    # small scrambles are undone up to a small common rotation, not a random one
    assert np.abs(np.angle(np.exp(1j * (phases + offsets)))).max() < 0.2
