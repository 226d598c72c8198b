"""The long-lived worker: reuse, crash recovery, error messages, cancellation."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from plugin_support import Trained

from ptychopinn_plugin.client import WorkerCrashedError


def _pid(trained: Trained) -> int:
    client = trained.library.workers.current()
    assert client is not None and client.pid is not None
    return client.pid


def test_warm_reconstruct_pays_no_start_and_no_load(trained: Trained) -> None:
    pinn = trained.pinn
    list(pinn.reconstruct(trained.reconstruct_input))
    pid = _pid(trained)
    list(pinn.reconstruct(trained.reconstruct_input))
    assert _pid(trained) == pid
    assert pinn.last_timings['worker_start_s'] == 0.0
    assert pinn.last_timings['model_load_s'] == 0.0
    assert pinn.last_timings['inference_s'] > 0.0


def test_killed_worker_is_restarted_on_the_next_call(trained: Trained) -> None:
    pinn = trained.pinn
    before = list(pinn.reconstruct(trained.reconstruct_input))[-1]
    pid = _pid(trained)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while trained.library.workers.current().is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = list(pinn.reconstruct(trained.reconstruct_input))[-1]  # restarts, reloads the model
    assert _pid(trained) != pid
    assert pinn.last_timings['worker_start_s'] > 0.0
    assert pinn.last_timings['model_load_s'] > 0.0
    np.testing.assert_allclose(after.product.object_.get_array(),
                               before.product.object_.get_array(), rtol=1e-5, atol=1e-6)


def test_worker_error_reaches_ptychodus_with_its_message(trained: Trained, tmp_path: Path
                                                         ) -> None:
    pinn = trained.pinn
    broken = tmp_path / 'broken.zip'
    broken.write_bytes(trained.model_path.read_bytes())
    pinn.load_model_from_file(broken)
    try:
        broken.write_bytes(trained.model_path.read_bytes()[:-100])  # truncated after loading
        with pytest.raises(ValueError, match='broken.zip: corrupt or truncated model bundle'):
            list(pinn.reconstruct(trained.reconstruct_input))
        pid = _pid(trained)
        assert trained.library.workers.current().is_alive()  # an error is not a crash
    finally:
        pinn.load_model_from_file(trained.model_path)
    assert _pid(trained) == pid


def test_cancel_stops_training_promptly_and_keeps_the_worker(trained: Trained, tmp_path: Path
                                                            ) -> None:
    library, pinn = trained.library, trained.pinn
    library.settings.training.nepochs.set_value(200)
    try:
        training = pinn.train(trained.model_path.parent / 'train_data.npz', tmp_path)
        first = next(training)  # one epoch done
        assert first.progress == 1 and pinn.get_progress_goal() == 200
        pid = _pid(trained)
        tic = time.perf_counter()
        training.close()  # what Ptychodus does when the user presses Stop
        assert time.perf_counter() - tic < 30
        assert _pid(trained) == pid  # it stopped at a batch boundary: not killed
        assert not (tmp_path / 'model.zip').exists()  # a cancelled run saves no model
        assert not list(tmp_path.rglob('wts.h5.zip'))  # not even in ptychopinn_training/
        assert pinn.model_path == trained.model_path  # the loaded model is kept
        assert library.workers.current().call('ping')['pid'] == pid
    finally:
        library.settings.training.nepochs.set_value(1)


def test_worker_killed_during_training_raises_then_recovers(trained: Trained, tmp_path: Path
                                                           ) -> None:
    library, pinn = trained.library, trained.pinn
    library.settings.training.nepochs.set_value(200)
    try:
        training = pinn.train(trained.model_path.parent / 'train_data.npz', tmp_path)
        next(training)
        pid = _pid(trained)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError, match=f'pid {pid}.*restarted on the next call'):
            for _ in range(1000):  # epochs finished before the kill may still be queued
                next(training)
        assert not library.workers.current().is_alive()
        assert pinn.model_path == trained.model_path
    finally:
        library.settings.training.nepochs.set_value(1)
