"""How the PyTorch backend spends a CPU's cores when OpenMP threads wait passively.

``import ptycho_torch`` sets ``OMP_WAIT_POLICY=PASSIVE`` (spinning threads made training
4-25x slower on a shared machine). The price: every parallel operation wakes sleeping
threads, which small operations feel most. So the work that is a chain of small operations
(the back-projection input and the refinement) runs on one intra-op thread per task, and
where there are independent tasks (groups of a scan) several Python threads run them side
by side: torch releases the GIL inside its kernels, so W workers of one thread use W cores
without any wake-up. Measured on 2 cores with a one-off script (network + back-projection
of 64 groups at N = 64, gridsize 2): 450 patterns/s with 2 OpenMP threads, 532 with one,
984 with two workers of one thread each; ``bench/live.py`` shows the effect on a stream
(README, Live scans).

Where the user lets threads spin (``OMP_WAIT_POLICY`` other than passive, or
``GOMP_SPINCOUNT`` set) or the work runs on a GPU, nothing here changes anything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar('T')
R = TypeVar('R')


def passive_wait() -> bool:
    """Whether OpenMP threads sleep while they wait (no spinning asked for)."""
    return (os.environ.get('OMP_WAIT_POLICY', '').strip().upper() == 'PASSIVE'
            and 'GOMP_SPINCOUNT' not in os.environ)


def cpu_workers(device: torch.device) -> int:
    """Python worker threads for independent tasks on ``device``: the intra-op thread count
    on a CPU under a passive wait, else 1 (the tasks then run in turn, each parallel)."""
    if device.type != 'cpu' or not passive_wait():
        return 1
    return max(1, torch.get_num_threads())


@contextlib.contextmanager
def one_intra_op_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread inside, on a CPU under a passive wait; the count is restored after.

    The count torch uses is the calling thread's OpenMP setting (threads started inside
    take the latest ``torch.set_num_threads``), so each thread sets and restores its own.
    """
    if device.type != 'cpu' or not passive_wait():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_in_workers(task: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[task(item) for item in items]``, run by ``workers`` threads, results in order.

    Each worker enters ``torch.inference_mode`` itself (grad modes are per thread), so
    ``task`` must not need gradients.
    """
    def run(item: T) -> R:
        with torch.inference_mode():
            return task(item)

    if workers <= 1 or len(items) <= 1:
        return [run(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                            thread_name_prefix='ptychopinn-infer') as pool:
        return list(pool.map(run, items))
