"""Fixtures for the command-line tests (helpers live in cli_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli


@pytest.fixture(scope='session')
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated NPZ (N=64, 100 positions) written by ``ptychopinn simulate``."""
    work = tmp_path_factory.mktemp('sim')
    result = run_cli('simulate', '--object', 'lines', '--positions', 100, '--nphotons', 1e9,
                     '--seed', 3, '-o', work / 'sim.npz', cwd=work)
    assert result.returncode == 0, result.stderr
    return work / 'sim.npz'


@pytest.fixture(scope='session')
def small_sim_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny scan (other seed) to reconstruct."""
    work = tmp_path_factory.mktemp('simtest')
    result = run_cli('simulate', '--positions', 64, '--seed', 4, '-o', work / 'test.npz',
                     cwd=work)
    assert result.returncode == 0, result.stderr
    return work / 'test.npz'
