"""Ptychodus 1.7.0's own built-in PtychoPINN integration, run against this package.

Ptychodus switches its built-in (TensorFlow) integration on whenever ``ptycho`` is
importable. This test drives that integration's real child-process entry points,
``ptychodus.model.ptychopinn._subprocess.run_train`` and ``run_reconstruct``, in-process
with the same payloads its parent side builds (``ModelConfig(N=0, ...)`` for training,
files exported by ``save_ptychopinn_training_data`` holding integer detector counts and a
probe mode stack), and checks that the reconstruction it returns resembles the simulated
ground truth.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('tensorflow')
pytest.importorskip('ptychodus')

from ptychodus.api.geometry import PixelGeometry  # noqa: E402
from ptychodus.api.io import save_ptychopinn_training_data  # noqa: E402
from ptychodus.api.object import Object, ObjectCenter  # noqa: E402
from ptychodus.api.probe import ProbeSequence  # noqa: E402
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence  # noqa: E402
from ptychodus.api.product import Product, ProductMetadata  # noqa: E402
from ptychodus.api.reconstruct import ReconstructInput  # noqa: E402
from ptychodus.model.ptychopinn import _subprocess  # noqa: E402
from ptychodus.model.ptychopinn._payload import ReconstructPayload, TrainPayload  # noqa: E402

from ptycho import physics  # noqa: E402
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig  # noqa: E402
from ptycho.simulation import simulate_arrays  # noqa: E402

N = 64
PIXEL_M = 1e-8
NPHOTONS = 1e9


class _Queue:
    """Stands in for the multiprocessing queue the child writes its results to."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []

    def put(self, item: tuple[str, object]) -> None:
        self.items.append(item)


def _model_config(N_value: int) -> ModelConfig:
    # As ptychodus.model.ptychopinn.reconstructor._build_model_config with its defaults
    # (except n_filters_scale, kept small for a 2-core test machine).
    return ModelConfig(N=N_value, gridsize=1, n_filters_scale=1, model_type='pinn',
                       amp_activation='sigmoid', object_big=True, probe_big=True,
                       probe_mask=False, pad_object=True, probe_scale=4.0,
                       gaussian_smoothing_sigma=0.0)


def _reconstruct_input(counts: np.ndarray, positions_xy: np.ndarray, probe_stack: np.ndarray,
                       object_shape: tuple[int, int]) -> ReconstructInput:
    height, width = object_shape
    # ObjectGeometry maps x_px = (x_m - centre_x) / pixel + (width - 1) / 2.
    points = [ProbePosition(i, (x - (width - 1) / 2) * PIXEL_M, (y - (height - 1) / 2) * PIXEL_M)
              for i, (x, y) in enumerate(positions_xy)]
    initial_object = Object(np.ones(object_shape, np.complex64),
                            PixelGeometry(PIXEL_M, PIXEL_M), ObjectCenter(0.0, 0.0))
    metadata = ProductMetadata(name='sim', comments='', detector_distance_m=1.0,
                               photon_energy_eV=10000.0, probe_photon_count=NPHOTONS,
                               exposure_time_s=1.0, mass_attenuation_m2_per_kg=0.0,
                               tomography_angle_deg=0.0)
    product = Product(metadata=metadata, probe_positions=ProbePositionSequence(points),
                      probes=ProbeSequence(probe_stack, None, PixelGeometry(PIXEL_M, PIXEL_M)),
                      object_=initial_object, losses=[])
    return ReconstructInput(diffraction_patterns=counts,
                            bad_pixels=np.zeros(counts.shape[1:], dtype=bool), product=product)


@pytest.fixture(scope='module')
def simulated():
    sim = simulate_arrays(object_kind='lines', N=N, n_positions=320, nphotons=NPHOTONS,
                          object_size=150, seed=3)
    counts = np.rint(sim.diffraction ** 2).astype(np.uint32)  # what a detector delivers
    rng = np.random.default_rng(0)
    weak = 0.05 * sim.probe * np.exp(1j * rng.uniform(0, 2 * np.pi, sim.probe.shape))
    probe_stack = np.stack([sim.probe, weak]).astype(np.complex64)  # (modes, N, N)
    return sim, counts, probe_stack


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def test_builtin_train_then_reconstruct(simulated, tmp_path: Path) -> None:
    sim, counts, probe_stack = simulated
    shape = sim.object.shape
    n_train = 256
    inputs = tmp_path / 'input'
    inputs.mkdir()
    for name, part in (('train_data.npz', slice(None, n_train)),
                       ('test_data.npz', slice(n_train, None))):
        save_ptychopinn_training_data(
            inputs / name, _reconstruct_input(counts[part], sim.positions_xy[part],
                                              probe_stack, shape))
    with np.load(inputs / 'train_data.npz') as stored:
        assert stored['diff3d'].dtype == np.uint32 and stored['probeGuess'].shape == (2, N, N)

    # Parent side: _build_training_config leaves N = 0; the child sets it from the data.
    training_config = TrainingConfig(
        model=_model_config(0), train_data_file=Path(), test_data_file=None, batch_size=16,
        nepochs=10, mae_weight=0.0, nll_weight=1.0, realspace_mae_weight=0.0,
        realspace_weight=0.0, nphotons=NPHOTONS, positions_provided=True,
        probe_trainable=False, intensity_scale_trainable=True, output_dir=Path())
    output = tmp_path / 'model'
    output.mkdir()
    queue = _Queue()
    _subprocess.run_train(TrainPayload(training_config=training_config, input_path=inputs,
                                       output_path=output), queue)
    assert [tag for tag, _ in queue.items] == [_subprocess.TAG_TRAIN_OUTPUT,
                                               _subprocess.TAG_MODEL_SAVED]
    assert Path(queue.items[1][1]).is_file()  # output/wts.h5.zip
    assert (output / 'loss_curve.png').stat().st_size > 1024
    assert not Path('wts.h5.zip').exists()  # output_dir=Path() must not litter the cwd

    inference_config = InferenceConfig(model=_model_config(N), model_path=Path(),
                                       test_data_file=Path(), debug=False, output_dir=Path())
    reconstruct_input = _reconstruct_input(counts, sim.positions_xy, probe_stack, shape)
    queue = _Queue()
    _subprocess.run_reconstruct(ReconstructPayload(
        inference_config=inference_config, model_bundle_dir=output, n_nearest_neighbors=7,
        n_samples=1, reconstruct_input=reconstruct_input), queue)
    (tag, payload), = queue.items
    assert tag == _subprocess.TAG_OUTPUT
    image = pickle.loads(payload).product.object_.get_layer(0)

    canvas, origin = physics.canvas_geometry(sim.positions_xy, 20)
    assert image.shape == canvas
    x0, y0 = origin
    truth = sim.object[y0:y0 + canvas[0], x0:x0 + canvas[1]]
    # Compare well inside the scanned area (stitched edges have little coverage).
    inner = (slice(15, canvas[0] - 15), slice(15, canvas[1] - 15))
    rec, ref = image[inner], truth[inner]
    assert np.all(np.isfinite(rec)) and np.all(np.abs(rec) > 0)
    phase_corr = _pearson(np.angle(rec * np.exp(-1j * np.angle(np.vdot(ref, rec)))),
                          np.angle(ref))
    # A few epochs recover the phase structure first; the amplitude must at least be a
    # plausible transmission (the truth lies in 0.54..1.0) rather than noise or zeros.
    assert phase_corr > 0.4, phase_corr
    amplitude = np.abs(rec)
    assert 0.2 < np.median(amplitude) < 2.0, np.median(amplitude)
