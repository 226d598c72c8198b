"""Ptychodus automation: reconstruct each scan folder that lands in the watched folder.

Ptychodus 1.7.0 watches its Automation data directory (``ptychodus.model.automation``: a
watchdog observer, a buffer that waits until a file stops changing, then a foreground
task) and runs the selected :class:`~ptychodus.api.workflow.FileBasedWorkflow` on each
file matching the workflow's pattern. This workflow takes a scan folder in Ptychodus'
standard layout, the layout of its own ``-b reconstruct`` input and of its remote
workflows: ``diffraction.h5`` written first, then ``product.h5`` (probe, positions,
starting object), so the product file landing is the signal that the scan is complete.

For each one it loads both files through Ptychodus' own API, reconstructs with the
PtychoPINN-Dual reconstructor the GUI has a model for (the warm worker: no process start,
no model load), registers the result as a product (it shows in the GUI) and saves it
beside the inputs as ``product_ptychopinn.h5`` with Ptychodus' HDF5 product writer,
written to a temporary name and renamed into place. Neither the output nor its temporary
matches the pattern, so the watcher never feeds them back.

Ptychodus runs every workflow step on its foreground (GUI) thread, one scan after the
other; the GUI waits while a scan is reconstructed. Its watcher reacts to files created
or modified in the folder, not to renames inside it: land a scan by writing it in place
or by moving its folder in from elsewhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptychodus.api.io import StandardFileLayout
from ptychodus.api.workflow import FileBasedWorkflow, WorkflowAPI

from ptycho.atomic import atomic_path

from . import LIBRARY_NAME

if TYPE_CHECKING:
    from .library import PinnDualReconstructorLibrary
    from .reconstructor import PtychoPINNTrainableReconstructor

logger = logging.getLogger(__name__)

WORKFLOW_SIMPLE_NAME = 'PtychoPINN_Dual'
WORKFLOW_DISPLAY_NAME = 'PtychoPINN-Dual: reconstruct each scan'
OUTPUT_SUFFIX = 'ptychopinn'
OUTPUT_NAME = f'product_{OUTPUT_SUFFIX}.h5'
"""The reconstructed product, written beside the scan's ``product.h5``."""
PRODUCT_FILE_TYPE = 'HDF5'
"""Ptychodus' product writer for ``.h5`` (``ptychodus.plugins.h5_product_file``)."""


def algorithm_key(reconstructor_name: str) -> str:
    """Ptychodus' processing key of one of our reconstructors (``ptychopinn-dual_pinn``)."""
    from ptychodus.model.processing import ProcessingAlgorithmParameter

    return ProcessingAlgorithmParameter.generate_key(LIBRARY_NAME, reconstructor_name)


@dataclass
class Binding:
    """The library and algorithm parameter of the Ptychodus model this workflow serves."""

    library: PinnDualReconstructorLibrary
    algorithm: Any  # ptychodus.model.processing.ProcessingAlgorithmParameter


class PinnDualFileBasedWorkflow(FileBasedWorkflow):
    """Reconstruct every ``<scan>/product.h5`` (with ``diffraction.h5`` beside it)."""

    def __init__(self) -> None:
        self.binding: Binding | None = None
        """Set by the launcher once Ptychodus has built our library (same ``ModelCore``)."""

    @property
    def is_watch_recursive(self) -> bool:
        return True  # one sub-folder per scan

    def get_watch_file_pattern(self) -> str:
        return str(StandardFileLayout.PRODUCT)

    def execute(self, api: WorkflowAPI, file_path: Path) -> None:
        """Reconstruct one scan; a failure is one log line and never stops the automation."""
        try:
            self._execute(api, Path(file_path))
        except Exception as exc:  # noqa: BLE001 - the next scan must still be processed
            logger.debug('Automation failed for %s', file_path, exc_info=True)
            logger.error('PtychoPINN automation: %s not reconstructed: %s', file_path.parent,
                         ' '.join(str(exc).split()) or type(exc).__name__)

    # -----------------------------------------------------------------------------------
    def _execute(self, api: WorkflowAPI, product_path: Path) -> None:
        folder = product_path.parent
        diffraction_path = folder / StandardFileLayout.DIFFRACTION
        output_path = folder / OUTPUT_NAME
        if not diffraction_path.is_file():
            raise FileNotFoundError(f'{diffraction_path} not found: a scan folder holds '
                                    f'{StandardFileLayout.DIFFRACTION}, written before '
                                    f'{StandardFileLayout.PRODUCT}')
        if _is_newer(output_path, (product_path, diffraction_path)):
            logger.info('PtychoPINN automation: %s is already reconstructed (%s is newer than '
                        'its inputs)', folder, OUTPUT_NAME)
            return
        reconstructor = self._reconstructor()
        diffraction = api.load_assembled_diffraction_data(diffraction_path)
        scan = api.load_product(product_path, diffraction=diffraction)
        scan.rename_product(folder.name)
        # Called directly, not through ``reconstruct_local(block=True)``: that one drains
        # Ptychodus' foreground queue when it finishes, which would start the next scan's
        # workflow inside this one (each scan saved only after all queued ones, and one
        # stack level per queued scan).
        outputs = list(reconstructor.reconstruct(scan.get_reconstruct_input()))
        if not outputs:
            raise RuntimeError(f'{reconstructor.name} returned no reconstruction')
        result = api.register_product(outputs[-1].product, diffraction=diffraction)
        result.rename_product(f'{folder.name}_{OUTPUT_SUFFIX}')
        with atomic_path(output_path) as tmp:
            result.save_product(tmp, file_type=PRODUCT_FILE_TYPE)
        logger.info('PtychoPINN automation: %s reconstructed with %s %s -> %s', folder,
                    LIBRARY_NAME, reconstructor.name, output_path)

    def _reconstructor(self) -> PtychoPINNTrainableReconstructor:
        """The selected PtychoPINN-Dual algorithm if it has a model, else one that has."""
        if self.binding is None:
            raise RuntimeError(f'the {LIBRARY_NAME} library is not registered with this '
                               f'Ptychodus; start it with ptychodus-pinn')
        loaded = {algorithm_key(r.name): r for r in self.binding.library.reconstructors
                  if r.is_model_loaded()}
        current = self.binding.algorithm.get_value()
        if current in loaded:
            return loaded[current]
        if not loaded:
            raise RuntimeError(f'no {LIBRARY_NAME} model is loaded; train one or use '
                               f'"Load Model..." in the Reconstructors view first')
        key, reconstructor = next(iter(loaded.items()))
        logger.info('PtychoPINN automation: the selected algorithm %r has no PtychoPINN model; '
                    'using %r', current, key)
        return reconstructor


def _is_newer(output: Path, inputs: tuple[Path, ...]) -> bool:
    """True when ``output`` exists and was written after every input (a rerun is a no-op)."""
    try:
        written = output.stat().st_mtime_ns
        return all(written >= path.stat().st_mtime_ns for path in inputs)
    except FileNotFoundError:
        return False
