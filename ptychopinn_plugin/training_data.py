"""Locate (or build) the training data for ``train(input_path, output_path)``.

Ptychodus passes ``train`` only directories, not the loaded scan. What is accepted is
:func:`ptycho.ptychodus_io.find_training_files` (shared with the PtychoPINN-Torch layer); a
Ptychodus ``diffraction.h5`` + ``product.h5`` pair (batch mode) is converted with
Ptychodus' own readers to a contract NPZ in the output directory, which the worker reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ptychodus.api.io import StandardFileLayout, load_diffraction_data, load_product
from ptychodus.api.reconstruct import prepare_reconstruct_input

from ptycho.ptychodus_io import TRAIN_NPZ, TrainingFiles, find_training_files as _find

from .conversion import scan_from_input, write_contract_npz

logger = logging.getLogger(__name__)

__all__ = ['TrainingFiles', 'find_training_files']


def find_training_files(input_path: Path, output_path: Path) -> TrainingFiles:
    """Resolve the training (and optional validation) NPZ for a training run."""
    files = _find(input_path)
    if not files.pair:
        return files
    diffraction = StandardFileLayout.DIFFRACTION.path(files.train)
    product = StandardFileLayout.PRODUCT.path(files.train)
    return TrainingFiles(_convert_workflow_dir(diffraction, product, Path(output_path)), None)


def _convert_workflow_dir(diffraction: Path, product: Path, output_path: Path) -> Path:
    """diffraction.h5 + product.h5 -> contract NPZ (amplitudes), via Ptychodus' readers."""
    logger.info('Converting %s + %s to PtychoPINN training data', diffraction, product)
    assembled = load_diffraction_data(diffraction)
    parameters = prepare_reconstruct_input(assembled, load_product(product))
    scan = scan_from_input(parameters)
    return write_contract_npz(output_path / TRAIN_NPZ, scan)
