"""The torch refinement's thread rule (``ptycho_torch.refine``): one intra-op thread while it
runs on a CPU under a passive OpenMP wait, the process's count untouched otherwise and
restored afterwards (``bench/refine_threads.py`` measures why)."""

from __future__ import annotations

import pytest
import torch

from ptycho_torch.refine import _one_thread_if_passive


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize('policy, spin, inside', [
    ('PASSIVE', None, 1), ('passive', None, 1), ('ACTIVE', None, 2), (None, None, 2),
    ('PASSIVE', '30000', 2)])
def test_one_thread_only_under_a_passive_wait(policy, spin, inside, two_threads,
                                              monkeypatch) -> None:
    for name, value in (('OMP_WAIT_POLICY', policy), ('GOMP_SPINCOUNT', spin)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with _one_thread_if_passive(torch.device('cpu')):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == 2


def test_the_thread_count_comes_back_after_an_error(two_threads, monkeypatch) -> None:
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    monkeypatch.delenv('GOMP_SPINCOUNT', raising=False)
    with pytest.raises(RuntimeError, match='boom'):
        with _one_thread_if_passive(torch.device('cpu')):
            raise RuntimeError('boom')
    assert torch.get_num_threads() == 2


def test_other_devices_leave_the_cpu_threads_alone(two_threads, monkeypatch) -> None:
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    with _one_thread_if_passive(torch.device('meta')):
        assert torch.get_num_threads() == 2
