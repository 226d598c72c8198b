"""TensorFlow backend end to end: train -> wts.h5.zip -> load -> infer -> PNGs.

The TF twin of the torch integration test, kept tiny (N=64, ~100 positions, 2 epochs,
n_filters_scale=1) so it runs in seconds on a shared 2-core CPU.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from ptycho import bundle as bundle_io  # noqa: E402
from ptycho import model_manager, params  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig  # noqa: E402
from ptycho.loader import container_from_raw  # noqa: E402
from ptycho.model import create_model, expected_param_count  # noqa: E402
from ptycho.simulation import simulate_dataset  # noqa: E402
from ptycho.train_pinn import (NonFiniteLossError, lr_plateau_callback,  # noqa: E402
                               seed_everything, train)
from ptycho.workflows import components  # noqa: E402


def tiny_config(output_dir: Path, **overrides) -> TrainingConfig:
    model = ModelConfig(N=64, gridsize=overrides.pop('gridsize', 1), n_filters_scale=1)
    values = dict(model=model, nepochs=2, batch_size=16, output_dir=output_dir,
                  neighbor_count=4)
    values.update(overrides)
    return TrainingConfig(**values)


@pytest.fixture(scope='module')
def datasets():
    train_raw = simulate_dataset(N=64, n_positions=96, object_size=120, seed=1)
    test_raw = simulate_dataset(N=64, n_positions=48, object_size=110, seed=2)
    return train_raw, test_raw


@pytest.fixture(scope='module')
def trained(tmp_path_factory, datasets):
    out = tmp_path_factory.mktemp('tf_run')
    train_raw, test_raw = datasets
    config = tiny_config(out)
    amp, phase, results = components.run_cdi_example(train_raw, test_raw, config,
                                                     do_stitching=True)
    return out, config, amp, phase, results


def test_train_save_load_infer(trained, datasets) -> None:
    out, config, amp, phase, results = trained
    _, test_raw = datasets
    assert results['backend'] == 'tensorflow'
    history = results['history']
    assert len(history['train_loss']) == 2 and len(history['val_loss']) == 2
    assert all(np.isfinite(history['train_loss']))
    assert amp.shape == phase.shape == results['coverage'].shape
    assert np.isfinite(amp).all() and np.isfinite(phase).all()

    bundle = out / 'wts.h5.zip'
    assert bundle.is_file()
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
    assert {'manifest.json', 'autoencoder.weights.h5', 'diffraction_to_obj.weights.h5',
            'probe.npy', 'params.json'} <= names
    manifest = bundle_io.read_bundle(out).manifest
    assert manifest['backend'] == 'tensorflow'
    assert manifest['intensity_scale'] == pytest.approx(results['intensity_scale'])

    params.cfg.pop('intensity_scale', None)
    model, config_dict = components.load_inference_bundle(out)
    assert config_dict['model']['N'] == 64
    assert params.get('intensity_scale') == pytest.approx(results['intensity_scale'])

    container = results['test_container']
    objects = model.predict([container.X * params.get('intensity_scale'),
                             container.local_offsets], verbose=0)
    assert objects.shape == (len(container), 64, 64, 1) and np.iscomplexobj(objects)
    np.testing.assert_allclose(objects, results['obj_patches'], rtol=1e-5, atol=1e-6)

    amp2, phase2, recon = components.reassemble_cdi_image(test_raw, config, models=None)
    np.testing.assert_allclose(amp2, amp, rtol=1e-5, atol=1e-6)
    # The bare loaded Keras model carries its trained scale (params.cfg now holds the
    # untrained photon scale again, written by update_legacy_dict(TrainingConfig)).
    amp3, _, _ = components.reassemble_cdi_image(test_raw, config, models=model)
    assert params.get('intensity_scale') != pytest.approx(results['intensity_scale'])
    np.testing.assert_allclose(amp3, amp, rtol=1e-5, atol=1e-6)
    pngs = components.save_outputs(amp2, phase2, {**results, **recon}, out / 'pngs')
    assert {p.name for p in pngs} == {'reconstructed_amplitude.png', 'reconstructed_phase.png',
                                      'loss_curve.png'}
    assert all(p.stat().st_size > 1024 for p in pngs)


def test_bundle_round_trip_gives_identical_predictions(trained, tmp_path) -> None:
    out, config, _, _, results = trained
    models = results['ptycho_models']
    loaded, loaded_config, _ = model_manager.load(out)
    assert loaded_config.model == config.model
    container = results['test_container']
    x = [tf.constant(container.X[:16]), tf.constant(container.local_offsets[:16], tf.float32)]
    np.testing.assert_array_equal(models.autoencoder(x, training=False).numpy(),
                                  loaded.autoencoder(x, training=False).numpy())
    xs = [x[0] * models.intensity_scale, x[1]]
    np.testing.assert_array_equal(models.diffraction_to_obj(xs, training=False).numpy(),
                                  loaded.diffraction_to_obj(xs, training=False).numpy())
    np.testing.assert_array_equal(models.probe, loaded.probe)
    # Legacy save(out_dir) writes the registered (last trained) model.
    path = model_manager.save(tmp_path / 'legacy')
    assert bundle_io.read_bundle(path).intensity_scale == pytest.approx(models.intensity_scale)


def test_save_outputs_without_reconstruction(tmp_path) -> None:
    written = components.save_outputs(None, None, {'history': {'train_loss': [1.0, 0.5],
                                                               'val_loss': [1.2, 0.7]}},
                                      str(tmp_path / 'out'))
    assert [p.name for p in written] == ['loss_curve.png']
    assert components.save_outputs(None, None, {}, tmp_path / 'empty') == []


@pytest.mark.parametrize('overrides', [
    {}, {'gridsize': 2}, {'pad_object': False}, {'probe_big': False}, {'probe_trainable': True},
    {'gridsize': 2, 'pad_object': False},
    *({'input_features': features, 'skip_connections': skips, 'gridsize': gridsize,
       'pad_object': pad}
      for features in ('backprojection', 'amplitude') for skips in (True, False)
      for gridsize in (1, 2) for pad in (True, False)
      if (features, skips) != ('backprojection', True)),
])
def test_parameter_count_matches_architecture(overrides) -> None:
    overrides = dict(overrides)
    probe_trainable = overrides.pop('probe_trainable', False)
    gridsize = overrides.pop('gridsize', 1)
    model_cfg = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1, **overrides)
    config = TrainingConfig(model=model_cfg, probe_trainable=probe_trainable)
    models = create_model(config, np.ones((64, 64), np.complex64))
    assert models.autoencoder.count_params() == expected_param_count(model_cfg, probe_trainable)
    assert models.diffraction_to_obj.count_params() == expected_param_count(model_cfg)
    if (importlib.util.find_spec('torch') is not None
            and importlib.util.find_spec('ptycho_torch.model') is not None):
        import torch

        from ptycho_torch import config_bridge
        from ptycho_torch.model import PtychoPINN_Lightning, count_parameters

        _, torch_model, torch_training = config_bridge.to_torch(config)
        module = PtychoPINN_Lightning(torch_model, torch_training,
                                      probe=torch.ones((64, 64), dtype=torch.complex64))
        assert count_parameters(module) == models.autoencoder.count_params()


def _copy_torch_weights(torch_model, models) -> None:
    """Give the Keras trunk the torch network's conv weights, layer by layer."""
    net = torch_model.net
    pairs = []
    for k, level in enumerate(net.encoder.levels):
        pairs += [(f'enc_conv{k}a', level[0]), (f'enc_conv{k}b', level[2])]
    for kind, decoder in (('amp', net.decoder_amp), ('phase', net.decoder_phase)):
        for i, step in enumerate(decoder.steps):
            pairs += [(f'{kind}_conv{i}a', step[0]), (f'{kind}_conv{i}b', step[2])]
        pairs.append((f'{kind}_out', decoder.head))
        if decoder.periphery is not None:
            pairs.append((f'{kind}_periph', decoder.periphery[1]))
    trunk = models.autoencoder.get_layer('trunk')
    assert len(pairs) == len([layer for layer in trunk.layers if layer.weights])
    for name, conv in pairs:
        weight = conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # (out,in,h,w) -> (h,w,in,out)
        trunk.get_layer(name).set_weights([weight, conv.bias.detach().numpy()])


