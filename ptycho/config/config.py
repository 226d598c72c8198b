"""Run configuration for PtychoPINN, shared by both backends and by Ptychodus.

These dataclasses are the single source of truth for a run. They import only the
standard library (plus PyYAML lazily, for YAML files), because Ptychodus imports this
module in its GUI process, which must never pick up a TensorFlow or CUDA context.

Ptychodus 1.7.0 builds ``ModelConfig(N=0, ...)`` for training and assigns
``config.model.N`` later, once the pattern size is known; ``N == 0`` therefore means
"not yet known" and :meth:`ModelConfig.require_size` is what consumers call before
they build anything.

Each field declares, in its ``metadata``, everything the generated interfaces need, once:
``help`` (its meaning: CLI ``--help``, the plugin panel's tool tip), ``choices`` (a closed
vocabulary: CLI choices, panel combo box) and ``setting`` (a :class:`Setting`: the field's
key and label in the Ptychodus plugin). :func:`describe` reads them for
:mod:`ptycho.cli_config` and ``ptychopinn_plugin.settings``; the torch backend's view
(``ptycho_torch.torch_config``) is derived from the fields themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, MutableMapping, TypeVar

from ptycho.atomic import write_text

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ('tensorflow', 'pytorch')
TILINGS: tuple[str, ...] = ('seeds', 'partition')
"""How inference forms groups at gridsize > 1 (``InferenceConfig.tiling``; the rules are
:mod:`ptycho.workflows.streaming`'s)."""
PATCH_SIZES: tuple[int, ...] = (64, 128, 256)
MODEL_TYPES: tuple[str, ...] = ('pinn', 'supervised')
AMP_ACTIVATIONS: tuple[str, ...] = ('sigmoid', 'swish', 'silu', 'softplus', 'relu')
INPUT_FEATURES: tuple[str, ...] = ('backprojection', 'amplitude')
NETWORK_PRECISIONS: tuple[str, ...] = ('auto', 'float32', 'bfloat16')
INFERENCE_PRECISIONS: tuple[str, ...] = ('trained',) + NETWORK_PRECISIONS
"""``InferenceConfig.inference_precision``: 'trained' keeps the model's own
``ModelConfig.network_precision``; the others override it for a reconstruction."""

LEGACY_MODEL_DEFAULTS: dict[str, Any] = {'input_features': 'amplitude', 'skip_connections': False}
"""Values of model settings added after format 1 bundles were first written.

A bundle or checkpoint whose config lacks one of these keys was trained with the network
these values describe, so loaders fill them in (:func:`with_legacy_model_defaults`) rather
than take today's defaults.
"""
LOGGERS: tuple[str, ...] = ('csv', 'tensorboard', 'mlflow', 'none')
ACCELERATORS: tuple[str, ...] = ('auto', 'cpu', 'gpu', 'cuda', 'mps')
STRATEGIES: tuple[str, ...] = ('auto', 'ddp', 'ddp_spawn')
PRECISIONS: tuple[str, ...] = ('32-true', 'bf16-mixed')
_DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?')
DEFAULT_SEED = 42
"""The seed of a run whose ``subsample_seed`` is None."""
DEFAULT_NPHOTONS = 1e9
"""Photons per pattern assumed when ``TrainingConfig.nphotons`` is None and the data are not
counts (so the count cannot be read off them); see :mod:`ptycho.photons`."""
PROBE_SCALE = 4.0
"""The one ``ModelConfig.probe_scale`` accepted (Ptychodus' default; the probe is normalised
by its energy instead)."""

Backend = Literal['tensorflow', 'pytorch']


@dataclass(frozen=True)
class Setting:
    """How a field appears in the Ptychodus plugin (``ptychopinn_plugin.settings``).

    A field with a ``Setting`` in its metadata becomes a parameter of the plugin's settings
    group for its dataclass and, unless ``shown`` is false, a row of the plugin's panel.
    """

    key: str
    """Key in the Ptychodus settings file; fixed once released (saved settings use it)."""
    label: str
    """Row label in the panel."""
    model_type: str | None = None
    """Show the row only for this algorithm ('pinn' or 'supervised')."""
    unset: int | None = None
    """Settings value that stands for ``None`` (Ptychodus settings have no None)."""
    menu: tuple[str, ...] = ()
    """Values offered in the panel's combo box when not all ``choices`` (aliases left out)."""
    shown: bool = True
    """False: kept in the settings file for Ptychodus' sake, with no panel row."""


@dataclass(frozen=True)
class FieldInfo:
    """One config field as the generated interfaces (CLI flags, plugin settings) see it."""

    name: str
    type: type
    """``bool``, ``int``, ``float``, ``str`` or ``Path`` (``None`` stripped, see ``optional``)."""
    optional: bool
    default: Any
    help: str
    choices: tuple[Any, ...]
    setting: Setting | None


def describe(cls: type) -> tuple[FieldInfo, ...]:
    """The fields of a config dataclass with their metadata (the nested ``model`` left out)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name == 'model':
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        out.append(FieldInfo(f.name, base, optional, default, f.metadata.get('help', ''),
                             tuple(f.metadata.get('choices', ())), f.metadata.get('setting')))
    return tuple(out)


def _fail(cls_name: str, field_name: str, expected: str, found: Any) -> None:
    raise ValueError(f'{cls_name}.{field_name}: expected {expected}, found {found!r}')


def _check_choice(cls_name: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        _fail(cls_name, name, f'one of {list(choices)}', value)


def _check_int(cls_name: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        _fail(cls_name, name, f'an integer >= {minimum}', value)


def _check_real(
    cls_name: str, name: str, value: Any, minimum: float, maximum: float = math.inf,
    *, open_low: bool = False,
) -> None:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))
    if ok:
        ok = (value > minimum if open_low else value >= minimum) and value <= maximum
    if not ok:
        low = f'> {minimum}' if open_low else f'>= {minimum}'
        high = '' if maximum == math.inf else f' and <= {maximum}'
        _fail(cls_name, name, f'a finite number {low}{high}', value)


def _check_fixed(cls_name: str, name: str, value: Any, fixed: Any, why: str) -> None:
    """A setting kept for Ptychodus' sake that has one implemented value: ``fixed``."""
    if isinstance(value, bool) != isinstance(fixed, bool) or value != fixed:
        _fail(cls_name, name, f'{fixed!r} ({why})', value)


def _check_bool(cls_name: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(cls_name, name, 'true or false', value)


def _as_path(value: Any, cls_name: str, name: str) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise ValueError(f'{cls_name}.{name}: expected a file path, found {value!r}')


@dataclass
class ModelConfig:
    """Network and physics settings; identical meaning in both backends."""

    N: int = field(default=64,
        metadata={'choices': PATCH_SIZES,
                  'help': 'patch (diffraction pattern) size in pixels: 64, 128 or 256 (0 = take it from the data)'})
    gridsize: int = field(default=2,
        metadata={'setting': Setting('GridSize', 'Grid Size'),
                  'help': 'patterns per sample along each axis; C = gridsize**2 neighbouring patterns are reconstructed together'})
    n_filters_scale: int = field(default=1,
        metadata={'setting': Setting('NumFiltersScale', 'Filter Scale'),
                  'help': 'network width multiplier (level widths 16*scale*2**k)'})
    model_type: str = field(default='pinn',
        metadata={'choices': MODEL_TYPES,
                  'help': "'pinn' (physics-informed, no ground truth) or 'supervised' (needs objectGuess)"})
    amp_activation: str = field(default='softplus',
        metadata={'choices': AMP_ACTIVATIONS,
                  'setting': Setting('AmpActivation', 'Amplitude Activation',
                                     menu=tuple(a for a in AMP_ACTIVATIONS if a != 'silu')),
                  'help': 'output activation of the amplitude decoder'})
    object_big: bool = field(default=True,
        metadata={'setting': Setting('ObjectBig', 'Object Big'),
                  'help': 'with gridsize > 1, merge the C patches on a shared canvas so neighbours must agree'})
    probe_big: bool = field(default=True,
        metadata={'setting': Setting('ProbeBig', 'Probe Big'),
                  'help': 'let the object extend beyond the central N/2 window through a periphery branch'})
    probe_mask: bool = field(default=False,
        metadata={'setting': Setting('ProbeMask', 'Probe Mask'),
                  'help': 'multiply the probe by a disk of radius N/4'})
    pad_object: bool = field(default=True,
        metadata={'setting': Setting('PadObject', 'Pad Object'),
                  'help': 'confine the reconstructed object to the central N/2 window of each patch'})
    probe_scale: float = field(default=PROBE_SCALE,
        metadata={'setting': Setting('ProbeScale', 'Probe Scale', shown=False),
                  'help': 'Ptychodus compatibility setting, fixed at 4.0: the probe is normalised '
                          'by its energy (specs/architecture.md), so no other value is accepted'})
    gaussian_smoothing_sigma: float = field(default=0.0,
        metadata={'setting': Setting('GaussianSmoothingSigma', 'Gaussian Smoothing Sigma',
                                     shown=False),
                  'help': 'Ptychodus compatibility setting, fixed at 0: this implementation has '
                          'no smoothing of the object, so no other value is accepted'})
    input_features: str = field(default='backprojection',
        metadata={'choices': INPUT_FEATURES, 'setting': Setting('InputFeatures', 'Network Input'),
                  'help': "network input: 'backprojection' (amplitudes plus a physics back-projection "
                          "of the group into object space) or 'amplitude' (the amplitudes only)"})
    backprojection_iterations: int = field(default=8,
        metadata={'setting': Setting('BackprojectionIterations', 'Back-projection Steps'),
                  'help': 'projection steps from a flat object that make the back-projection input'})
    skip_connections: bool = field(default=True,
        metadata={'setting': Setting('SkipConnections', 'Skip Connections'),
                  'help': 'pass encoder features to the decoders at matching resolution (U-Net style)'})
    network_precision: str = field(default='float32',
        metadata={'choices': NETWORK_PRECISIONS,
                  'help': "arithmetic of the network's convolutions: 'float32', 'bfloat16' (about "
                          "2x faster on CPUs with AMX/AVX512-BF16 and on recent GPUs; physics and "
                          "loss stay float32) or 'auto' (bfloat16 where the hardware has it "
                          "natively, float32 elsewhere); both backends"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        name = type(self).__name__
        if self.N != 0:  # 0 = decided later from the data (Ptychodus does this)
            _check_choice(name, 'N', self.N, PATCH_SIZES)
        _check_int(name, 'gridsize', self.gridsize, 1)
        _check_int(name, 'n_filters_scale', self.n_filters_scale, 1)
        _check_choice(name, 'model_type', self.model_type, MODEL_TYPES)
        _check_choice(name, 'amp_activation', self.amp_activation, AMP_ACTIVATIONS)
        for flag in ('object_big', 'probe_big', 'probe_mask', 'pad_object', 'skip_connections'):
            _check_bool(name, flag, getattr(self, flag))
        _check_choice(name, 'input_features', self.input_features, INPUT_FEATURES)
        _check_choice(name, 'network_precision', self.network_precision, NETWORK_PRECISIONS)
        _check_int(name, 'backprojection_iterations', self.backprojection_iterations, 1)
        _check_fixed(name, 'probe_scale', self.probe_scale, PROBE_SCALE,
                     'the probe is normalised by its energy; probe scaling is not implemented')
        _check_fixed(name, 'gaussian_smoothing_sigma', self.gaussian_smoothing_sigma, 0.0,
                     'smoothing of the object is not implemented')

    @property
    def n_channels(self) -> int:
        """Patterns per sample, C = gridsize**2."""
        return self.gridsize * self.gridsize

    def require_size(self) -> int:
        """Return N, failing clearly if it was never set (Ptychodus sets it late)."""
        self.validate()
        if self.N == 0:
            raise ValueError(
                'ModelConfig.N: expected one of [64, 128, 256], found 0 (the patch size was '
                'never set; assign config.model.N from the diffraction pattern size)'
            )
        return self.N


@dataclass
class _RunConfig:
    """Fields common to training and inference runs."""

    _required_paths: ClassVar[tuple[str, ...]] = ()

    def _validate_common(self) -> None:
        name = type(self).__name__
        if not isinstance(self.model, ModelConfig):  # type: ignore[attr-defined]
            _fail(name, 'model', 'a ModelConfig', self.model)  # type: ignore[attr-defined]
        self.model.validate()  # type: ignore[attr-defined]
        _check_choice(name, 'backend', self.backend, BACKENDS)  # type: ignore[attr-defined]
        _check_bool(name, 'debug', self.debug)  # type: ignore[attr-defined]


@dataclass
class TrainingConfig(_RunConfig):
    """Everything a training run needs; see README for the meaning of each field."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train_data_file: Path | None = field(default=None,
        metadata={'help': 'training data: NPZ per specs/data_contracts.md'})
    test_data_file: Path | None = field(default=None,
        metadata={'help': 'optional test/validation data: NPZ per specs/data_contracts.md'})
    batch_size: int = field(default=16,
        metadata={'setting': Setting('BatchSize', 'Batch Size'),
                  'help': 'samples (groups) per optimisation step'})
    nepochs: int = field(default=50,
        metadata={'setting': Setting('NumEpochs', 'Epochs'), 'help': 'training epochs'})
    learning_rate: float = field(default=2e-3,
        metadata={'setting': Setting('LearningRate', 'Learning Rate'),
                  'help': 'Adam learning rate'})
    mae_weight: float = field(default=0.0,
        metadata={'setting': Setting('MAEWeight', 'Amplitude MAE Weight', model_type='pinn'),
                  'help': 'weight of the diffraction-amplitude MAE loss term (0..1)'})
    nll_weight: float = field(default=1.0,
        metadata={'setting': Setting('NLLWeight', 'Poisson NLL Weight', model_type='pinn'),
                  'help': 'weight of the Poisson negative log-likelihood loss term (0..1)'})
    realspace_mae_weight: float = field(default=0.0,
        metadata={'setting': Setting('RealspaceMAEWeight', 'Real-space MAE Weight',
                                     model_type='supervised'),
                  'help': 'supervised mode only: weight of the real-space MAE term '
                          'mean(|Re(O - Y)| + |Im(O - Y)|) between the complex object patches O '
                          'and the ground truth Y, added to the amplitude/phase loss (0..1)'})
    realspace_weight: float = field(default=0.0,
        metadata={'setting': Setting('RealspaceWeight', 'Real-space MSE Weight',
                                     model_type='supervised'),
                  'help': 'supervised mode only: weight of the real-space MSE term '
                          'mean|O - Y|^2 added to the amplitude/phase loss (0..1)'})
    nphotons: float | None = field(default=None,
        metadata={'setting': Setting('NumPhotons', 'Photons per Pattern (0 = from data)', unset=0),
                  'help': 'photons per pattern the normalised data stand for; sets the Poisson '
                          'scale. none = from the data: the mean summed counts per pattern when '
                          'the patterns are counts (amplitudes whose squares are whole numbers), '
                          f'else {DEFAULT_NPHOTONS:g}; a value more than 3x off the data\'s count '
                          'is warned about (ptycho.photons)'})
    n_groups: int | None = field(default=None,
        metadata={'setting': Setting('NumGroups', 'Groups (0 = all)', unset=0),
                  'help': 'number of groups (samples) to use; none = one per scan position'})
    neighbor_count: int = field(default=4,
        metadata={'setting': Setting('NeighborCount', 'Neighbours'),
                  'help': 'K nearest neighbours a group is drawn from (gridsize > 1)'})
    positions_provided: bool = field(default=True,
        metadata={'help': 'Ptychodus compatibility setting, fixed at true: training needs the '
                          'scan positions (position-free training is not implemented)'})
    probe_trainable: bool = field(default=False,
        metadata={'setting': Setting('ProbeTrainable', 'Train Probe'),
                  'help': 'refine the probe during training'})
    intensity_scale_trainable: bool = field(default=True,
        metadata={'setting': Setting('IntensityScaleTrainable', 'Train Intensity Scale',
                                     model_type='pinn'),
                  'help': 'learn the photon scale (log-parameterised) during training'})
    output_dir: Path = field(default=Path('training_outputs'),
        metadata={'help': 'directory for checkpoints, the model bundle and figures'})
    backend: str = field(default='tensorflow',
        metadata={'choices': BACKENDS, 'help': "'tensorflow' or 'pytorch'"})
    debug: bool = field(default=False, metadata={'help': 'progress bars and verbose logging'})
    subsample_seed: int | None = field(default=DEFAULT_SEED,
        metadata={'setting': Setting('Seed', 'Seed'),
                  'help': 'seed for grouping, shuffling and initialisation (reproducible runs)'})
    sequential_sampling: bool = field(default=False,
        metadata={'help': 'take group seed positions in scan order instead of at random'})
    validation_split: float = field(default=0.05,
        metadata={'setting': Setting('ValidationSplit', 'Validation Fraction'),
                  'help': 'fraction of training groups held out for validation when no test data is given'})
    early_stopping_patience: int = field(default=0,
        metadata={'help': 'stop after this many epochs without improvement (0 = never)'})
    lr_plateau_patience: int = field(default=3,
        metadata={'help': 'halve the learning rate after this many epochs in which the loss did not decrease at all (0 = off)'})
    logger: str = field(default='csv',
        metadata={'choices': LOGGERS,
                  'help': 'training log in OUTPUT_DIR/logs (or mlruns): csv, tensorboard, mlflow or none'})
    accelerator: str = field(default='auto',
        metadata={'choices': ACCELERATORS, 'setting': Setting('Accelerator', 'Accelerator'),
                  'help': "where training runs: 'auto' (a GPU when there is one), 'cpu' or 'gpu'"})
    devices: int = field(default=1,
        metadata={'setting': Setting('Devices', 'Devices'),
                  'help': 'GPUs per node to train on (pytorch with strategy ddp: also CPU '
                          'processes; tensorflow: MirroredStrategy over that many GPUs)'})
    strategy: str = field(default='auto',
        metadata={'choices': STRATEGIES, 'setting': Setting('Strategy', 'Strategy'),
                  'help': "how several devices share training: 'auto', or Lightning's 'ddp' / "
                          "'ddp_spawn' (pytorch; each device trains on its own shard of the groups)"})
    num_nodes: int = field(default=1,
        metadata={'help': 'machines in a multi-node run (pytorch, strategy ddp; torchrun or SLURM '
                          'starts one process per device)'})
    precision: str = field(default='32-true',
        metadata={'choices': PRECISIONS, 'setting': Setting('Precision', 'Precision'),
                  'help': "Lightning training precision: '32-true' or 'bf16-mixed' (pytorch); "
                          "the network's own arithmetic is ModelConfig.network_precision"})
    num_workers: int = field(default=0,
        metadata={'help': 'data-loader worker processes (pytorch; tensorflow keeps the data in '
                          'memory as tensors and accepts only 0)'})

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.train_data_file = _as_path(self.train_data_file, name, 'train_data_file')
        self.test_data_file = _as_path(self.test_data_file, name, 'test_data_file')
        self.output_dir = (_as_path(self.output_dir, name, 'output_dir')
                           or Path('training_outputs'))
        self.validate()

    def validate(self) -> None:
        self._validate_common()
        name = type(self).__name__
        _check_int(name, 'batch_size', self.batch_size, 1)
        _check_int(name, 'nepochs', self.nepochs, 1)
        _check_real(name, 'learning_rate', self.learning_rate, 0.0, 1.0, open_low=True)
        for weight in ('mae_weight', 'nll_weight', 'realspace_mae_weight', 'realspace_weight'):
            _check_real(name, weight, getattr(self, weight), 0.0, 1.0)
        if self.model.model_type != 'supervised':
            for weight in ('realspace_mae_weight', 'realspace_weight'):
                if getattr(self, weight) != 0:
                    _fail(name, weight, "0 when ModelConfig.model_type is not 'supervised' "
                          "(real-space terms compare with ground-truth objects)",
                          getattr(self, weight))
        if self.model.model_type == 'pinn' and self.nll_weight == 0 and self.mae_weight == 0:
            _fail(name, 'nll_weight/mae_weight', 'at least one positive loss weight', 0.0)
        if self.nphotons is not None:
            _check_real(name, 'nphotons', self.nphotons, 0.0, open_low=True)
        if self.n_groups is not None:
            _check_int(name, 'n_groups', self.n_groups, 1)
        _check_int(name, 'neighbor_count', self.neighbor_count, 1)
        if self.neighbor_count < self.model.n_channels and self.model.gridsize > 1:
            _fail(name, 'neighbor_count',
                  f'>= gridsize**2 = {self.model.n_channels}', self.neighbor_count)
        for flag in ('positions_provided', 'probe_trainable', 'intensity_scale_trainable',
                     'sequential_sampling'):
            _check_bool(name, flag, getattr(self, flag))
        _check_fixed(name, 'positions_provided', self.positions_provided, True,
                     'training needs the scan positions; position-free training is not '
                     'implemented')
        if self.subsample_seed is not None:
            _check_int(name, 'subsample_seed', self.subsample_seed, 0)
        _check_real(name, 'validation_split', self.validation_split, 0.0, 0.5)
        _check_int(name, 'early_stopping_patience', self.early_stopping_patience, 0)
        _check_int(name, 'lr_plateau_patience', self.lr_plateau_patience, 0)
        _check_choice(name, 'logger', self.logger, LOGGERS)
        _check_choice(name, 'accelerator', self.accelerator, ACCELERATORS)
        _check_int(name, 'devices', self.devices, 1)
        _check_choice(name, 'strategy', self.strategy, STRATEGIES)
        _check_int(name, 'num_nodes', self.num_nodes, 1)
        _check_choice(name, 'precision', self.precision, PRECISIONS)
        if self.backend == 'pytorch':
            if self.strategy == 'auto' and (self.devices > 1 or self.num_nodes > 1):
                _fail(name, 'strategy', "'ddp' or 'ddp_spawn' when devices > 1 or "
                      "num_nodes > 1", self.strategy)
        else:  # TensorFlow spreads one process over its GPUs (MirroredStrategy)
            for key, allowed in (('strategy', 'auto'), ('num_nodes', 1),
                                 ('precision', '32-true')):
                if getattr(self, key) != allowed:
                    _fail(name, key, f'{allowed!r} with the tensorflow backend (devices > 1 '
                          f'uses tf.distribute.MirroredStrategy; bfloat16 is '
                          f'ModelConfig.network_precision)', getattr(self, key))
        if self.precision != '32-true' and self.model.network_precision != 'float32':
            _fail(name, 'precision', "'32-true' when ModelConfig.network_precision is not "
                  "'float32' (choose one way to run in bfloat16)", self.precision)
        _check_int(name, 'num_workers', self.num_workers, 0)
        if self.backend == 'tensorflow' and self.num_workers != 0:
            _fail(name, 'num_workers', '0 with the tensorflow backend (its training data are '
                  'tensors in memory, with no loader processes; worker processes are a '
                  'pytorch option)', self.num_workers)

    @property
    def seed(self) -> int:
        """The seed actually used (``subsample_seed`` or :data:`DEFAULT_SEED`)."""
        return DEFAULT_SEED if self.subsample_seed is None else self.subsample_seed


@dataclass
class InferenceConfig(_RunConfig):
    """Everything a reconstruction from a trained model needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    model_path: Path | None = field(default=None,
        metadata={'help': 'trained model: a bundle directory or its wts.h5.zip'})
    test_data_file: Path | None = field(default=None,
        metadata={'help': 'the scan to reconstruct: NPZ per specs/data_contracts.md or a '
                          'Ptychodus diffraction.h5 + product.h5 pair (ptychopinn infer)'})
    n_groups: int | None = field(default=None,
        metadata={'help': 'number of groups (samples) to reconstruct; none = one per scan '
                          'position'})
    neighbor_count: int = field(default=4,
        metadata={'setting': Setting('NeighborCount', 'Neighbours'),
                  'help': 'K nearest neighbours a group is drawn from (gridsize > 1)'})
    batch_size: int = field(default=256,
        metadata={'setting': Setting('BatchSize', 'Batch Size'),
                  'help': 'groups per forward pass'})
    output_dir: Path = field(default=Path('inference_outputs'),
        metadata={'help': 'directory for the reconstruction outputs (ptychopinn infer)'})
    backend: str = field(default='tensorflow',
        metadata={'choices': BACKENDS, 'help': "'tensorflow' or 'pytorch'"})
    debug: bool = field(default=False,
        metadata={'help': 'log how the reconstruction ran (groups, batches, device, timings) '
                          'at INFO level instead of DEBUG'})
    subsample_seed: int | None = field(default=DEFAULT_SEED,
        metadata={'help': 'seed for choosing the groups (random sampling, neighbours)'})
    sequential_sampling: bool = field(default=True,
        metadata={'help': 'take group seed positions in scan order instead of at random'})
    device: str = field(default='auto',
        metadata={'setting': Setting('Device', 'Device'),
                  'help': "where reconstruction runs: 'auto' (a GPU when there is one), 'cpu', "
                          "'cuda' or 'cuda:N' (the GPU with index N)"})
    refine_epochs: int = field(default=20,
        metadata={'setting': Setting('RefineEpochs', 'Refinement Epochs'),
                  'help': 'epochs of physics refinement after the network: the stitched object '
                          '(and probe, positions) optimised on the scan\'s own diffraction data '
                          '(bench/refine.py); 0 = off, the network\'s image as it is'})
    refine_probe: bool = field(default=True,
        metadata={'setting': Setting('RefineProbe', 'Refine Probe'),
                  'help': 'optimise the probe with the object during refinement (the given '
                          'probe is an estimate); the refined probe is written with the object'})
    refine_positions: bool = field(default=True,
        metadata={'setting': Setting('RefinePositions', 'Refine Positions'),
                  'help': 'correct each scan position during refinement (given positions are '
                          'off by about a pixel on real scans); their mean shift is held at 0'})
    tiling: str = field(default='seeds',
        metadata={'setting': Setting('Tiling', 'Group Tiling'), 'choices': TILINGS,
                  'help': "gridsize > 1: 'seeds' = one group per scan position (every pattern "
                          "in about gridsize**2 groups); 'partition' = each pattern in about "
                          "one group: 2-4x faster live reconstruction, lower quality "
                          "(README, Live scans); needs sequential_sampling"})
    inference_precision: str = field(default='trained',
        metadata={'setting': Setting('InferencePrecision', 'Inference Precision'),
                  'choices': INFERENCE_PRECISIONS,
                  'help': "arithmetic of the network's convolutions when reconstructing: "
                          "'trained' (as the model was trained, ModelConfig.network_precision), "
                          "'float32', 'bfloat16' or 'auto' (bfloat16 where the hardware has it "
                          "natively); bfloat16 runs the PyTorch network about 1.8x faster on a "
                          "CPU with AVX512-BF16, results about 1 % apart (README, Live scans)"})

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.model_path = _as_path(self.model_path, name, 'model_path')
        self.test_data_file = _as_path(self.test_data_file, name, 'test_data_file')
        self.output_dir = (_as_path(self.output_dir, name, 'output_dir')
                           or Path('inference_outputs'))
        self.validate()

    def validate(self) -> None:
        self._validate_common()
        name = type(self).__name__
        if self.n_groups is not None:
            _check_int(name, 'n_groups', self.n_groups, 1)
        _check_int(name, 'neighbor_count', self.neighbor_count, 1)
        _check_int(name, 'batch_size', self.batch_size, 1)
        if self.subsample_seed is not None:
            _check_int(name, 'subsample_seed', self.subsample_seed, 0)
        _check_bool(name, 'sequential_sampling', self.sequential_sampling)
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            _fail(name, 'device', "'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)
        _check_int(name, 'refine_epochs', self.refine_epochs, 0)
        _check_bool(name, 'refine_probe', self.refine_probe)
        _check_bool(name, 'refine_positions', self.refine_positions)
        _check_choice(name, 'tiling', self.tiling, TILINGS)
        _check_choice(name, 'inference_precision', self.inference_precision,
                      INFERENCE_PRECISIONS)
        if self.tiling == 'partition' and not self.sequential_sampling:
            _fail(name, 'tiling', "'seeds' when sequential_sampling is False (the partition "
                  "takes the patterns in scan order)", self.tiling)

    @property
    def seed(self) -> int:
        return DEFAULT_SEED if self.subsample_seed is None else self.subsample_seed

    @property
    def precision_override(self) -> str | None:
        """The network precision this run asks for instead of the model's own, or None
        ('trained': the loaded model's ``ModelConfig.network_precision`` stays)."""
        return None if self.inference_precision == 'trained' else self.inference_precision


AnyConfig = TrainingConfig | InferenceConfig
_C = TypeVar('_C', TrainingConfig, InferenceConfig)

# Legacy ``params.cfg`` keys whose names differ from the dataclass field names.
_LEGACY_KEYS: dict[str, str] = {
    'object_big': 'object.big',
    'probe_big': 'probe.big',
    'probe_mask': 'probe.mask',
    'probe_trainable': 'probe.trainable',
    'intensity_scale_trainable': 'intensity_scale.trainable',
    'positions_provided': 'positions.provided',
    'output_dir': 'output_prefix',
    'train_data_file': 'train_data_file_path',
    'test_data_file': 'test_data_file_path',
}


def to_dict(config: ModelConfig | AnyConfig) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict of a config (paths as strings, model nested)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, ModelConfig):
            value = to_dict(value)
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = value
    return out


def from_dict(cls: type[_C], data: MutableMapping[str, Any] | dict[str, Any],
              source: str = '<dict>') -> _C:
    """Build ``cls`` from a dict as written by :func:`to_dict`; unknown keys are an error."""
    data = dict(data)
    model_data = data.pop('model', {}) or {}
    if not isinstance(model_data, dict):
        raise ValueError(f'{source}: key "model": expected a mapping, found {model_data!r}')
    known_model = {f.name for f in dataclasses.fields(ModelConfig)}
    known_run = {f.name for f in dataclasses.fields(cls)} - {'model'}
    unknown_model = sorted(set(model_data) - known_model)
    unknown = unknown_model + sorted(set(data) - known_run)
    if unknown:
        hints = [f'{key!r} -> {match[0]!r}' for key in unknown
                 for match in [difflib.get_close_matches(
                     key, known_model if key in unknown_model else known_run, n=1)] if match]
        raise ValueError(f'{source}: unknown config keys {unknown} for {cls.__name__} (expected '
                         f'{cls.__name__} fields, and ModelConfig fields under "model"'
                         + (f'; did you mean {", ".join(hints)}' if hints else '')
                         + '; the --help of ptychopinn train and infer lists them)')
    try:
        return cls(model=ModelConfig(**model_data), **data)
    except ValueError as exc:  # the class names the field; say which file it came from
        raise ValueError(f'{source}: {exc}') from exc


def with_legacy_model_defaults(model_data: Mapping[str, Any]) -> dict[str, Any]:
    """``model_data`` with :data:`LEGACY_MODEL_DEFAULTS` filled in where keys are missing."""
    return {**LEGACY_MODEL_DEFAULTS, **dict(model_data)}


_NO_EFFECT_MODEL: dict[str, Any] = {'probe_scale': PROBE_SCALE, 'gaussian_smoothing_sigma': 0.0}
_NO_EFFECT_RUN: dict[str, Any] = {'positions_provided': True}


def as_recorded(config: Mapping[str, Any], source: str = '<record>') -> dict[str, Any]:
    """A run config as a bundle or checkpoint recorded it, in today's terms.

    Model settings newer than the record get the values the recorded network had
    (:data:`LEGACY_MODEL_DEFAULTS`). Settings that earlier versions accepted without any
    effect and that are now refused unless at their one implemented value (``probe_scale``,
    ``gaussian_smoothing_sigma``, ``positions_provided``, real-space weights outside
    supervised mode, ``num_workers`` with TensorFlow) are set to that value: it describes
    what was trained, so the model still loads.
    """
    data = dict(config)
    changed: list[str] = []

    def reset(target: dict[str, Any], key: str, value: Any, label: str) -> None:
        if key in target and target[key] != value:
            changed.append(f'{label}={target[key]!r}')
            target[key] = value

    model = data.get('model')
    if isinstance(model, Mapping):
        model = with_legacy_model_defaults(model)
        for key, value in _NO_EFFECT_MODEL.items():
            reset(model, key, value, f'model.{key}')
        data['model'] = model
        if model.get('model_type') != 'supervised':
            for key in ('realspace_mae_weight', 'realspace_weight'):
                reset(data, key, 0.0, key)
    for key, value in _NO_EFFECT_RUN.items():
        reset(data, key, value, key)
    if data.get('backend', 'tensorflow') == 'tensorflow':
        reset(data, 'num_workers', 0, 'num_workers')
    if changed:
        logger.info('%s: %s had no effect when this model was trained; loaded as the '
                    'default', source, ', '.join(changed))
    return data


def save_yaml(config: ModelConfig | AnyConfig, path: str | os.PathLike[str]) -> Path:
    """Write a config as YAML, atomically (temp file + rename)."""
    import yaml

    return write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (empty file -> ``{}``)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f'{path}: cannot read config file ({exc.strerror})') from exc
    except yaml.YAMLError as exc:
        raise ValueError(f'{path}: not valid YAML ({exc})') from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a YAML mapping of config keys, found {type(data).__name__}')
    return data


def load_yaml(cls: type[_C], path: str | os.PathLike[str]) -> _C:
    """Read a config written by :func:`save_yaml` (or by hand)."""
    return from_dict(cls, read_yaml_mapping(path), source=str(path))


def mirror_legacy_params(config: ModelConfig | AnyConfig,
                         intensity_scale: float | None = None) -> None:
    """Write ``config`` (and a trained ``intensity_scale``) into ``ptycho.params.cfg``.

    The one writer of the legacy mirror for the dispatcher and both backends. Ptychodus'
    built-in integration and the reference guide's code read it (``params.get(
    'intensity_scale')`` before ``model.predict``); the TensorFlow bundle copies it into
    ``params.json``. Nothing in this package decides anything from it.
    """
    from ptycho import params

    update_legacy_dict(params.cfg, config)
    if intensity_scale is not None:
        params.cfg['intensity_scale'] = float(intensity_scale)


def update_legacy_dict(cfg: MutableMapping[str, Any], config: ModelConfig | AnyConfig) -> None:
    """Mirror ``config`` into the legacy flat ``params.cfg`` dict.

    The nested model config is flattened, renamed fields get their dotted legacy keys
    (``object.big``, ``probe.trainable``, ``output_prefix``, ...), and ``None`` values are
    skipped so they never overwrite a value set elsewhere.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, ModelConfig):
            update_legacy_dict(cfg, value)
            continue
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        cfg[_LEGACY_KEYS.get(f.name, f.name)] = value
    if isinstance(config, (TrainingConfig, InferenceConfig)):
        cfg['K'] = config.neighbor_count
    if isinstance(config, TrainingConfig) and config.model.N:
        # Photon scale before training; the trained value replaces it when a bundle loads.
        # nphotons None (from the data) is resolved by the backends before they train.
        nphotons = DEFAULT_NPHOTONS if config.nphotons is None else config.nphotons
        cfg['intensity_scale'] = math.sqrt(nphotons) / (config.model.N / 2)
