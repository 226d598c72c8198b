"""Progress bars: on a terminal only, never with PTYCHOPINN_PROGRESS=off (``--quiet``)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ptycho import progress


def test_bars_follow_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.enabled() is None  # tqdm decides: shown on a terminal, hidden otherwise
    monkeypatch.setenv(progress.ENV, 'off')
    assert progress.enabled() is False
    with progress.bar(3, 'x') as shown:
        assert shown.disable


def test_a_long_step_reports_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulation's bar reaches its total (tqdm writes to a terminal-like stream)."""
    from tqdm import tqdm as real_tqdm

    from ptycho.simulation import simulate_diffraction

    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    made: list = []

    def tqdm_on_terminal(*args, **kwargs):
        kwargs.update(file=stream, disable=False)
        made.append(real_tqdm(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr('tqdm.auto.tqdm', tqdm_on_terminal)
    monkeypatch.delenv(progress.ENV, raising=False)
    obj = np.ones((96, 96), np.complex128)
    probe = np.ones((32, 32), np.complex128)
    positions = np.full((70, 2), 48.0)
    simulate_diffraction(obj, probe, positions, poisson=False)
    assert made and made[-1].n == 70 and 'Simulating diffraction' in stream.getvalue()