@pytest.mark.parametrize('overrides', [
    {}, {'gridsize': 2}, {'pad_object': False},
    {'input_features': 'amplitude', 'skip_connections': False},
])
def test_network_is_the_torch_twin(overrides) -> None:
    """With torch's weights the Keras models give torch's outputs: same input channel order
    (X, Re b, Im b), same skip crops and concatenation order, same physics."""
    torch = pytest.importorskip('torch')
    from ptycho_torch import config_bridge
    from ptycho_torch.model import PtychoPINN

    overrides = dict(overrides)
    gridsize = overrides.pop('gridsize', 1)
    N, C, B = 64, gridsize ** 2, 3
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:N, :N] - N / 2
    probe = ((1.0 + 0.3 * (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))))
             * np.exp(-(yy ** 2 + xx ** 2) / 200.0)).astype(np.complex64)
    config = TrainingConfig(model=ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1,
                                              network_precision='float32', **overrides))
    models = create_model(config, probe)
    _, torch_model_cfg, _ = config_bridge.to_torch(config)
    torch_model = PtychoPINN(torch_model_cfg, config.nphotons, probe).eval()
    _copy_torch_weights(torch_model, models)

    X = rng.uniform(0, 1, size=(B, N, N, C)).astype(np.float32)
    offsets = (rng.uniform(-5, 5, size=(B, 1, 2, C)) if C > 1
               else np.zeros((B, 1, 2, 1))).astype(np.float32)
    X_t = torch.tensor(X.transpose(0, 3, 1, 2))
    offsets_t = torch.tensor(offsets[:, 0].transpose(0, 2, 1))
    with torch.no_grad():
        amp_torch = torch_model(X_t, offsets_t).numpy().transpose(0, 2, 3, 1)
        obj_torch = torch_model.reconstruct(X_t, offsets_t).numpy()
    amp_tf = models.autoencoder([X, offsets], training=False).numpy()
    obj_tf = models.diffraction_to_obj([X * models.intensity_scale, offsets],
                                       training=False).numpy()[..., 0]
    # A dozen float32 convolutions in each framework (oneDNN picks its kernels per version):
    # the twins differ by float32 rounding accumulated through the stack, measured up to
    # 1.1e-5 of the output's maximum with keras 3.15 / torch 2.13 (the physics layers alone
    # are held to 1e-5 in test_tf_physics.py).
    assert np.max(np.abs(amp_tf - amp_torch)) <= 3e-5 * np.max(np.abs(amp_torch))
    assert np.max(np.abs(obj_tf - obj_torch)) <= 3e-5 * np.max(np.abs(obj_torch))


