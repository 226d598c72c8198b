"""Every field of the three run configs either changes what a run does or is refused.

Issue 17 asks that nothing be accepted and ignored. :func:`test_every_field_has_a_check`
enumerates ``dataclasses.fields`` of ``ModelConfig``, ``TrainingConfig`` and
``InferenceConfig``, so a field added without a check here fails. Each check compares a
cheap observable of a config with the same config with one field changed: the grouped data
(what both backends' loaders feed the network), the torch network (parameter count, loss on
a fixed batch), the Lightning trainer and data module torch would fit with, the arguments
TensorFlow's ``train`` hands to ``keras.Model.fit``, what each backend's ``predict`` and
``reconstruct`` do, the command line; or it shows the config refusing a non-default value
with a message naming the field. Nothing trains.

That the TensorFlow network is the torch network for the same ``ModelConfig`` (parameter
counts, outputs with copied weights) is ``tests/test_tf_workflow.py``'s twin tests; the
architecture checks here use the torch network, which builds in milliseconds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip('tensorflow')
torch = pytest.importorskip('torch')

from cli_helpers import run_cli  # noqa: E402
from ptycho.config.config import (InferenceConfig, ModelConfig, TrainingConfig,  # noqa: E402
                                  save_yaml)
from ptycho.loader import container_from_raw  # noqa: E402
from ptycho.raw_data import RawData  # noqa: E402

Config = ModelConfig | TrainingConfig | InferenceConfig
Check = Callable[['Context', str], None]
CLASSES = (ModelConfig, TrainingConfig, InferenceConfig)
CHECKS: dict[tuple[str, str], Check] = {}
"""``(class, field)`` -> ``check(ctx, field)``, run by :func:`test_field`."""
COVERED: dict[tuple[str, str], str] = {}
"""``(class, field)`` -> the name of the test below that checks it."""


def _claim(cls: type, name: str, what: str) -> tuple[str, str]:
    key = (cls.__name__, name)
    assert key not in CHECKS and key not in COVERED, f'{key} checked twice ({what})'
    return key


def check(cls: type, *names: str) -> Callable[[Check], Check]:
    """Register ``fn(ctx, field_name)`` as the check of ``cls.<name>`` for each name."""
    def register(fn: Check) -> Check:
        for name in names:
            CHECKS[_claim(cls, name, fn.__name__)] = fn
        return fn
    return register


def covers(cls: type, *names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test function as the check of ``cls.<name>`` for each name."""
    def register(test: Callable[..., None]) -> Callable[..., None]:
        for name in names:
            COVERED[_claim(cls, name, test.__name__)] = test.__name__
        return test
    return register


# --------------------------------------------------------------------------- fixtures
@dataclasses.dataclass
class Context:
    """Shared tiny inputs; the TensorFlow model is built once, on first use."""

    tmp: Path
    scan_file: Path
    scan: RawData
    _tf_models: Any = None

    @staticmethod
    def model(**changes: Any) -> ModelConfig:
        """A narrow gridsize-1 network with the amplitude input (no back-projection to
        compute)."""
        return ModelConfig(**{'N': 64, 'gridsize': 1, 'n_filters_scale': 1,
                              'input_features': 'amplitude', **changes})

    def training(self, model: dict[str, Any] | None = None, **changes: Any) -> TrainingConfig:
        """A torch-ready training config: narrow amplitude-input network, no logger, CPU."""
        values: dict[str, Any] = dict(
            model=self.model(**(model or {})), nepochs=2, batch_size=8, backend='pytorch',
            accelerator='cpu', logger='none', validation_split=0.0, output_dir=self.tmp / 'run')
        values.update(changes)
        return TrainingConfig(**values)

    def inference(self, model: dict[str, Any] | None = None, **changes: Any) -> InferenceConfig:
        """A CPU inference config of the same network."""
        values: dict[str, Any] = dict(model=self.model(**(model or {})), backend='pytorch',
                                      device='cpu', output_dir=self.tmp / 'infer')
        values.update(changes)
        return InferenceConfig(**values)

    @property
    def tf_models(self) -> Any:
        if self._tf_models is None:
            import keras

            from ptycho.model import create_model

            keras.utils.set_random_seed(0)
            config = self.training(backend='tensorflow')
            self._tf_models = create_model(config, container_from_raw(self.scan, config).probe)
        return self._tf_models


