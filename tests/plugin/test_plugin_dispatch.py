"""The design card's path: settings -> configs with ``backend`` -> ``update_legacy_dict`` ->
the dispatcher, for the plugin's train and reconstruct, with both backends.

The worker forwards its log records to the Ptychodus process; the dispatcher
(``ptycho.workflows.backend_selector.backend_for``) logs every hand-off with the config
type and the backend, so the records show which calls went through it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import scenes
from plugin_support import make_library

DISPATCHER = 'ptychopinn_plugin.worker.ptycho.workflows.backend_selector'  # as re-emitted


@pytest.mark.parametrize('backend', ['tensorflow', 'pytorch'])
def test_plugin_train_and_reconstruct_go_through_the_dispatcher(
        backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = scenes.simulate(64, seed=4)
    library = make_library(backend)
    try:
        pinn = library.reconstructor('PINN')
        reconstruct_input = scenes.reconstruct_input(raw)
        pinn.export_training_data(tmp_path / 'train_data.npz', reconstruct_input)
        with caplog.at_level(logging.INFO):
            list(pinn.train(tmp_path, tmp_path))
            assert pinn.last_backend == backend
            trained = [r.getMessage() for r in caplog.records if r.name == DISPATCHER]
            assert f'Dispatching TrainingConfig to the {backend} backend' in trained
            caplog.clear()
            list(pinn.reconstruct(reconstruct_input))
            assert pinn.last_backend == backend
            used = [r.getMessage() for r in caplog.records if r.name == DISPATCHER]
            assert f'Dispatching InferenceConfig to the {backend} backend' in used
            other = 'pytorch' if backend == 'tensorflow' else 'tensorflow'
            assert not any(other in message for message in trained + used)
    finally:
        library.shutdown()
