"""Shared fixtures: a tiny trained model, and a Ptychodus-side library to drive it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

import scenes  # noqa: E402


from plugin_support import Trained, make_library  # noqa: E402


@pytest.fixture(scope='session')
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One tiny torch PINN (1 epoch, 64 patterns), trained through the plugin."""
    root = tmp_path_factory.mktemp('trained')
    raw = scenes.simulate(64, seed=3)
    reconstruct_input = scenes.reconstruct_input(raw)
    library = make_library('pytorch')
    pinn = library.reconstructor('PINN')
    pinn.export_training_data(root / 'train_data.npz', reconstruct_input)
    training = pinn.train(root, root)
    goal = pinn.get_progress_goal()
    outputs = list(training)
    yield Trained(library, root / 'model.zip', raw, reconstruct_input, outputs, goal)
    library.shutdown()