@pytest.fixture(scope='module')
def ctx(tmp_path_factory: pytest.TempPathFactory, small_sim: Path) -> Context:
    return Context(tmp_path_factory.mktemp('fields'), small_sim, RawData.from_file(small_sim))


def changed(config: Config, name: str, value: Any) -> Config:
    """``config`` with one field (of it or of its model) set to ``value`` (validated)."""
    if any(f.name == name for f in dataclasses.fields(config)):
        return dataclasses.replace(config, **{name: value})
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **{name: value}))


def assert_changes(observe: Callable[[Any], Any], config: Config, name: str, value: Any
                   ) -> None:
    before, after = observe(config), observe(changed(config, name, value))
    assert before != after, (name, value, before)


def assert_refused(config: Config, name: str, value: Any) -> None:
    cls = type(config) if any(f.name == name for f in dataclasses.fields(config)) else ModelConfig
    with pytest.raises(ValueError) as info:
        changed(config, name, value)
    assert str(info.value).startswith(f'{cls.__name__}.{name}: expected '), str(info.value)
    assert repr(value) in str(info.value)


# --------------------------------------------------------------------------- observables
def grouped(ctx: Context) -> Callable[[Config], tuple[Any, ...]]:
    """The groups both backends' loaders make (``ptycho.loader.container_from_raw``)."""
    def observe(config: Config) -> tuple[Any, ...]:
        container = container_from_raw(ctx.scan, config)
        return container.X.shape, container.global_offsets.round(6).tobytes()
    return observe


def torch_module(ctx: Context, config: TrainingConfig, with_probe: bool = True) -> Any:
    """The seeded torch Lightning module of ``config`` (the scan's probe, or a flat one)."""
    from ptycho_torch import config_bridge
    from ptycho_torch.model import PtychoPINN_Lightning

    _, model_cfg, training_cfg = config_bridge.to_torch(config)
    torch.manual_seed(0)
    probe = container_from_raw(ctx.scan, config).probe if with_probe else None
    return PtychoPINN_Lightning(model_cfg, training_cfg, probe=probe)


def torch_parameters(ctx: Context) -> Callable[[TrainingConfig], tuple[int, int]]:
    """(all, trainable) parameters of the torch network."""
    def observe(config: TrainingConfig) -> tuple[int, int]:
        module = torch_module(ctx, config, with_probe=False)
        return (sum(p.numel() for p in module.parameters()),
                sum(p.numel() for p in module.parameters() if p.requires_grad))
    return observe


def torch_loss(ctx: Context) -> Callable[[TrainingConfig], float]:
    """The torch loss of a seeded network on the first four groups (with ground truth)."""
    from torch.utils.data import default_collate

    from ptycho_torch.data import PtychoDataset, as_torch_container

    def observe(config: TrainingConfig) -> float:
        dataset = PtychoDataset(as_torch_container(ctx.scan, config), with_truth=True)
        batch = default_collate([dataset[i] for i in range(4)])
        with torch.no_grad():
            return float(torch_module(ctx, config).compute_loss(batch))
    return observe


def torch_session(ctx: Context, config: TrainingConfig) -> Any:
    """What torch would fit: ``prepare_training`` (module, data module, Lightning trainer)."""
    from ptycho_torch.workflows.training import prepare_training

    return prepare_training(ctx.scan, None, config)


def torch_trainer(ctx: Context, read: Callable[[Any], Any]) -> Callable[[TrainingConfig], Any]:
    return lambda config: read(torch_session(ctx, config))


