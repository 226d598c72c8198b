"""The plugin's output product carries the probe its object was made with.

With "Refinement Epochs" set, the worker refines the network's image on the scan's own
data and the product Ptychodus gets holds the refined probe (not the input one), the refined
probe positions and the refinement's residual per epoch; with it at 0 the input probe and
positions come back unchanged.
"""

from __future__ import annotations

import numpy as np

from plugin_support import Trained


def _probe(product) -> np.ndarray:
    return product.probes.get_probe_no_opr().get_array()


def _positions(product) -> np.ndarray:
    positions = product.probe_positions
    return np.stack([positions.get_indexes(), positions.get_coordinates_x_m(),
                     positions.get_coordinates_y_m()], axis=1)


def test_the_output_product_holds_the_refined_probe(trained: Trained) -> None:
    parameters = trained.reconstruct_input
    given = _probe(parameters.product)
    inference = trained.library.settings.inference
    default = inference.refine_epochs.get_value()
    try:
        inference.refine_epochs.set_value(0)
        plain = list(trained.pinn.reconstruct(parameters))[-1].product
        inference.refine_epochs.set_value(2)
        refined = list(trained.pinn.reconstruct(parameters))[-1].product
    finally:
        inference.refine_epochs.set_value(default)
    np.testing.assert_array_equal(_probe(plain), given)
    probe = _probe(refined)
    assert probe.shape == given.shape and np.all(np.isfinite(probe))
    assert not np.allclose(probe, given)
    assert refined.probes.get_pixel_geometry() == parameters.product.probes.get_pixel_geometry()
    losses = [loss.value for loss in refined.losses]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert refined.object_.get_array().shape == plain.object_.get_array().shape
    # Positions refined too (the default): same scan indexes, moved by about a pixel or
    # less, their mean kept; at 0 epochs the input positions come back.
    given_positions = _positions(parameters.product)
    np.testing.assert_array_equal(_positions(plain), given_positions)
    moved = _positions(refined)
    np.testing.assert_array_equal(moved[:, 0], given_positions[:, 0])
    pixel = parameters.product.object_.get_geometry().pixel_width_m
    shift = (moved[:, 1:] - given_positions[:, 1:]) / pixel
    assert 0 < np.abs(shift).max() < 3, np.abs(shift).max()
    np.testing.assert_allclose(shift.mean(axis=0), 0, atol=1e-3)
