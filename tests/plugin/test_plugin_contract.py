"""Every TrainableReconstructor member, against the installed Ptychodus 1.7.0."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from ptychodus.api.reconstruct import ReconstructOutput, TrainableReconstructor, TrainOutput
from ptychodus.api.settings import SettingsRegistry

import scenes
from plugin_support import Trained, make_library


def test_registration_adds_library_without_touching_builtins() -> None:
    from ptychodus.model import ModelCore
    from ptychodus.model.processing import ProcessingAlgorithmParameter

    from ptychopinn_plugin import launcher

    launcher.install()
    try:
        model = ModelCore()
        keys = list(model.processing_core.processing_api.available_reconstructors())
    finally:
        launcher.uninstall()
    assert 'ptychopinn-dual_pinn' in keys and 'ptychopinn-dual_supervised' in keys
    assert 'ptychopinn_pinn' in keys  # Ptychodus' own libraries are still there
    assert len(keys) == len(set(keys))
    assert ProcessingAlgorithmParameter.split_key('ptychopinn-dual_pinn') == (
        'ptychopinn-dual', 'pinn')
    groups = set(model.settings_registry)
    assert {'PtychoPINNDualBackend', 'PtychoPINNDualModel', 'PtychoPINNDualTraining',
            'PtychoPINNDualInference'} <= groups
    assert 'PtychoPINNModel' in groups  # the built-in groups are separate


def test_members_and_filters() -> None:
    library = make_library()
    names = [r.name for r in library]
    assert names == ['PINN', 'Supervised']
    pinn = library.reconstructor('pinn')
    assert isinstance(pinn, TrainableReconstructor)
    assert not pinn.is_model_loaded()
    assert pinn.get_model_file_extension() == '.zip'
    assert '*.zip' in pinn.get_model_file_filter()
    assert '*.npz' in pinn.get_training_data_file_filter()
    assert pinn.get_progress_goal() == 1
    with pytest.raises(RuntimeError, match='no model has been loaded'):
        pinn.save_model(Path('never.zip'))
    with pytest.raises(RuntimeError, match='no model loaded'):
        pinn.reconstruct(scenes.reconstruct_input(scenes.simulate(8)))
    assert library.workers.current() is None  # nothing above needed a worker


def test_settings_persist_in_the_ptychodus_settings_file(tmp_path: Path) -> None:
    registry = SettingsRegistry()
    from ptychopinn_plugin.library import PinnDualReconstructorLibrary

    library = PinnDualReconstructorLibrary(registry)
    library.settings.backend.backend.set_value('pytorch')
    library.settings.training.nepochs.set_value(7)
    library.settings.training.learning_rate.set_value(2.5e-4)
    library.settings.model.gridsize.set_value(2)
    library.settings.inference.batch_size.set_value(64)
    path = tmp_path / 'settings.ini'
    registry.save_settings(path)
    text = path.read_text()
    assert '[PtychoPINNDualBackend]' in text and 'Backend = pytorch' in text

    registry2 = SettingsRegistry()
    library2 = PinnDualReconstructorLibrary(registry2)
    registry2.open_settings(path)
    config = library2.settings.training_config('pinn')
    assert (config.backend, config.nepochs, config.learning_rate, config.model.gridsize) == (
        'pytorch', 7, 2.5e-4, 2)
    assert library2.settings.inference_config('pinn').batch_size == 64


@pytest.mark.parametrize('group, key, value, message', [
    ('training', 'nepochs', 0, 'TrainingConfig.nepochs: expected an integer >= 1, found 0'),
    ('training', 'learning_rate', 5.0, 'TrainingConfig.learning_rate'),
    ('model', 'amp_activation', 'tanh', "ModelConfig.amp_activation: expected one of"),
    ('backend', 'backend', 'jax', 'PtychoPINNDualBackend.Backend: expected one of'),
])
def test_invalid_settings_are_rejected_with_the_config_message(
        tmp_path: Path, group: str, key: str, value: object, message: str) -> None:
    library = make_library()
    getattr(getattr(library.settings, group), key).set_value(value)
    assert message in library.settings.validate()
    pinn = library.reconstructor('PINN')
    with pytest.raises(ValueError, match=message.split(':')[0]):
        pinn.train(tmp_path, tmp_path)
    assert library.workers.current() is None  # rejected before any worker started


def test_export_training_data_writes_amplitudes(tmp_path: Path) -> None:
    from ptycho.raw_data import RawData

    raw = scenes.simulate(16, seed=5)
    parameters = scenes.reconstruct_input(raw, probe_modes=2, bad_pixel=(5, 7))
    counts_before = parameters.diffraction_patterns.copy()
    pinn = make_library().reconstructor('PINN')
    pinn.export_training_data(tmp_path / 'export.npz', parameters)
    np.testing.assert_array_equal(parameters.diffraction_patterns, counts_before)  # untouched

    with np.load(tmp_path / 'export.npz') as npz:
        assert str(npz['diffraction_units']) == 'amplitude'
        amplitude = npz['diffraction']
        assert amplitude.dtype == np.float32
        good = np.ones(amplitude.shape[1:], bool)
        good[5, 7] = False
        np.testing.assert_allclose(amplitude[:, good] ** 2, counts_before[:, good], rtol=1e-5)
        assert amplitude[:, 5, 7].max() < 1e3  # the hot pixel was inpainted, not kept
        assert npz['bad_pixels'][5, 7]
        assert npz['probeGuess'].shape == (2, 64, 64)  # the mode stack is kept for RawData
        np.testing.assert_allclose(npz['xcoords'], raw.xcoords, atol=1e-6)
        np.testing.assert_allclose(npz['ycoords'], raw.ycoords, atol=1e-6)
    loaded = RawData.from_file(tmp_path / 'export.npz')
    assert loaded.probeGuess.shape == (64, 64) and loaded.probe_modes.shape == (2, 64, 64)


def test_load_model_rejects_bad_files_clearly(tmp_path: Path) -> None:
    from ptycho.bundle import write_bundle

    pinn = make_library('pytorch').reconstructor('PINN')
    with pytest.raises(FileNotFoundError, match='model file not found'):
        pinn.load_model_from_file(tmp_path / 'missing.zip')
    garbage = tmp_path / 'garbage.zip'
    garbage.write_bytes(b'not a zip at all')
    with pytest.raises(ValueError, match='corrupt or truncated'):
        pinn.load_model_from_file(garbage)
    tf_bundle = write_bundle(tmp_path / 'tf', 'tensorflow', {}, config={'model': {'N': 64}},
                             intensity_scale=1.0, model_names=[])
    with pytest.raises(ValueError, match='trained with the tensorflow backend, but the '
                                         'pytorch backend is selected'):
        pinn.load_model_from_file(tf_bundle)
    assert not pinn.is_model_loaded()


def test_train_saves_the_model_and_loads_it(trained: Trained) -> None:
    pinn = trained.pinn
    assert pinn.is_model_loaded() and pinn.model_path == trained.model_path
    assert trained.model_path.is_file()
    assert (trained.model_path.parent / 'ptychopinn_training').is_dir()  # checkpoints etc.


def test_train_and_reconstruct_are_generators(trained: Trained, tmp_path: Path) -> None:
    pinn = trained.pinn
    outputs = pinn.reconstruct(trained.reconstruct_input)
    assert inspect.isgenerator(outputs)
    output = list(outputs)[-1]
    assert isinstance(output, ReconstructOutput)
    # Progress counts patterns: the last output is the whole scan.
    assert output.progress == pinn.get_progress_goal() == len(trained.raw.xcoords)
    training = pinn.train(tmp_path / 'nothing-here', tmp_path)
    assert inspect.isgenerator(training)
    assert pinn.get_progress_goal() == 1  # NumEpochs of this library
    with pytest.raises(FileNotFoundError, match='not found'):
        next(training)


def test_reconstruct_puts_the_object_on_the_input_grid(trained: Trained) -> None:
    parameters = trained.reconstruct_input
    output = list(trained.pinn.reconstruct(parameters))[-1]
    obj_in, obj_out = parameters.product.object_, output.product.object_
    assert obj_out.get_array().shape == (1, *obj_in.get_array().shape[-2:])
    assert np.iscomplexobj(obj_out.get_array())
    assert obj_out.get_pixel_geometry() == obj_in.get_pixel_geometry()
    assert obj_out.get_center() == obj_in.get_center()
    # The default refinement refines the positions: same scan indexes, moved < 3 px.
    given, moved = parameters.product.probe_positions, output.product.probe_positions
    np.testing.assert_array_equal(moved.get_indexes(), given.get_indexes())
    for axis in ('x', 'y'):
        shift = (getattr(moved, f'get_coordinates_{axis}_m')()
                 - getattr(given, f'get_coordinates_{axis}_m')()) / obj_in.get_geometry(
                 ).pixel_width_m
        assert np.abs(shift).max() < 3
    image = obj_out.get_array()[0]
    rows, cols = scenes.scanned_region(trained.raw)
    assert np.all(np.abs(image[rows, cols]) > 0)  # every scanned pixel reconstructed
    assert np.all(np.isfinite(image))
    assert image[0, 0] == 0  # far outside the scan: reported as uncovered, left at 0


def test_save_then_load_gives_the_same_reconstruction(trained: Trained, tmp_path: Path) -> None:
    pinn = trained.pinn
    first = list(pinn.reconstruct(trained.reconstruct_input))[-1]
    copy = tmp_path / 'saved.zip'
    pinn.save_model(copy)
    assert copy.read_bytes() == trained.model_path.read_bytes()
    pinn.load_model_from_file(copy)
    try:
        second = list(pinn.reconstruct(trained.reconstruct_input))[-1]
    finally:
        pinn.load_model_from_file(trained.model_path)
    np.testing.assert_allclose(second.product.object_.get_array(),
                               first.product.object_.get_array(), rtol=1e-5, atol=1e-6)
    supervised = trained.library.reconstructor('Supervised')
    with pytest.raises(ValueError, match='this is a pinn model'):
        supervised.load_model_from_file(copy)


def test_multimode_probe_and_bad_pixels_are_handled(trained: Trained) -> None:
    clean = list(trained.pinn.reconstruct(trained.reconstruct_input))[-1]
    messy_input = scenes.reconstruct_input(trained.raw, probe_modes=3, bad_pixel=(40, 20))
    messy = list(trained.pinn.reconstruct(messy_input))[-1]
    a = clean.product.object_.get_array()[0]
    b = messy.product.object_.get_array()[0]
    rows, cols = scenes.scanned_region(trained.raw)
    # One inpainted pixel barely changes the normalised input; a kept hot pixel would not.
    assert scenes.correlation(np.abs(a[rows, cols]), np.abs(b[rows, cols])) > 0.95


def test_train_output_carries_losses(trained: Trained) -> None:
    outputs = trained.outputs
    assert trained.goal_during_training == 1  # NumEpochs
    assert [o.progress for o in outputs] == [1]
    assert all(isinstance(o, TrainOutput) for o in outputs)
    assert [loss.epoch for loss in outputs[-1].training_loss] == [0]
    assert np.isfinite(outputs[-1].training_loss[0].value)
    assert len(outputs[-1].validation_loss) == 1  # 5 % of the groups are held out


def test_reconstruct_yields_the_image_as_it_forms(trained: Trained) -> None:
    """Partial images, pattern counts rising to the scan's, the last one the whole result."""
    pinn = trained.pinn
    whole = list(pinn.reconstruct(trained.reconstruct_input))[-1]
    pinn.progress_interval_s, pinn.progress_chunk = 0.0, 16
    try:
        outputs = list(pinn.reconstruct(trained.reconstruct_input))
    finally:
        pinn.progress_interval_s, pinn.progress_chunk = 0.5, None
    progress = [output.progress for output in outputs]
    n = len(trained.raw.xcoords)
    # Nothing shows before the 32 patterns that fix the normalisation (streaming.NORM_PATTERNS).
    assert progress == [32, 48, 64] and outputs[-1].progress == n
    covered = [np.count_nonzero(output.product.object_.get_array()) for output in outputs]
    assert covered == sorted(covered) and covered[0] < covered[-1]  # the image grows
    np.testing.assert_allclose(outputs[-1].product.object_.get_array(),
                               whole.product.object_.get_array(), rtol=1e-5, atol=1e-6)


def test_stopping_a_reconstruction_early_cancels_the_worker(trained: Trained) -> None:
    pinn = trained.pinn
    pinn.progress_interval_s, pinn.progress_chunk = 0.0, 8
    try:
        outputs = pinn.reconstruct(trained.reconstruct_input)
        first = next(outputs)
        assert first.progress < len(trained.raw.xcoords)
        outputs.close()  # what Ptychodus does on Stop
    finally:
        pinn.progress_interval_s, pinn.progress_chunk = 0.5, None
    # The worker is free again and gives the full result.
    assert list(pinn.reconstruct(trained.reconstruct_input))[-1].progress == len(
        trained.raw.xcoords)
