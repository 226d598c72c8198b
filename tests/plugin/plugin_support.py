"""Helpers shared by the plugin tests (imported by name; conftest only holds fixtures)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


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
    library.settings.model.gridsize.set_value(1)  # small and fast, not the default 2
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
