"""One entry for scan input: an NPZ contract file or Ptychodus' own HDF5 files.

The command line accepts either wherever it takes data; this module decides which reader
applies, so the commands never care.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho.conventions import DataConventions
from ptycho.ptychodus_io import PtychodusScan, is_ptychodus_input, read_pair

logger = logging.getLogger(__name__)


@dataclass
class InputData:
    """A scan ready for the workflows, and the Ptychodus product it came from (if any)."""

    raw: Any  # ptycho.raw_data.RawData
    path: Path
    ptychodus: PtychodusScan | None = None


def load_data(path: str | os.PathLike[str],
              conventions: DataConventions | None = None) -> InputData:
    """Read ``path``: ``.npz`` through ``RawData.from_file`` (with the file's
    ``conventions``), else Ptychodus files (whose conventions Ptychodus fixes)."""
    conventions = conventions or DataConventions()
    text = os.fspath(path)
    if is_ptychodus_input(text):
        if not conventions.is_contract:
            raise ValueError(f'{text}: Ptychodus files carry their own conventions (DC centred, '
                             f'positions in metres about the object centre); --dc, --positions, '
                             f'--swap-xy and --diffraction-units apply to NPZ files only, found '
                             f'{conventions}')
        scan = read_pair(text)
        logger.info('Read %d patterns from %s + %s', len(scan.raw), scan.diffraction_path,
                    scan.product_path)
        return InputData(raw=scan.raw, path=scan.diffraction_path.parent, ptychodus=scan)
    p = Path(text)
    if not p.exists():
        raise FileNotFoundError(f'{p}: data file not found (expected an NPZ file following '
                                f'specs/data_contracts.md, or Ptychodus diffraction.h5 + '
                                f'product.h5)')
    from ptycho.raw_data import RawData

    raw = RawData.from_file(p, conventions)
    logger.info('Read %d patterns from %s', len(raw), p)
    return InputData(raw=raw, path=p)
