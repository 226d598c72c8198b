"""Ptychodus' own files in and out: a diffraction/product pair read, a product written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_no_temporaries, write_ptychodus_pair

from ptycho.physics import PTYCHODUS_PIXEL_OFFSET

pytest.importorskip('ptychodus')


def test_pair_reads_as_contract_data(tmp_path: Path, small_sim: Path) -> None:
    from ptycho.data_files import load_data
    from ptycho.raw_data import RawData

    scan_dir = write_ptychodus_pair(small_sim, tmp_path / 'scan')
    reference = RawData.from_file(small_sim)
    for spelling in (scan_dir, scan_dir / 'diffraction.h5', scan_dir / 'product.h5',
                     f'{scan_dir / "diffraction.h5"},{scan_dir / "product.h5"}'):
        data = load_data(spelling)
        assert data.ptychodus is not None
        raw = data.raw
        # counts -> amplitudes; positions back in object pixels
        np.testing.assert_allclose(raw.diff3d, reference.diff3d, rtol=1e-3, atol=0.51)
        np.testing.assert_allclose(raw.xcoords, reference.xcoords, atol=1e-6)
        np.testing.assert_allclose(raw.ycoords, reference.ycoords, atol=1e-6)
        assert raw.objectGuess.shape == reference.objectGuess.shape


def test_product_written_and_read_back_with_ptychodus(tmp_path: Path, small_sim: Path) -> None:
    from ptychodus.api.io import load_product

    from ptycho.data_files import load_data
    from ptycho.ptychodus_io import read_product_object, write_product

    rng = np.random.default_rng(0)
    canvas = (rng.random((40, 50)) * np.exp(1j * rng.random((40, 50)))).astype(np.complex64)
    raw = load_data(small_sim).raw
    # From NPZ input: placeholder geometry, origin recoverable.
    path = write_product(tmp_path / 'p.h5', canvas, (12.0, 7.0), positions_xy=raw.positions_xy,
                         probe=raw.probeGuess, losses=[3.0, 2.0, 1.5])
    product = load_product(path)
    np.testing.assert_array_equal(product.object_.get_layer(0), canvas)
    assert [loss.value for loss in product.losses] == [3.0, 2.0, 1.5]
    assert len(product.probe_positions) == len(raw)
    back = read_product_object(path)
    assert back.origin_xy == pytest.approx((12.0, 7.0))
    # Positions map onto the canvas at (position - origin), in Ptychodus' pixel convention
    # (half a pixel before our patch centres).
    geometry = product.object_.get_geometry()
    x_px = geometry.map_probe_positions_to_object_x_px(product.probe_positions)
    np.testing.assert_allclose(x_px, raw.xcoords - 12.0 - PTYCHODUS_PIXEL_OFFSET, atol=1e-6)

    # From Ptychodus input: metadata, positions and probe of the source are kept.
    scan = load_data(write_ptychodus_pair(small_sim, tmp_path / 'scan')).ptychodus
    path = write_product(tmp_path / 'q.h5', canvas, (12.0, 7.0), positions_xy=raw.positions_xy,
                         probe=raw.probeGuess, source=scan)
    product = load_product(path)
    assert product.metadata.name == 'test scan'
    geometry = product.object_.get_geometry()
    x_px = geometry.map_probe_positions_to_object_x_px(product.probe_positions)
    np.testing.assert_allclose(x_px, raw.xcoords - 12.0 - PTYCHODUS_PIXEL_OFFSET, atol=1e-6)
    assert_no_temporaries(tmp_path)