def callback_types(callbacks: list[Any]) -> list[str]:
    return sorted(type(c).__name__ for c in callbacks)


def tf_fit(ctx: Context, monkeypatch: pytest.MonkeyPatch
           ) -> Callable[[TrainingConfig], dict[str, Any]]:
    """The arguments ``ptycho.train_pinn.train`` gives ``keras.Model.fit``, the compiled
    optimizer and loss (its value on fixed arrays); ``fit`` itself is not run."""
    import keras

    from ptycho.model import supervised_targets
    from ptycho.train_pinn import train

    calls: list[dict[str, Any]] = []

    def fit(self: Any, x: Any = None, **kwargs: Any) -> Any:
        calls.append({'model': self, **kwargs})
        return SimpleNamespace(history={'loss': [0.0]})

    monkeypatch.setattr(keras.Model, 'fit', fit)

    def observe(config: TrainingConfig) -> dict[str, Any]:
        config = dataclasses.replace(config, backend='tensorflow', num_workers=0,
                                     strategy='auto', num_nodes=1, precision='32-true')
        container = container_from_raw(ctx.scan, config)
        train(ctx.tf_models, container, config)
        call = calls.pop()
        model = call.pop('model')
        if config.model.model_type == 'supervised':
            y = supervised_targets(container.Y[:4])
        else:
            y = np.asarray(container.X[:4], np.float32)
        loss = float(np.mean(model.loss(y, 0.9 * y + 0.05)))
        validation = call['validation_data']
        return {'epochs': call['epochs'], 'steps': call['steps_per_epoch'],
                'verbose': call['verbose'], 'callbacks': callback_types(call['callbacks']),
                'validation': 0 if validation is None else len(validation[1]),
                'lr': float(model.optimizer.learning_rate), 'loss': round(loss, 6)}
    return observe


def models_for(ctx: Context, backend: str) -> Any:
    """An untrained ``LoadedModel`` of the context's network, with a batch counter."""
    from ptycho.workflows.contract import LoadedModel

    config = ctx.training(backend=backend)
    batches: list[int] = []
    if backend == 'pytorch':
        module = torch_module(ctx, config)
        net = module.diffraction_to_obj()
        net.register_forward_hook(lambda mod, args, out: batches.append(len(args[0])))
        handle: Any = {'diffraction_to_obj': net, 'lightning_module': module}
        scale = module.intensity_scale
    else:
        handle = SimpleNamespace(diffraction_to_obj=_CountingKerasModel(
            ctx.tf_models.diffraction_to_obj, batches))
        scale = float(ctx.tf_models.intensity_scale)
    return LoadedModel(backend, config, scale, None, handle), batches


