"""Locate (or build) the training data for ``train(input_path, output_path)``.

Ptychodus passes ``train`` only directories, not the loaded scan. We accept, in order:
an ``.npz`` file; a directory holding ``train_data.npz`` (optional ``test_data.npz`` for
validation) or exactly one other ``.npz`` (what "Export Training Data..." wrote); or a
Ptychodus workflow directory with ``diffraction.h5`` + ``product.h5`` (batch mode), which
is converted with Ptychodus' own readers to a contract NPZ in the output directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ptychodus.api.io import StandardFileLayout, load_diffraction_data, load_product
from ptychodus.api.reconstruct import prepare_reconstruct_input

from .conversion import scan_from_input, write_contract_npz

logger = logging.getLogger(__name__)

TRAIN_NPZ = 'train_data.npz'
TEST_NPZ = 'test_data.npz'


@dataclass(frozen=True)
class TrainingFiles:
    train: Path
    test: Path | None


def find_training_files(input_path: Path, output_path: Path) -> TrainingFiles:
    """Resolve the training (and optional validation) NPZ for a training run."""
    input_path = Path(input_path)
    if input_path.is_file():
        if input_path.suffix != '.npz':
            raise ValueError(f'{input_path}: expected a training-data .npz file (written by '
                             f'"Export Training Data..."), found a {input_path.suffix!r} file')
        return TrainingFiles(input_path, None)
    if not input_path.is_dir():
        raise FileNotFoundError(f'{input_path}: training data directory not found')
    train, test = input_path / TRAIN_NPZ, input_path / TEST_NPZ
    if train.is_file():
        return TrainingFiles(train, test if test.is_file() else None)
    npz = sorted(p for p in input_path.glob('*.npz') if p.name != TEST_NPZ)
    if len(npz) == 1:
        return TrainingFiles(npz[0], test if test.is_file() else None)
    if len(npz) > 1:
        raise ValueError(f'{input_path}: several .npz files {[p.name for p in npz]}; name the '
                         f'training file {TRAIN_NPZ} (and the validation file {TEST_NPZ})')
    diffraction = StandardFileLayout.DIFFRACTION.path(input_path)
    product = StandardFileLayout.PRODUCT.path(input_path)
    if diffraction.is_file() and product.is_file():
        return TrainingFiles(_convert_workflow_dir(diffraction, product, Path(output_path)), None)
    raise FileNotFoundError(
        f'{input_path}: no training data: expected {TRAIN_NPZ} (from "Export Training '
        f'Data..."), one .npz file, or {diffraction.name} + {product.name}')


def _convert_workflow_dir(diffraction: Path, product: Path, output_path: Path) -> Path:
    """diffraction.h5 + product.h5 -> contract NPZ (amplitudes), via Ptychodus' readers."""
    logger.info('Converting %s + %s to PtychoPINN training data', diffraction, product)
    assembled = load_diffraction_data(diffraction)
    parameters = prepare_reconstruct_input(assembled, load_product(product))
    scan = scan_from_input(parameters)
    return write_contract_npz(output_path / TRAIN_NPZ, scan)
