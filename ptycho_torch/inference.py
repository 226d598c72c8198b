"""Batched reconstruction and native torch stitching of a scan.

One forward pass per group under ``torch.inference_mode``; the per-group objects are then
placed at their global offsets by :func:`ptycho_torch.physics.stitch` (no TensorFlow).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ptycho import progress
from ptycho.phase_alignment import group_phase_corrections
from ptycho.physics import default_crop
from ptycho_torch import physics, threads
from ptycho_torch.data import PtychoDataContainerTorch
from ptycho_torch.model import DiffractionToObject

logger = logging.getLogger(__name__)


@dataclass
class Stitched:
    """A stitched reconstruction and where it lies in object coordinates."""

    image: np.ndarray          # (H, W) complex64
    coverage: np.ndarray       # (H, W) float32
    origin_xy: tuple[float, float]
    M: int

    @property
    def uncovered(self) -> int:
        return int(np.count_nonzero(self.coverage < physics.COVERAGE_EPS))


def resolve_device(name: str) -> torch.device:
    """The torch device an ``InferenceConfig.device`` names ('auto': a GPU when visible).

    Asking for a GPU that is not there is an error naming the setting, not a silent CPU run.
    """
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda':
        count = torch.cuda.device_count()
        index = 0 if device.index is None else device.index
        if index >= count:
            raise ValueError(f'InferenceConfig.device: expected a visible CUDA GPU, found '
                             f'{name!r} with {count} GPU(s) visible (torch.cuda.device_count())')
    return device


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def reconstruct_groups(model: DiffractionToObject, container: PtychoDataContainerTorch,
                       intensity_scale: float, batch_size: int = 256,
                       device: torch.device | None = None, precision: str | None = None
                       ) -> Tensor:
    """Complex object of every group (B, N, N), on ``device``.

    ``precision`` (``ModelConfig.network_precision`` values): the network's arithmetic
    for this run, default the model's own (``InferenceConfig.precision_override``).

    ``device`` (default: where the model's parameters are) is where the network and its
    back-projection input run; the model is moved there and the objects stay there, so
    stitching can follow on the same device. On a CPU under the passive OpenMP wait the
    batches are split among one-thread workers, one per core (:mod:`ptycho_torch.threads`):
    a batch is then at most ``ceil(B / workers)`` groups, so even a small chunk of a live
    scan uses every core.
    """
    model.eval()
    if device is None:
        device = _device_of(model)
    model.to(device)
    total = len(container)
    workers = threads.cpu_workers(device)
    size = max(1, min(batch_size, math.ceil(total / workers)))
    spans = [(begin, min(begin + size, total)) for begin in range(0, total, size)]
    counting = threading.Lock()
    with progress.bar(total, 'Reconstructing', 'group') as shown:
        def run(span: tuple[int, int]) -> Tensor:
            X = container.X[span[0]:span[1]].to(device) * intensity_scale
            offsets = container.local_offsets[span[0]:span[1]].to(device)
            out = model(X, offsets, precision)[..., 0]
            with counting:
                shown.update(len(X))
            return out

        with threads.one_intra_op_thread(device):
            outputs = threads.map_in_workers(run, spans, workers)
    if not outputs:
        with torch.inference_mode():
            return model(container.X[:0].to(device), container.local_offsets[:0].to(device),
                         precision)[..., 0]
    return torch.cat(outputs)


def transform_positions(positions_xy: np.ndarray, flip_x: bool, flip_y: bool,
                        transpose: bool) -> np.ndarray:
    """Mirror/transposed copy of (x, y) positions (the input is not modified)."""
    out = np.array(positions_xy, dtype=np.float64, copy=True)
    if flip_x:
        out[:, 0] = -out[:, 0]
    if flip_y:
        out[:, 1] = -out[:, 1]
    if transpose:
        out = out[:, ::-1].copy()
    return out


def resolve_crop(M: int | None, N: int) -> int:
    """Crop size for stitching: :func:`ptycho.physics.default_crop` by default; larger than N
    falls back to it."""
    if M is None:
        return default_crop(N)
    M = int(M)
    if M > N:
        logger.warning('Stitching crop M=%d exceeds the patch size N=%d; using the default '
                       'central crop M=%d', M, N, default_crop(N))
        return default_crop(N)
    if M < 1:
        raise ValueError(f'stitching crop M: expected 1..{N}, found {M}')
    return M


def stitch_groups(objects: Tensor, positions_xy: np.ndarray, M: int,
                  canvas_shape: tuple[int, int] | None = None,
                  origin_xy: tuple[float, float] | None = None,
                  align_phase: bool = True, weights: Tensor | None = None) -> Stitched:
    """Stitch per-group objects at their positions; canvas fits all positions by default.

    ``align_phase``: first remove the groups' mutually inconsistent constant phases
    (:mod:`ptycho.phase_alignment`; each group's data cannot fix its own). ``weights``
    (M, M): a weighted average of the crops (:func:`ptycho_torch.physics.stitch`).
    """
    if canvas_shape is None or origin_xy is None:
        canvas_shape, origin_xy = physics.canvas_geometry(positions_xy, M)
    if align_phase:
        phases = group_phase_corrections(objects.detach().cpu().numpy(), positions_xy, M)
        factors = torch.from_numpy(np.exp(1j * phases)).to(objects.device, objects.dtype)
        objects = objects * factors[:, None, None]
    image, coverage = physics.stitch(objects, torch.from_numpy(positions_xy), M,
                                     canvas_shape, origin_xy, weights=weights)
    stitched = Stitched(image.cpu().numpy().astype(np.complex64),
                        coverage.cpu().numpy().astype(np.float32),
                        (float(origin_xy[0]), float(origin_xy[1])), M)
    if stitched.uncovered:
        logger.info('Stitched %dx%d image: %d pixels not covered by any patch (left at 0)',
                    *stitched.image.shape, stitched.uncovered)
    return stitched


def reconstruct_and_stitch(model: DiffractionToObject, container: PtychoDataContainerTorch,
                           intensity_scale: float, *, flip_x: bool = False, flip_y: bool = False,
                           transpose: bool = False, M: int | None = None, batch_size: int = 256,
                           canvas_shape: tuple[int, int] | None = None,
                           origin_xy: tuple[float, float] | None = None,
                           device: torch.device | None = None
                           ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Amplitude, phase and results (``reconstruction``, ``coverage``, ...) of a scan."""
    objects = reconstruct_groups(model, container, intensity_scale, batch_size, device)
    positions = transform_positions(container.global_offsets.numpy(), flip_x, flip_y, transpose)
    crop = resolve_crop(M, container.N)
    stitched = stitch_groups(objects, positions, crop, canvas_shape, origin_xy)
    results: dict[str, Any] = {
        'reconstruction': stitched.image, 'coverage': stitched.coverage,
        'origin_xy': stitched.origin_xy, 'M': crop, 'uncovered_pixels': stitched.uncovered,
        'patches': objects.cpu().numpy(), 'positions_xy': positions,
    }
    return np.abs(stitched.image), np.angle(stitched.image), results