class _CountingKerasModel:
    """A Keras model that records the size of every batch it predicts."""

    def __init__(self, net: Any, batches: list[int]) -> None:
        self._net, self._batches = net, batches

    def predict_on_batch(self, inputs: Any) -> Any:
        self._batches.append(len(inputs[0]))
        return self._net.predict_on_batch(inputs)

    def predict(self, inputs: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        n, size = len(inputs[0]), batch_size or 32
        self._batches.extend(min(size, n - i) for i in range(0, n, size))
        return self._net.predict(inputs, batch_size=batch_size, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._net, name)


def predicted(ctx: Context, backend: str) -> Callable[[InferenceConfig], tuple[Any, ...]]:
    """Group centres ``predict`` reconstructed and the batch sizes it ran, in ``backend``."""
    from ptycho.workflows.backend_selector import get_backend

    def observe(config: InferenceConfig) -> tuple[Any, ...]:
        config = dataclasses.replace(config, backend=backend)
        model, batches = models_for(ctx, backend)
        groups = get_backend(backend).predict(model, ctx.scan, config)
        assert len(groups.patches) == len(groups.positions_xy)
        return groups.positions_xy.round(6).tobytes(), tuple(batches)
    return observe


BACKENDS = ('tensorflow', 'pytorch')


# --------------------------------------------------------------------------- the walk
@pytest.fixture
def fit_args(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Callable[[TrainingConfig], Any]:
    return tf_fit(ctx, monkeypatch)


# ----- ModelConfig
@check(ModelConfig, 'N', 'n_filters_scale', 'probe_big', 'pad_object', 'input_features',
       'skip_connections')
def _architecture(ctx: Context, name: str) -> None:
    value = {'N': 128, 'n_filters_scale': 2, 'probe_big': False, 'pad_object': False,
             'input_features': 'backprojection', 'skip_connections': False}[name]
    assert_changes(torch_parameters(ctx), ctx.training(), name, value)


@check(ModelConfig, 'gridsize')
def _gridsize(ctx: Context, name: str) -> None:
    assert_changes(grouped(ctx), ctx.training(), name, 2)


@check(ModelConfig, 'model_type', 'amp_activation', 'object_big', 'probe_mask',
       'backprojection_iterations', 'network_precision')
def _network_output(ctx: Context, name: str) -> None:
    base = {'object_big': ctx.training(model={'gridsize': 2}),
            'backprojection_iterations': ctx.training(model={'input_features': 'backprojection'})
            }.get(name, ctx.training())
    value = {'model_type': 'supervised', 'amp_activation': 'sigmoid', 'object_big': False,
             'probe_mask': True, 'backprojection_iterations': 2,
             'network_precision': 'bfloat16'}[name]
    assert_changes(torch_loss(ctx), base, name, value)


@check(ModelConfig, 'probe_scale', 'gaussian_smoothing_sigma')
def _ptychodus_fixed_model(ctx: Context, name: str) -> None:
    value = {'probe_scale': 2.0, 'gaussian_smoothing_sigma': 1.0}[name]
    assert_refused(ctx.training(), name, value)


# ----- TrainingConfig
@check(TrainingConfig, 'model')
@check(InferenceConfig, 'model')
def _nested_model(ctx: Context, name: str) -> None:
    for config in (ctx.training(), ctx.inference()):
        assert_changes(grouped(ctx), config, 'model', ModelConfig(N=64, gridsize=2))


@check(TrainingConfig, 'train_data_file', 'test_data_file')
def _training_files(ctx: Context, name: str) -> None:
    """The command line reads the files these name (the library takes data objects)."""
    for missing in ('a.npz', 'b.npz'):
        config = ctx.training(**{'train_data_file': ctx.scan_file,
                                 name: ctx.tmp / f'{name}_{missing}'})
        yaml = save_yaml(config, ctx.tmp / f'{name}.yaml')
        result = run_cli('train', '--config', yaml, cwd=ctx.tmp)
        assert result.returncode == 2 and f'{name}_{missing}: data file not found' in \
            result.stderr, result.stderr


@check(TrainingConfig, 'nphotons')
def _nphotons(ctx: Context, name: str) -> None:
    assert_changes(torch_loss(ctx), ctx.training(), name, 1e6)


@check(TrainingConfig, 'n_groups', 'sequential_sampling', 'subsample_seed')
def _training_grouping(ctx: Context, name: str) -> None:
    base = ctx.training(n_groups=12)
    value = {'n_groups': 20, 'sequential_sampling': True, 'subsample_seed': 7}[name]
    assert_changes(grouped(ctx), base, name, value)


@check(TrainingConfig, 'neighbor_count')
@check(InferenceConfig, 'neighbor_count')
def _neighbours(ctx: Context, name: str) -> None:
    for base in (ctx.training(model={'gridsize': 2}, n_groups=12),
                 ctx.inference(model={'gridsize': 2}, n_groups=12, sequential_sampling=False)):
        assert_changes(grouped(ctx), base, name, 9)


@check(TrainingConfig, 'positions_provided')
def _positions_provided(ctx: Context, name: str) -> None:
    assert_refused(ctx.training(), name, False)


@check(TrainingConfig, 'probe_trainable', 'intensity_scale_trainable')
def _trainable(ctx: Context, name: str) -> None:
    value = not getattr(TrainingConfig(), name)
    assert_changes(torch_parameters(ctx), ctx.training(), name, value)


@check(TrainingConfig, 'output_dir')
def _training_output(ctx: Context, name: str) -> None:
    assert_changes(torch_trainer(ctx, lambda s: s.trainer.default_root_dir), ctx.training(),
                   name, ctx.tmp / 'elsewhere')


@check(TrainingConfig, 'backend')
@check(InferenceConfig, 'backend')
def _backend(ctx: Context, name: str) -> None:
    from ptycho.workflows.backend_selector import backend_for

    for base in (ctx.training(backend='tensorflow'), ctx.inference(backend='tensorflow')):
        assert_changes(lambda c: backend_for(c).name, base, name, 'pytorch')


@check(TrainingConfig, 'accelerator', 'devices')
def _devices(ctx: Context, name: str) -> None:
    """torch: the trainer's accelerator / device count; TensorFlow: the scope it builds in."""
    from ptycho.tf.backend import training_scope

    def tf_scope(config: TrainingConfig) -> str:
        try:
            return type(training_scope(config)).__name__
        except ValueError as exc:  # asking for GPUs that are not there is refused
            assert f'TrainingConfig.{name}' in str(exc), exc
            return f'refused: {exc}'

    tf_base = ctx.training(backend='tensorflow', accelerator='auto')
    if name == 'accelerator':
        assert_changes(tf_scope, tf_base, name, 'cpu')
        accelerator = torch_trainer(ctx, lambda s: type(s.trainer.accelerator).__name__)
        if torch.cuda.is_available():
            assert_changes(accelerator, ctx.training(accelerator='cpu'), name, 'gpu')
        else:  # Lightning refuses a GPU that is not there
            assert accelerator(ctx.training(accelerator='cpu')) == 'CPUAccelerator'
            with pytest.raises(Exception, match='gpu'):
                accelerator(ctx.training(accelerator='gpu'))
        return
    assert_changes(tf_scope, tf_base, name, 2)
    assert_changes(torch_trainer(ctx, lambda s: s.trainer.num_devices),
                   ctx.training(strategy='ddp'), name, 2)


@check(TrainingConfig, 'strategy', 'num_nodes', 'precision')
def _lightning_only(ctx: Context, name: str) -> None:
    value = {'strategy': 'ddp', 'num_nodes': 2, 'precision': 'bf16-mixed'}[name]
    read = {'strategy': lambda s: type(s.trainer.strategy).__name__,
            'num_nodes': lambda s: s.trainer.num_nodes,
            'precision': lambda s: type(s.trainer.precision_plugin).__name__}[name]
    base = ctx.training(strategy='ddp') if name == 'num_nodes' else ctx.training()
    assert_changes(torch_trainer(ctx, read), base, name, value)
    assert_refused(ctx.training(backend='tensorflow'), name, value)


@check(TrainingConfig, 'num_workers')
def _num_workers(ctx: Context, name: str) -> None:
    assert_changes(torch_trainer(ctx, lambda s: s.datamodule.num_workers), ctx.training(),
                   name, 2)
    assert_refused(ctx.training(backend='tensorflow'), name, 2)


# ----- InferenceConfig
@check(InferenceConfig, 'n_groups', 'sequential_sampling', 'subsample_seed', 'batch_size')
def _inference_grouping(ctx: Context, name: str) -> None:
    base = ctx.inference(n_groups=12, sequential_sampling=False, batch_size=8)
    value = {'n_groups': 20, 'sequential_sampling': True, 'subsample_seed': 7,
             'batch_size': 5}[name]
    for backend in BACKENDS:
        assert_changes(predicted(ctx, backend), base, name, value)


@check(InferenceConfig, 'device')
def _inference_device(ctx: Context, name: str) -> None:
    """'cpu' runs; a GPU index that is not there is an error naming the setting."""
    from ptycho.workflows.backend_selector import get_backend

    for backend in BACKENDS:
        model, _ = models_for(ctx, backend)
        config = ctx.inference(backend=backend, n_groups=4)
        assert get_backend(backend).predict(model, ctx.scan, config).patches.shape[0] == 4
        with pytest.raises(ValueError, match='InferenceConfig.device'):
            get_backend(backend).predict(model, ctx.scan, changed(config, name, 'cuda:63'))


@check(InferenceConfig, 'refine_epochs', 'refine_probe', 'refine_positions')
def _inference_refinement(ctx: Context, name: str) -> None:
    """What the contract's reconstruction returns: the residual per refinement epoch and
    the probe (refined, or the scan's as given)."""
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import reconstruct

    def observe(config: InferenceConfig) -> tuple[Any, ...]:
        model, _ = models_for(ctx, config.backend)
        result = reconstruct(get_backend(config.backend), model, ctx.scan, config)
        return result.losses, result.probe_refined, result.probe.tobytes()

    for backend in BACKENDS:
        base = ctx.inference(backend=backend, refine_epochs=1)
        assert_changes(observe, base, name, {'refine_epochs': 2, 'refine_probe': False,
                                             'refine_positions': False}[name])
        assert_refused(base, name, {'refine_epochs': -1, 'refine_probe': 'yes',
                                    'refine_positions': 0}[name])


@check(InferenceConfig, 'tiling')
def _inference_tiling(ctx: Context, name: str) -> None:
    """The groups a whole-scan stream reconstructs with a gridsize-2 network: one per
    position ('seeds') or about one per pattern ('partition', the shared streaming code
    both backends use); 'partition' with random sampling is refused."""
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import LoadedModel
    from ptycho.workflows.streaming import reconstruct_scan

    training = ctx.training(model={'gridsize': 2})
    module = torch_module(ctx, training)
    model = LoadedModel('pytorch', training, module.intensity_scale, None,
                        {'diffraction_to_obj': module.diffraction_to_obj(),
                         'lightning_module': module})

    def observe(config: InferenceConfig) -> int:
        return len(reconstruct_scan(get_backend('pytorch'), model, ctx.scan,
                                    config).groups.patches)

    base = ctx.inference(model={'gridsize': 2}, refine_epochs=0)
    assert_changes(observe, base, name, 'partition')
    assert observe(changed(base, name, 'partition')) < 0.6 * observe(base)
    assert_refused(base, name, 'tiles')
    assert_refused(ctx.inference(model={'gridsize': 2}, sequential_sampling=False), name,
                   'partition')


@check(InferenceConfig, 'inference_precision')
def _inference_precision(ctx: Context, name: str) -> None:
    """The objects ``predict`` returns, in each backend: bfloat16 changes them a little,
    'float32' is the model's own (float32) arithmetic, an unknown value is refused."""
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import LoadedModel

    def observe(config: InferenceConfig) -> np.ndarray:
        if config.backend == 'pytorch':
            module = torch_module(ctx, ctx.training(backend='pytorch'))
            handle: Any = {'diffraction_to_obj': module.diffraction_to_obj(),
                           'lightning_module': module}
            scale = module.intensity_scale
        else:
            handle, scale = ctx.tf_models, float(ctx.tf_models.intensity_scale)
        model = LoadedModel(config.backend, ctx.training(backend=config.backend), scale, None,
                            handle)
        return get_backend(config.backend).predict(model, ctx.scan, config).patches

    for backend in BACKENDS:
        base = ctx.inference(backend=backend, n_groups=8)
        trained = observe(base)
        np.testing.assert_array_equal(observe(changed(base, name, 'float32')), trained)
        low = observe(changed(base, name, 'bfloat16'))
        assert not np.array_equal(low, trained), backend
        np.testing.assert_allclose(low, trained, rtol=0, atol=0.05 * np.abs(trained).max())
        assert_refused(base, name, 'half')


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize('key', sorted(CHECKS), ids='.'.join)
def test_field(ctx: Context, key: tuple[str, str]) -> None:
    CHECKS[key](ctx, key[1])


@covers(TrainingConfig, 'batch_size', 'nepochs', 'learning_rate', 'debug', 'validation_split',
        'early_stopping_patience', 'lr_plateau_patience', 'logger', 'mae_weight', 'nll_weight')
@pytest.mark.parametrize('name', ['batch_size', 'nepochs', 'learning_rate', 'debug',
                                  'validation_split', 'early_stopping_patience',
                                  'lr_plateau_patience', 'logger', 'mae_weight', 'nll_weight'])
def test_training_loop(ctx: Context, fit_args: Callable[[TrainingConfig], Any],
                       name: str) -> None:
    """Both backends: what TensorFlow fits with, and what torch would."""
    value = {'batch_size': 5, 'nepochs': 3, 'learning_rate': 1e-2, 'debug': True,
             'validation_split': 0.25, 'early_stopping_patience': 2, 'lr_plateau_patience': 0,
             'logger': 'csv', 'mae_weight': 0.5, 'nll_weight': 0.5}[name]
    base = ctx.training(n_groups=24)
    assert_changes(fit_args, base, name, value)
    torch_read: dict[str, Callable[[Any], Any]] = {
        'batch_size': lambda s: s.datamodule.batch_size,
        'nepochs': lambda s: s.trainer.max_epochs,
        'learning_rate': lambda s: s.module.configure_optimizers()['optimizer'].defaults['lr'],
        'debug': lambda s: s.trainer.progress_bar_callback is not None,
        'validation_split': lambda s: s.datamodule.has_validation,
        'early_stopping_patience': lambda s: callback_types(s.trainer.callbacks),
        'lr_plateau_patience': lambda s: type(s.module.configure_optimizers()).__name__,
        'logger': lambda s: type(s.trainer.logger).__name__,
    }
    if name in torch_read:
        assert_changes(torch_trainer(ctx, torch_read[name]), base, name, value)
    else:
        assert_changes(torch_loss(ctx), base, name, value)


@covers(TrainingConfig, 'realspace_mae_weight', 'realspace_weight')
@pytest.mark.parametrize('name', ['realspace_mae_weight', 'realspace_weight'])
def test_realspace_weights(ctx: Context, fit_args: Callable[[TrainingConfig], Any],
                           name: str) -> None:
    """Supervised mode: a real-space loss term in both backends; otherwise refused."""
    supervised = ctx.training(model={'model_type': 'supervised'}, n_groups=24)
    assert_changes(fit_args, supervised, name, 0.5)
    assert_changes(torch_loss(ctx), supervised, name, 0.5)
    assert_refused(ctx.training(), name, 0.5)


@covers(InferenceConfig, 'model_path', 'test_data_file', 'output_dir')
def test_inference_files(ctx: Context) -> None:
    """``ptychopinn infer`` reads ``model_path`` and ``test_data_file``, writes to
    ``output_dir``."""
    from ptycho.bundle import write_bundle
    from ptycho.config.config import to_dict
    from ptycho_torch.persistence import save_bundle_torch

    config = ctx.inference(model_path=ctx.tmp / 'no_model', test_data_file=ctx.scan_file)
    result = run_cli('infer', '--config', save_yaml(config, ctx.tmp / 'i1.yaml'), cwd=ctx.tmp)
    assert result.returncode == 2 and 'no_model: model directory not found' in result.stderr

    write_bundle(ctx.tmp / 'manifest_only', 'pytorch', {}, config=to_dict(ctx.training()),
                 intensity_scale=1.0, model_names=[])
    config = ctx.inference(model_path=ctx.tmp / 'manifest_only',
                           test_data_file=ctx.tmp / 'no_scan.npz')
    result = run_cli('infer', '--config', save_yaml(config, ctx.tmp / 'i2.yaml'), cwd=ctx.tmp)
    assert result.returncode == 2 and 'no_scan.npz: data file not found' in result.stderr

    training = ctx.training()
    model_dir = ctx.tmp / 'untrained'
    save_bundle_torch(torch_module(ctx, training), training, model_dir)
    config = ctx.inference(model_path=model_dir, test_data_file=ctx.scan_file,
                           output_dir=ctx.tmp / 'chosen', n_groups=8)
    result = run_cli('infer', '--config', save_yaml(config, ctx.tmp / 'i3.yaml'), cwd=ctx.tmp)
    assert result.returncode == 0, result.stderr
    assert (ctx.tmp / 'chosen' / 'recon.npz').is_file()
    assert not (ctx.tmp / InferenceConfig().output_dir).exists()  # not the default


@covers(InferenceConfig, 'debug')
def test_inference_debug(ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """``debug``: each backend's reconstruction reports how it ran at INFO (else DEBUG)."""
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import reconstruct

    for backend in BACKENDS:
        model, _ = models_for(ctx, backend)
        config = ctx.inference(backend=backend, n_groups=6, batch_size=4)
        for debug in (False, True):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger='ptycho.workflows.contract'):
                reconstruct(get_backend(backend), model, ctx.scan,
                            dataclasses.replace(config, debug=debug))
            lines = [r.getMessage() for r in caplog.records
                     if r.name == 'ptycho.workflows.contract']
            if debug:
                assert len(lines) == 1 and f'Reconstruction ({backend} backend, cpu' in \
                    lines[0] and '6 groups in 2 batches of up to 4' in lines[0], lines
            else:
                assert lines == []


# --------------------------------------------------------------------------- twin loss
def test_supervised_loss_is_the_same_formula_in_both_backends() -> None:
    """Real-space terms included: TensorFlow's Keras loss equals torch's on the same arrays."""
    from ptycho.model import supervised_loss as tf_loss
    from ptycho.model import supervised_targets
    from ptycho_torch.model import supervised_loss as torch_loss_fn

    rng = np.random.default_rng(3)
    B, N, C = 3, 16, 4
    amp = rng.uniform(0.2, 1.5, (B, N, N, C)).astype(np.float32)
    phase = rng.uniform(-math.pi, math.pi, (B, N, N, C)).astype(np.float32)
    Y = (rng.uniform(0.3, 1.0, (B, N, N, C))
         * np.exp(1j * rng.uniform(-3, 3, (B, N, N, C)))).astype(np.complex64)
    for weights in ((0.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.3, 0.7)):
        keras_value = float(np.mean(tf_loss(*weights)(supervised_targets(Y),
                                                        np.concatenate([amp, phase], -1))))
        as_torch = [torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
                    for a in (amp, phase, Y)]
        torch_value = float(torch_loss_fn(*as_torch, *weights))
        assert keras_value == pytest.approx(torch_value, rel=1e-5), weights
    diff = amp * np.exp(1j * phase) - Y
    extra = float(torch_loss_fn(*as_torch, 0.3, 0.7)) - float(torch_loss_fn(*as_torch))
    expected = (0.3 * np.mean(np.abs(diff.real) + np.abs(diff.imag))
                + 0.7 * np.mean(np.abs(diff) ** 2))
    assert extra == pytest.approx(expected, rel=1e-4)


def test_every_field_has_a_check() -> None:
    """A field added to a config class without a check (or refusal) here fails."""
    fields = {(cls.__name__, f.name) for cls in CLASSES for f in dataclasses.fields(cls)}
    checked = set(CHECKS) | set(COVERED)
    missing = sorted('.'.join(key) for key in fields - checked)
    assert not missing, f'config fields without a behaviour or refusal check: {missing}'
    assert not checked - fields, sorted(checked - fields)
