"""Ptychodus 1.7.0's own built-in PtychoPINN-Torch library, run against this package.

Ptychodus switches ``ptychopinn-torch_unsupervised`` / ``_supervised`` on whenever
``ptycho_torch`` and ``lightning`` are importable. This drives its real child-process entry
points, ``ptychodus.model.ptychopinn_torch._subprocess.run_train`` and ``run_reconstruct``,
in-process with payloads built by its own parent-side ``_build_configs`` from its own
settings groups (a few values changed as a user would in the panel), on training data
written by its own ``save_ptychopinn_training_data``, and scores what comes back against the
simulated ground truth.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('ptychodus')

from ptychodus.api.io import save_ptychopinn_training_data  # noqa: E402
from ptychodus.api.settings import SettingsRegistry  # noqa: E402
from ptychodus.model.ptychopinn_torch import _subprocess  # noqa: E402
from ptychodus.model.ptychopinn_torch._payload import ReconstructPayload, TrainPayload  # noqa: E402
from ptychodus.model.ptychopinn_torch.reconstructor import _build_configs  # noqa: E402
from ptychodus.model.ptychopinn_torch.settings import (  # noqa: E402
    PtychoPINNTorchDataSettings, PtychoPINNTorchInferenceSettings, PtychoPINNTorchModelSettings,
    PtychoPINNTorchTrainingSettings)

from ptycho_torch.api.base_api import centred_canvas  # noqa: E402
from ptycho_torch.api.settings_map import UnsupportedSettingError  # noqa: E402
from ptychodus_scan import (N, Queue, phase_correlation, reconstruct_input,  # noqa: E402
                            simulated_scan)


def _settings(**changes: object):
    """Ptychodus' four settings groups with its defaults, then ``group.name=value`` changes."""
    registry = SettingsRegistry()
    groups = {'data': PtychoPINNTorchDataSettings(registry),
              'model': PtychoPINNTorchModelSettings(registry),
              'training': PtychoPINNTorchTrainingSettings(registry),
              'inference': PtychoPINNTorchInferenceSettings(registry)}
    for key, value in changes.items():
        group, name = key.split('__')
        getattr(groups[group], name).set_value(value)
    return groups


EPOCHS = 8

# What a user on a 2-core machine changes in the panel: the patch size of the data, a
# small network and few epochs, the CPU; and, on a scan this small, all positions for
# training (Ptychodus' default x/y bounds 0.1-0.9 keep 64 % of them: 12 epochs on those
# gave phase correlation 0.24 instead of 0.91).
USER_CHANGES = dict(data__model_size=N, model__num_filters_scale=1, training__epochs=EPOCHS,
                    training__device='cpu', training__num_dataloader_workers=0,
                    data__x_lower_bound=0.0, data__x_upper_bound=1.0,
                    data__y_lower_bound=0.0, data__y_upper_bound=1.0)


def _configs(mode: str, **changes: object):
    groups = _settings(**{**USER_CHANGES, **changes})
    return _build_configs(mode, groups['data'], groups['model'], groups['training'],
                          groups['inference'])


@pytest.fixture(scope='module')
def simulated():
    return simulated_scan()


def _truth_on_output_grid(sim, image_shape: tuple[int, int]) -> np.ndarray:
    """The simulated object on the grid of the returned image: Ptychodus centres its
    object on the scan, so output pixel j sits at scan-centre - (W - 1)/2 + j."""
    height, width = image_shape
    centre = (sim.positions_xy.min(axis=0) + sim.positions_xy.max(axis=0)) / 2
    x0 = int(round(centre[0] - (width - 1) / 2))
    y0 = int(round(centre[1] - (height - 1) / 2))
    return sim.object[y0:y0 + height, x0:x0 + width]


@pytest.mark.parametrize('mode', ['Unsupervised', 'Supervised'])
def test_builtin_torch_train_then_reconstruct(simulated, tmp_path: Path, mode: str) -> None:
    sim, counts, probe_stack = simulated
    n_train = 256
    known = sim.object if mode == 'Supervised' else np.ones_like(sim.object)
    inputs = tmp_path / 'input'
    inputs.mkdir()
    save_ptychopinn_training_data(
        inputs / 'train_data.npz', reconstruct_input(counts[:n_train],
                                                      sim.positions_xy[:n_train], probe_stack,
                                                      known))
    data, model, training, inference, datagen = _configs(mode)
    output = tmp_path / 'model'
    output.mkdir()
    queue = Queue()
    _subprocess.run_train(TrainPayload(data_config=data, model_config=model,
                                       training_config=training, inference_config=inference,
                                       datagen_config=datagen, input_path=inputs,
                                       output_path=output, visible_gpu_indices=''), queue)
    tags = [tag for tag, _ in queue.items]
    assert tags == [_subprocess.TAG_TRAIN_OUTPUT, _subprocess.TAG_MODEL_SAVED]
    train_output = pickle.loads(queue.items[0][1])
    assert train_output.progress == EPOCHS and len(train_output.training_loss) == EPOCHS
    checkpoint = Path(queue.items[1][1])
    assert checkpoint.is_file() and checkpoint.suffix == '.ckpt'
    assert checkpoint.parent.parent.parent == output  # output/run_<stamp>/checkpoints/last.ckpt
    assert (checkpoint.parent.parent / 'wts.h5.zip').is_file()  # usable by ptychopinn too

    queue = Queue()
    scan_input = reconstruct_input(counts, sim.positions_xy, probe_stack,
                                   np.ones_like(sim.object))
    _subprocess.run_reconstruct(ReconstructPayload(model_training_mode=mode,
                                                   model_path=checkpoint,
                                                   reconstruct_input=scan_input), queue)
    (tag, payload), = queue.items
    assert tag == _subprocess.TAG_OUTPUT
    image = pickle.loads(payload).product.object_.get_layer(0)
    shape, _ = centred_canvas(sim.positions_xy, N)
    assert image.shape == shape
    truth = _truth_on_output_grid(sim, image.shape)
    inner = (slice(25, image.shape[0] - 25), slice(25, image.shape[1] - 25))
    rec, ref = image[inner], truth[inner]
    assert np.all(np.isfinite(rec))
    phase_corr = phase_correlation(rec, ref)
    # Measured (8 epochs): 0.90 unsupervised, 0.71 supervised.
    assert phase_corr > 0.4, phase_corr


def test_unsupported_settings_are_refused_together(tmp_path: Path) -> None:
    """Settings this package cannot honour fail before any work, all named in one error."""
    data, model, training, inference, datagen = _configs(
        'Unsupervised', model__cbam_decoder=True, training__learning_rate_scheduler='Cosine',
        data__neighbor_lookup_method='4_quadrant', inference__window=5)
    with pytest.raises(UnsupportedSettingError) as caught:
        _subprocess.run_train(TrainPayload(data_config=data, model_config=model,
                                           training_config=training, inference_config=inference,
                                           datagen_config=datagen, input_path=tmp_path,
                                           output_path=tmp_path, visible_gpu_indices=''),
                              Queue())
    message = str(caught.value)
    for name in ('PtychoPINNTorchModel.cbam_decoder', 'PtychoPINNTorchTraining.'
                 'learning_rate_scheduler', 'PtychoPINNTorchData.neighbor_lookup_method',
                 'PtychoPINNTorchInference.window'):
        assert name in message, message
    assert not any(tmp_path.iterdir())  # nothing was written
