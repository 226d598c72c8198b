"""A folder holding an unpacked bundle loads like the bundle: Ptychodus' built-in
PtychoPINN library unpacks ``IN/model.zip`` (a copied ``wts.h5.zip``) into a folder and hands
that folder to ``load_inference_bundle``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ptycho.bundle import BundleError, bundle_path, read_bundle, write_bundle
from ptycho.config.config import ModelConfig, TrainingConfig, to_dict


def _bundle(tmp_path: Path) -> Path:
    config = to_dict(TrainingConfig(model=ModelConfig(N=64), backend='pytorch'))
    return write_bundle(tmp_path / 'run', 'pytorch', {'model.pt': b'weights'}, config=config,
                        intensity_scale=12.5, model_names=['autoencoder'])


def test_unpacked_folder_reads_as_the_bundle(tmp_path: Path) -> None:
    zipped = read_bundle(_bundle(tmp_path).parent)
    unpacked = tmp_path / 'unpacked'
    with zipfile.ZipFile(zipped.path) as archive:
        archive.extractall(unpacked)
    assert bundle_path(unpacked) == unpacked / 'manifest.json'
    folder = read_bundle(unpacked, expected_backend='pytorch')
    assert folder.manifest == zipped.manifest and folder.files == zipped.files
    with pytest.raises(BundleError, match='trained with the pytorch backend'):
        read_bundle(unpacked, expected_backend='tensorflow')


def test_missing_bundle_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match='unpacked bundle with its manifest.json; Ptychodus '
                                          'batch mode wants that wts.h5.zip copied as '
                                          'IN/model.zip'):
        read_bundle(tmp_path)
