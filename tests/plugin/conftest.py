"""Shared fixtures: a tiny trained model, and a Ptychodus-side library to drive it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

import scenes  # noqa: E402


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Pythons: the checkout on the path, no GPU, offscreen Qt."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH', '')) if p)
    return {**os.environ, 'PYTHONPATH': path, 'CUDA_VISIBLE_DEVICES': '',
            'QT_QPA_PLATFORM': 'offscreen', 'TF_CPP_MIN_LOG_LEVEL': '2', **extra}


def make_library(backend: str = 'pytorch', **training: Any) -> Any:
    from ptychodus.api.settings import SettingsRegistry

    from ptychopinn_plugin.library import PinnDualReconstructorLibrary

    library = PinnDualReconstructorLibrary(SettingsRegistry())
    library.settings.backend.backend.set_value(backend)
    library.settings.model.n_filters_scale.set_value(1)
    library.settings.training.nepochs.set_value(1)
    for key, value in training.items():
        getattr(library.settings.training, key).set_value(value)
    return library


@dataclass
class Trained:
    library: Any
    model_path: Path
    raw: Any
    reconstruct_input: Any
    outputs: list[Any]
    goal_during_training: int

    @property
    def pinn(self) -> Any:
        return self.library.reconstructor('PINN')


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