def test_non_finite_loss_stops_training(datasets, tmp_path) -> None:
    train_raw, _ = datasets
    config = tiny_config(tmp_path, nepochs=2, n_groups=32, validation_split=0.0)
    container = container_from_raw(train_raw, config)
    container.X = container.X.copy()
    container.X[5, 10, 10, 0] = np.nan
    seed_everything(config.seed)
    models = create_model(config, container.probe)
    before = models.autoencoder.get_weights()
    with pytest.raises(NonFiniteLossError, match='epoch 1'):
        train(models, container, config)
    after = models.autoencoder.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # restored, not NaN


def test_lr_plateau_counts_any_decrease_of_a_negative_loss() -> None:
    """Same rule as the torch backend (tests/torch/test_model_torch.py)."""
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse')
    callback = lr_plateau_callback(TrainingConfig(learning_rate=1e-3, lr_plateau_patience=2),
                                   'loss')
    callback.set_model(model)
    callback.on_train_begin()

    def lr() -> float:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    loss = -3.876
    for epoch in range(10):  # steady 1e-6 decreases are progress
        loss -= 1e-6
        callback.on_epoch_end(epoch, {'loss': loss})
    assert lr() == pytest.approx(1e-3)
    callback.on_epoch_end(10, {'loss': loss + 1e-5})  # slightly worse: not an improvement
    assert lr() == pytest.approx(1e-3)
    callback.on_epoch_end(11, {'loss': loss + 1e-5})
    assert lr() == pytest.approx(5e-4)


@pytest.mark.parametrize('pad_object,probe_big', [(True, True), (True, False), (False, True)])
def test_overlap_support_matches_torch(pad_object: bool, probe_big: bool) -> None:
    """Both backends merge gridsize-2 groups over the same support."""
    pytest.importorskip('torch')
    from ptycho_torch import config_bridge
    from ptycho_torch.model import overlap_support

    model_cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1, pad_object=pad_object,
                            probe_big=probe_big)
    models = create_model(TrainingConfig(model=model_cfg), np.ones((64, 64), np.complex64))
    tf_support = models.autoencoder.get_layer('overlap').support
    _, torch_model, _ = config_bridge.to_torch(TrainingConfig(model=model_cfg))
    np.testing.assert_array_equal(tf_support, overlap_support(torch_model).numpy())


@pytest.mark.parametrize('batch_size', [5, 64, 100])
def test_prediction_batches_take_few_shapes_and_little_padding(batch_size: int) -> None:
    from ptycho.tf.workflows import MIN_PADDED_BATCH, padded_batches

    shapes = set()
    for n in range(0, 300):
        calls = padded_batches(n, batch_size)
        assert sum(count for count, _ in calls) == n
        assert sum(padded - count for count, padded in calls) < MIN_PADDED_BATCH
        assert all(0 < count <= padded <= batch_size for count, padded in calls)
        shapes |= {padded for _, padded in calls}
    powers = {1 << k for k in range(3, 7) if 1 << k < batch_size}
    assert shapes <= powers | {batch_size, min(MIN_PADDED_BATCH, batch_size)}
    assert padded_batches(18, 64) == [(16, 16), (2, 8)]  # was one call of 32


@pytest.mark.parametrize('workers', [1, 2])
def test_prediction_batches_pad_only_where_the_backprojection_compiles_per_batch(
        monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """On a CPU the back-projection runs in fixed chunks (one XLA shape), so the groups go
    unpadded; where it takes the whole batch in one call (a GPU, one worker) every batch
    shape compiles and the calls are padded to a few shapes."""
    from ptycho.tf import model as tf_model
    from ptycho.tf.workflows import padded_batches, prediction_batches

    monkeypatch.setattr(tf_model, 'backprojection_workers', lambda: workers)
    for n in (0, 1, 18, 64, 150):
        calls = prediction_batches(n, 64)
        assert sum(count for count, _ in calls) == n
        if workers == 1:
            assert calls == padded_batches(n, 64)
        else:
            assert all(count == padded for count, padded in calls)
            assert [count for count, _ in calls] == [64] * (n // 64) + ([n % 64] if n % 64 else [])
