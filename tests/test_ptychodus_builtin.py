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

from ptychodus.api.io import save_ptychopinn_training_data  # noqa: E402
from ptychodus.model.ptychopinn import _subprocess  # noqa: E402
from ptychodus.model.ptychopinn._payload import ReconstructPayload, TrainPayload  # noqa: E402

from ptycho import physics  # noqa: E402
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig  # noqa: E402
from ptychodus_scan import (N, NPHOTONS, Queue, phase_correlation, reconstruct_input,  # noqa: E402
                            simulated_scan)


def _model_config(N_value: int) -> ModelConfig:
    # As ptychodus.model.ptychopinn.reconstructor._build_model_config with its defaults
    # (except n_filters_scale, kept small for a 2-core test machine).
    return ModelConfig(N=N_value, gridsize=1, n_filters_scale=1, model_type='pinn',
                       amp_activation='sigmoid', object_big=True, probe_big=True,
                       probe_mask=False, pad_object=True, probe_scale=4.0,
                       gaussian_smoothing_sigma=0.0)


@pytest.fixture(scope='module')
def simulated():
    return simulated_scan()


def test_builtin_train_then_reconstruct(simulated, tmp_path: Path) -> None:
    sim, counts, probe_stack = simulated
    shape = sim.object.shape
    n_train = 256
    inputs = tmp_path / 'input'
    inputs.mkdir()
    for name, part in (('train_data.npz', slice(None, n_train)),
                       ('test_data.npz', slice(n_train, None))):
        save_ptychopinn_training_data(
            inputs / name, reconstruct_input(counts[part], sim.positions_xy[part],
                                             probe_stack, np.ones(shape)))
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
    queue = Queue()
    _subprocess.run_train(TrainPayload(training_config=training_config, input_path=inputs,
                                       output_path=output), queue)
    assert [tag for tag, _ in queue.items] == [_subprocess.TAG_TRAIN_OUTPUT,
                                               _subprocess.TAG_MODEL_SAVED]
    assert Path(queue.items[1][1]).is_file()  # output/wts.h5.zip
    assert (output / 'loss_curve.png').stat().st_size > 1024
    assert not Path('wts.h5.zip').exists()  # output_dir=Path() must not litter the cwd

    inference_config = InferenceConfig(model=_model_config(N), model_path=Path(),
                                       test_data_file=Path(), debug=False, output_dir=Path())
    scan_input = reconstruct_input(counts, sim.positions_xy, probe_stack, np.ones(shape))
    queue = Queue()
    _subprocess.run_reconstruct(ReconstructPayload(
        inference_config=inference_config, model_bundle_dir=output, n_nearest_neighbors=7,
        n_samples=1, reconstruct_input=scan_input), queue)
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
    phase_corr = phase_correlation(rec, ref)
    # A few epochs recover the phase structure first; the amplitude must at least be a
    # plausible transmission (the truth lies in 0.54..1.0) rather than noise or zeros.
    assert phase_corr > 0.4, phase_corr
    amplitude = np.abs(rec)
    assert 0.2 < np.median(amplitude) < 2.0, np.median(amplitude)
