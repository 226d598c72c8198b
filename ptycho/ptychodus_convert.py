"""Ptychodus' in-memory objects <-> the PtychoPINN data contract: each convention once.

Both ways into PtychoPINN from Ptychodus go through here: the CLI's files
(:mod:`ptycho.ptychodus_io`) and the plugin's in-memory scans
(:mod:`ptychopinn_plugin.conversion`). What this module owns:

- positions: Ptychodus keeps probe positions in metres; PtychoPINN wants patch centres in
  object pixels, which sit :data:`~ptycho.physics.PTYCHODUS_PIXEL_OFFSET` after Ptychodus'
  own object pixels (:func:`patch_centres_px`, :meth:`Frame.positions_m`);
- the object frame: where object pixels live in metres, and where a stitched canvas lies
  on it (:class:`Frame`);
- what is read from a product: the probe stack without orthogonal probe relaxation
  (:func:`probe_stack`), layer 0 of the object as the object guess (:func:`object_guess`),
  bad detector pixels inpainted the way Ptychodus does before export (:func:`inpaint`);
- the output product: the input product with the object replaced on its pixel grid and the
  finite losses attached (:func:`replace_object`).

The core must not need Ptychodus to import: functions take Ptychodus objects as they
come and import ``ptychodus`` only where they build or process its objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho.physics import PTYCHODUS_PIXEL_OFFSET

logger = logging.getLogger(__name__)


@dataclass
class Frame:
    """Where object pixels live in metres: the reference frame of a scan.

    Ptychodus centres an object of ``width_px`` pixels on ``center_x_m``: its pixel
    ``(width_px - 1) / 2`` sits there (likewise in y).
    """

    pixel_size_m: float
    center_x_m: float = 0.0
    center_y_m: float = 0.0
    width_px: int = 1
    height_px: int = 1

    @classmethod
    def of_object(cls, object_: Any) -> 'Frame':
        """The frame of a Ptychodus ``Object`` (its pixel width is taken for both axes)."""
        geometry = object_.get_geometry()
        return cls(pixel_size_m=float(geometry.pixel_width_m),
                   center_x_m=float(geometry.center_x_m), center_y_m=float(geometry.center_y_m),
                   width_px=int(geometry.width_px), height_px=int(geometry.height_px))

    def canvas_center_m(self, origin_xy: Sequence[float], shape: tuple[int, int]
                        ) -> tuple[float, float]:
        """Centre (metres) of a canvas of ``shape`` whose pixel (0, 0) is ``origin_xy``."""
        height, width = shape
        cx = self.center_x_m + self.pixel_size_m * (
            origin_xy[0] + (width - 1) / 2 - (self.width_px - 1) / 2)
        cy = self.center_y_m + self.pixel_size_m * (
            origin_xy[1] + (height - 1) / 2 - (self.height_px - 1) / 2)
        return cx, cy

    def canvas_origin_px(self, center_xy_m: Sequence[float], shape: tuple[int, int]
                         ) -> tuple[float, float]:
        """Inverse of :meth:`canvas_center_m`."""
        height, width = shape
        ox = (center_xy_m[0] - self.center_x_m) / self.pixel_size_m \
            - (width - 1) / 2 + (self.width_px - 1) / 2
        oy = (center_xy_m[1] - self.center_y_m) / self.pixel_size_m \
            - (height - 1) / 2 + (self.height_px - 1) / 2
        return ox, oy

    def positions_m(self, positions_xy: ArrayLike, like: Any = None) -> Any:
        """PtychoPINN patch centres ``(M, 2)`` as ``(x, y)`` object pixels -> a Ptychodus
        ``ProbePositionSequence`` in metres (inverse of :func:`patch_centres_px`); with
        ``like`` (a sequence of M positions) its scan indexes and photon counts are kept,
        else the indexes are 0..M-1."""
        from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence

        xy = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
        x_m = self.center_x_m + self.pixel_size_m * (
            xy[:, 0] - PTYCHODUS_PIXEL_OFFSET - (self.width_px - 1) / 2)
        y_m = self.center_y_m + self.pixel_size_m * (
            xy[:, 1] - PTYCHODUS_PIXEL_OFFSET - (self.height_px - 1) / 2)
        if like is None:
            return ProbePositionSequence([ProbePosition(index, float(x), float(y))
                                          for index, (x, y) in enumerate(zip(x_m, y_m))])
        if len(like) != len(xy):
            raise ValueError(f'positions_m: expected {len(like)} positions to match the '
                             f'product\'s, found {len(xy)}')
        return ProbePositionSequence([
            ProbePosition(point.index, float(x), float(y), point.probe_photon_count)
            for point, x, y in zip(like, x_m, y_m)])


def patch_centres_px(product: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The product's probe positions as PtychoPINN patch centres ``(x_px, y_px)``: metres ->
    Ptychodus object pixels (its own mapping) -> + :data:`PTYCHODUS_PIXEL_OFFSET`."""
    geometry = product.object_.get_geometry()
    positions = product.probe_positions
    x_px = np.asarray(geometry.map_probe_positions_to_object_x_px(positions), dtype=np.float64)
    y_px = np.asarray(geometry.map_probe_positions_to_object_y_px(positions), dtype=np.float64)
    return x_px + PTYCHODUS_PIXEL_OFFSET, y_px + PTYCHODUS_PIXEL_OFFSET


