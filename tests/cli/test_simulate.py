"""``ptychopinn simulate``: a contract NPZ with ground truth and a preview beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cli_helpers import assert_user_error, run_cli


def test_simulate_writes_contract_npz_and_preview(small_sim: Path) -> None:
    from ptycho.raw_data import RawData

    raw = RawData.from_file(small_sim)
    assert len(raw) == 100
    assert raw.diff3d.shape == (100, 64, 64)
    assert raw.objectGuess is not None and np.iscomplexobj(raw.objectGuess)
    preview = small_sim.with_suffix('.png')
    assert preview.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # Nothing half-written left behind.
    assert sorted(p.name for p in small_sim.parent.iterdir()) == ['sim.npz', 'sim.png']


def test_simulate_prints_where_outputs_are(tmp_path: Path) -> None:
    result = run_cli('simulate', '--object', 'siemens', '--positions', 20, '--scan', 'raster',
                     '--seed', 1, '-o', tmp_path / 'out' / 's.npz', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / 'out' / 's.npz') in result.stdout
    assert str(tmp_path / 'out' / 's.png') in result.stdout
    assert (tmp_path / 'out' / 's.png').exists()


def test_simulate_rejects_unknown_object(tmp_path: Path) -> None:
    result = run_cli('simulate', '--object', 'cat', '-o', tmp_path / 's.npz', cwd=tmp_path)
    assert_user_error(result, '--object', 'cat')
    assert not (tmp_path / 's.npz').exists()


def test_simulate_rejects_bad_positions(tmp_path: Path) -> None:
    result = run_cli('simulate', '--positions', 'many', '-o', tmp_path / 's.npz', cwd=tmp_path)
    assert_user_error(result, '--positions', 'many')


def test_cli_choices_match_simulation_module() -> None:
    from ptycho import simulation
    from ptycho.cli.simulate import simulation_choices

    assert simulation_choices() == (simulation.OBJECT_KINDS, simulation.PROBE_KINDS,
                                     simulation.SCAN_KINDS)
