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


def load_truth(path: Path) -> tuple[Any, Any]:
    """``(objectGuess, positions_xy or None)`` from a ground-truth NPZ."""
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f'{path}: ground-truth file not found')
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'objectGuess' not in data.files:
                raise ValueError(f'{path}: key "objectGuess": expected the complex ground-truth '
                                 f'object, found no such key (keys: {sorted(data.files)})')
            truth = np.squeeze(np.asarray(data['objectGuess']))
            positions = None
            if 'xcoords' in data.files and 'ycoords' in data.files:
                positions = np.stack([np.asarray(data['xcoords'], np.float64).ravel(),
                                      np.asarray(data['ycoords'], np.float64).ravel()], axis=1)
    except (OSError, EOFError) as exc:
        raise ValueError(f'{path}: not a readable NPZ file ({exc})') from exc
    if truth.ndim != 2:
        raise ValueError(f'{path}: key "objectGuess": expected a 2-D array, found {truth.shape}')
    return truth, positions