def probe_stack(product: Any) -> NDArray[np.complexfloating]:
    """The product's probe modes ``(modes, H, W)``, without orthogonal probe relaxation;
    PtychoPINN reduces the modes with one rule (:func:`ptycho.probe.reduce_probe_modes`)."""
    return np.asarray(product.probes.get_probe_no_opr().get_array())


def object_guess(product: Any) -> NDArray[np.complexfloating]:
    """The product's object as a 2-D guess: layer 0 of a (multislice) object."""
    return np.asarray(product.object_.get_layer(0))


def inpaint(counts: NDArray, bad_pixels: NDArray[np.bool_], what: str) -> NDArray:
    """Detector counts with ``bad_pixels`` filled in as Ptychodus does before it exports
    PtychoPINN training data; ``counts`` itself is not modified."""
    if not bad_pixels.any():
        return counts
    from ptychodus.api.preprocess.diffraction import inpaint_bad_pixels

    logger.info('%s: inpainting %d bad pixels', what, int(bad_pixels.sum()))
    return inpaint_bad_pixels(counts, bad_pixels)


def loss_values(losses: Sequence[float]) -> list[Any]:
    """Per-epoch losses as Ptychodus ``LossValue`` (epoch = index); non-finite ones dropped."""
    from ptychodus.api.product import LossValue

    return [LossValue(epoch, float(value)) for epoch, value in enumerate(losses)
            if np.isfinite(value)]


def replace_object(product: Any, array: NDArray[np.complexfloating], *,
                   center_xy_m: Sequence[float] | None = None,
                   losses: Sequence[float] = (), probe: ArrayLike | None = None,
                   positions: Any = None) -> Any:
    """The output product: ``product`` (its metadata, positions and probes) with its object
    replaced by the 2-D ``array`` on the same pixel grid, centred at ``center_xy_m`` (by
    default where the input object was), with the per-epoch ``losses``; with ``probe`` (the
    probe refined with the object, (N, N)) in place of the input probes, same pixel grid;
    with ``positions`` (a ``ProbePositionSequence``, e.g. :meth:`Frame.positions_m` of the
    refined positions) in place of the input positions."""
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.product import Product

    before = product.object_
    center = before.get_center() if center_xy_m is None else \
        ObjectCenter(x_m=float(center_xy_m[0]), y_m=float(center_xy_m[1]))
    after = Object(array=np.asarray(array), pixel_geometry=before.get_pixel_geometry(),
                   center=center, layer_spacing_m=[])
    probes = product.probes if probe is None else ProbeSequence(
        array=np.asarray(probe, np.complex64), opr_weights=None,
        pixel_geometry=product.probes.get_pixel_geometry())
    return Product(metadata=product.metadata,
                   probe_positions=product.probe_positions if positions is None else positions,
                   probes=probes, object_=after, losses=loss_values(losses))
