"""The backend contract, one set of checks for both backends (``ptycho.workflows.contract``).

Train, save, load, predict, stitch, determinism, cancellation and the errors a caller meets
(a bundle of the other backend, a truncated or missing bundle) through
:func:`~ptycho.workflows.backend_selector.get_backend` only: what holds here holds for any
caller of the contract (CLI, plugin, Python API).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ptycho.bundle import write_bundle
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, to_dict
from ptycho.simulation import simulate_dataset
from ptycho.workflows import backend_selector
from ptycho.workflows.backend_selector import get_backend
from ptycho.workflows.contract import (GroupObjects, LoadedModel, Reconstruction, TrainHooks,
                                       TrainingCancelled, TrainResult, UnsupportedOption,
                                       inference_config_for, orient, reconstruct)

from conformance_backends import BACKENDS, backend_params


@pytest.fixture(scope='module')
def scans():
    return (simulate_dataset(N=64, n_positions=48, object_size=110, seed=1),
            simulate_dataset(N=64, n_positions=24, object_size=100, seed=2))


def _config(backend: str, out: Path, **changes: object) -> TrainingConfig:
    values: dict[str, object] = dict(model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
                                     nepochs=2, batch_size=16, output_dir=out, backend=backend,
                                     logger='none', validation_split=0.0, accelerator='cpu')
    values.update(changes)
    return TrainingConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize('name', backend_params())
def test_train_load_reconstruct(name: str, scans, tmp_path: Path) -> None:
    train, test = scans
    backend = get_backend(name)
    epochs: list[tuple[int, float | None]] = []
    result = backend.train(train, None, _config(name, tmp_path),
                           hooks=TrainHooks(on_epoch=lambda e, loss, val: epochs.append(
                               (e, loss))))
    assert isinstance(result, TrainResult) and result.backend == name
    assert [e for e, _ in epochs] == [0, 1] == list(range(result.epochs_run))
    assert len(result.history['train_loss']) == 2
    assert [loss for _, loss in epochs] == pytest.approx(result.history['train_loss'])
    assert result.bundle_path == tmp_path / 'wts.h5.zip' and result.bundle_path.is_file()
    assert isinstance(result.model, LoadedModel) and result.model.backend == name

    loaded = backend.load(tmp_path)
    assert loaded.path == result.bundle_path
    assert loaded.intensity_scale == pytest.approx(result.model.intensity_scale, rel=1e-6)
    config = inference_config_for(loaded)
    groups = backend.predict(loaded, test, config)
    assert isinstance(groups, GroupObjects)
    assert groups.patches.shape == (len(test), 64, 64) and groups.positions_xy.shape == (
        len(test), 2)
    from_trained = backend.predict(result.model, test, config)
    np.testing.assert_allclose(groups.patches, from_trained.patches, rtol=1e-4, atol=1e-5)

    recon = reconstruct(backend, loaded, test, config)
    assert isinstance(recon, Reconstruction) and recon.backend == name and recon.M == 20
    assert recon.obj.shape == recon.coverage.shape and np.isfinite(recon.obj).all()
    refined = {'refine_s'} if config.refine_epochs > 0 else set()  # infer's default refines
    assert set(recon.timings) == {'inference_s', 'stitch_s'} | refined
    again = reconstruct(backend, loaded, test, config)  # a loaded model serves any number
    np.testing.assert_allclose(again.obj, recon.obj, rtol=1e-5, atol=1e-6)


def test_backends_stitch_alike(scans) -> None:
    """The same group objects give the same image in both backends (and numpy's stitch)."""
    from ptycho import physics

    _, test = scans
    rng = np.random.default_rng(0)
    patches = (rng.uniform(0.5, 1, (len(test), 64, 64)) *
               np.exp(1j * rng.uniform(-1, 1, (len(test), 64, 64)))).astype(np.complex64)
    groups = GroupObjects(patches, test.positions_xy)
    images = [get_backend(name).stitch(groups, 20, align_phase=False) for name in BACKENDS]
    reference, _ = physics.stitch(patches, test.positions_xy, 20)
    for image in images:
        np.testing.assert_allclose(image.obj, reference, rtol=1e-4, atol=1e-5)
    assert images[0].origin_xy == images[1].origin_xy


@pytest.mark.parametrize('name', backend_params())
def test_cancel_saves_nothing(name: str, scans, tmp_path: Path) -> None:
    train, _ = scans
    with pytest.raises(TrainingCancelled):
        get_backend(name).train(train, None, _config(name, tmp_path, nepochs=5),
                                hooks=TrainHooks(should_stop=lambda: True))
    assert not (tmp_path / 'wts.h5.zip').exists()


def test_an_option_a_backend_cannot_honour_is_named(scans, tmp_path: Path) -> None:
    train, _ = scans
    with pytest.raises(UnsupportedOption, match='devices > 1 with accelerator cpu is not '
                                                'supported by the tensorflow backend'):
        get_backend('tensorflow').train(train, None, _config('tensorflow', tmp_path,
                                                             devices=2))
    assert not any(tmp_path.iterdir())


def test_orient_transposes_the_whole_image() -> None:
    patches = np.arange(2 * 4 * 4, dtype=np.complex64).reshape(2, 4, 4)
    groups = GroupObjects(patches, np.array([[1.0, 5.0], [2.0, 7.0]]))
    flipped = orient(groups, flip_x=True, transpose=True)
    np.testing.assert_array_equal(flipped.positions_xy, [[5.0, -1.0], [7.0, -2.0]])
    np.testing.assert_array_equal(flipped.patches[0], patches[0].T)
    assert orient(groups) is groups
    assert dataclasses.replace(groups).positions_xy is groups.positions_xy


def _other(name: str) -> str:
    return next(other for other in BACKENDS if other != name)


@pytest.mark.parametrize('name', backend_params())
def test_same_seed_same_history_and_model(name: str, scans, tmp_path: Path) -> None:
    train, test = scans
    backend = get_backend(name)
    runs = [backend.train(train, None, _config(name, tmp_path / str(i), nepochs=1))
            for i in range(2)]
    assert runs[0].history == runs[1].history
    config = inference_config_for(runs[0].model)
    first, second = (backend.predict(run.model, test, config).patches for run in runs)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize('name', backend_params())
def test_bundle_round_trip_predicts_exactly_alike(name: str, scans, tmp_path: Path) -> None:
    train, test = scans
    backend = get_backend(name)
    result = backend.train(train, None, _config(name, tmp_path, nepochs=1))
    loaded = backend.load(tmp_path)
    assert loaded.config.model == result.model.config.model
    config = inference_config_for(loaded)
    np.testing.assert_array_equal(backend.predict(loaded, test, config).patches,
                                  backend.predict(result.model, test, config).patches)


@pytest.mark.parametrize('name', backend_params())
def test_a_bundle_of_the_other_backend_is_refused_naming_both(name: str, tmp_path: Path) -> None:
    other = _other(name)
    write_bundle(tmp_path, other, {'weights.bin': b'x'},
                 config=to_dict(_config(other, tmp_path)), intensity_scale=1.0,
                 model_names=['autoencoder', 'diffraction_to_obj'])
    with pytest.raises(ValueError, match=f'{other} backend.*{name}') as info:
        get_backend(name).load(tmp_path)
    assert 'wts.h5.zip' in str(info.value)
    # The legacy dispatcher entries check the bundle before the backend sees it.
    config = InferenceConfig(model=ModelConfig(N=64), model_path=tmp_path, backend=name)
    with pytest.raises(ValueError, match=f'{other} backend.*{name} backend'):
        backend_selector.load_inference_bundle_with_backend(tmp_path, config)
    with pytest.raises(ValueError, match=f'{other} backend.*{name} backend'):
        backend_selector.reassemble_with_backend(None, config)


@pytest.mark.parametrize('name', backend_params())
def test_a_truncated_or_missing_bundle_is_named(name: str, scans, tmp_path: Path) -> None:
    train, _ = scans
    result = get_backend(name).train(train, None, _config(name, tmp_path / 'run', nepochs=1))
    assert result.bundle_path is not None
    data = result.bundle_path.read_bytes()
    (tmp_path / 'wts.h5.zip').write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r'wts\.h5\.zip.*(corrupt|truncated)'):
        get_backend(name).load(tmp_path)
    with pytest.raises(ValueError, match='not found'):
        get_backend(name).load(tmp_path / 'missing')
