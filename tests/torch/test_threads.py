"""The CPU thread rules of ``ptycho_torch.threads``: one intra-op thread per task under a
passive OpenMP wait, one worker per core for independent groups, the process's thread
count untouched otherwise and restored afterwards (``bench/refine_threads.py`` and
``bench/speed.py`` measure why)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from ptycho_torch import threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def passive(monkeypatch):
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    monkeypatch.delenv('GOMP_SPINCOUNT', raising=False)


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
    with threads.one_intra_op_thread(torch.device('cpu')):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == 2
    assert threads.cpu_workers(torch.device('cpu')) == (2 if inside == 1 else 1)


def test_the_thread_count_comes_back_after_an_error(two_threads, passive) -> None:
    with pytest.raises(RuntimeError, match='boom'):
        with threads.one_intra_op_thread(torch.device('cpu')):
            raise RuntimeError('boom')
    assert torch.get_num_threads() == 2


def test_overlapping_uses_in_two_threads_each_restore_their_own(two_threads,
                                                               passive) -> None:
    inner_entered, outer_left = threading.Event(), threading.Event()
    seen = []

    def other() -> None:
        torch.set_num_threads(2)
        with threads.one_intra_op_thread(torch.device('cpu')):
            inner_entered.set()
            outer_left.wait(10)
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())

    with threads.one_intra_op_thread(torch.device('cpu')):
        worker = threading.Thread(target=other)
        worker.start()
        assert inner_entered.wait(10)
    outer_left.set()
    worker.join(10)
    assert seen == [1, 2] and torch.get_num_threads() == 2


def test_other_devices_leave_the_cpu_threads_alone(two_threads, passive) -> None:
    with threads.one_intra_op_thread(torch.device('meta')):
        assert torch.get_num_threads() == 2
    assert threads.cpu_workers(torch.device('meta')) == 1


def test_workers_keep_the_order_and_run_without_gradients() -> None:
    names = set()

    def task(i: int) -> tuple[int, bool]:
        names.add(threading.current_thread().name)
        return i * i, torch.is_inference_mode_enabled()

    out = threads.map_in_workers(task, list(range(7)), workers=2)
    assert out == [(i * i, True) for i in range(7)]
    assert all(name.startswith('ptychopinn-infer') for name in names)


def test_a_worker_error_reaches_the_caller() -> None:
    def task(i: int) -> int:
        if i == 3:
            raise ValueError('group 3')
        return i

    with pytest.raises(ValueError, match='group 3'):
        threads.map_in_workers(task, list(range(6)), workers=2)


class _Groups(SimpleNamespace):
    """The two fields of a torch container that reconstruct_groups reads."""

    def __len__(self) -> int:
        return len(self.X)


def test_reconstruct_groups_in_workers_equals_one_batch_in_turn(two_threads, passive,
                                                                monkeypatch) -> None:
    """The split among workers (batches of ceil(B / 2) groups) gives the groups' objects of
    a single batch on the caller's thread, in the same order."""
    from ptycho_torch.inference import reconstruct_groups
    from ptycho_torch.model import PtychoPINN_Lightning
    from ptycho_torch.torch_config import ModelConfig, TrainingConfig

    torch.manual_seed(0)
    N, B = 32, 7
    module = PtychoPINN_Lightning(ModelConfig(N=N, grid_size=(2, 2), n_filters_scale=1),
                                  TrainingConfig(nphotons=1e9))
    container = _Groups(X=torch.rand(B, 4, N, N),
                        local_offsets=(torch.rand(B, 1, 2, 4) - 0.5) * 4)
    model = module.diffraction_to_obj()
    split = reconstruct_groups(model, container, 1.0, batch_size=64)
    monkeypatch.setattr(threads, 'cpu_workers', lambda device: 1)
    whole = reconstruct_groups(model, container, 1.0, batch_size=64)
    assert split.shape == (B, N, N)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    assert torch.get_num_threads() == 2
