"""What the commands hand to ``ptycho.run_outputs``: reconstructions, loss histories and
ground truth, taken from the backends' results and the user's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


def outputs_reconstruction(recon: Any, data: Any) -> Any:
    """The :class:`ptycho.run_outputs.Reconstruction` written for a backend's stitched
    :class:`ptycho.workflows.contract.Reconstruction` of ``data`` (an ``InputData``);
    Ptychodus input supplies the physical pixel size for the figures' axes."""
    pixel = data.ptychodus.frame.pixel_size_m if getattr(data, 'ptychodus', None) else None
    return as_outputs(recon, data.raw.positions_xy, pixel_size_m=pixel)


def as_outputs(recon: Any, positions_xy: Any, *, pixel_size_m: float | None = None) -> Any:
    """The :class:`ptycho.run_outputs.Reconstruction` of a contract reconstruction: its
    probe and residuals, and the refined positions when a refinement moved them, else the
    scan's ``positions_xy``."""
    from ptycho.run_outputs import Reconstruction

    refined = getattr(recon, 'positions_xy', None)
    return Reconstruction(obj=recon.obj, coverage=recon.coverage, origin_xy=recon.origin_xy,
                          positions_xy=positions_xy if refined is None else refined,
                          pixel_size_m=pixel_size_m, probe=recon.probe,
                          probe_refined=recon.probe_refined, losses=tuple(recon.losses),
                          positions_refined=refined is not None)


def loss_history(history: Mapping[str, Any]) -> dict[str, list[float]]:
    """The train/validation losses of a backend's history as plain float lists."""
    return {k: [float(v) for v in history.get(k, []) or []] for k in ('train_loss', 'val_loss')}


def truth_of(data: Any) -> Any:
    """Ground truth from NPZ input only: a Ptychodus product's object is a starting guess."""
    if data is None or data.ptychodus is not None:
        return None
    return data.raw.objectGuess


def npz_arrays(path: Path, keys: tuple[str, ...], what: str, required: str) -> dict[str, Any]:
    """The arrays ``keys`` of the NPZ ``path`` that it holds (loaded, file closed); errors
    name the file and, for the ``required`` key (described by ``what``), what was expected."""
    import zipfile

    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f'{path}: no such file (expected an NPZ with the {what})')
    try:
        with np.load(path, allow_pickle=False) as data:
            if required not in data.files:
                raise ValueError(f'{path}: key "{required}": expected the {what}, found no '
                                 f'such key (keys: {sorted(data.files)})')
            return {key: np.asarray(data[key]) for key in keys if key in data.files}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f'{path}: not a readable NPZ file ({exc})') from exc


def load_truth(path: Path) -> tuple[Any, Any]:
    """``(objectGuess, positions_xy or None)`` from a ground-truth NPZ."""
    import numpy as np

    arrays = npz_arrays(path, ('objectGuess', 'xcoords', 'ycoords'),
                        'complex ground-truth object', 'objectGuess')
    truth = np.squeeze(arrays['objectGuess'])
    positions = None
    if 'xcoords' in arrays and 'ycoords' in arrays:
        positions = np.stack([arrays['xcoords'].astype(np.float64).ravel(),
                              arrays['ycoords'].astype(np.float64).ravel()], axis=1)
    if truth.ndim != 2:
        raise ValueError(f'{path}: key "objectGuess": expected a 2-D array, found {truth.shape}')
    return truth, positions
