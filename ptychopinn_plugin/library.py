"""The Ptychodus reconstructor library: settings groups, two reconstructors, one worker."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Iterator

from ptychodus.api.reconstruct import Reconstructor, ReconstructorLibrary
from ptychodus.api.settings import SettingsRegistry

from . import LIBRARY_NAME, RECONSTRUCTOR_NAMES
from .client import WorkerPool
from .reconstructor import PtychoPINNTrainableReconstructor
from .settings import PluginSettings

logger = logging.getLogger(__name__)


class PinnDualReconstructorLibrary(ReconstructorLibrary):
    """``PtychoPINN-Dual``: PINN and supervised models, TensorFlow or PyTorch backend."""

    def __init__(self, settings_registry: SettingsRegistry, **worker_options: object) -> None:
        super().__init__('ptychopinn_plugin')
        self.settings = PluginSettings.register(settings_registry)
        self.workers = WorkerPool(**worker_options)
        self.reconstructors = [PtychoPINNTrainableReconstructor(name, self.settings, self.workers)
                               for name in RECONSTRUCTOR_NAMES]
        atexit.register(self.workers.shutdown)

    @property
    def name(self) -> str:
        return LIBRARY_NAME

    def __iter__(self) -> Iterator[Reconstructor]:
        return iter(self.reconstructors)

    def reconstructor(self, name: str) -> PtychoPINNTrainableReconstructor:
        for reconstructor in self.reconstructors:
            if reconstructor.name.casefold() == name.casefold():
                return reconstructor
        raise KeyError(f'{LIBRARY_NAME} has no reconstructor {name!r}; '
                       f'known: {list(RECONSTRUCTOR_NAMES)}')

    def shutdown(self) -> None:
        """Stop the worker process (also done at interpreter exit)."""
        self.workers.shutdown()
