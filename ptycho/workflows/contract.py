"""The backend contract: what the TensorFlow and the PyTorch backend both provide.

Framework-free (numpy and the core configs only). The dispatcher
(:mod:`ptycho.workflows.backend_selector`) hands out a :class:`Backend`; the CLI and the
Ptychodus plugin's worker use nothing else of a backend. Both implementations
(``ptycho.tf.backend.TensorFlowBackend``, ``ptycho_torch.backend.TorchBackend``) give every
method the same meaning; where one cannot honour an option it raises
:class:`UnsupportedOption` naming the option and the backend, before any work.

Typed results replace the workflows' result dicts, whose keys drifted between backends:
:class:`TrainResult` (history, bundle, the trained model), :class:`GroupObjects` (one
complex object per group, before stitching) and :class:`Reconstruction` (the stitched
object on its canvas).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.physics import COVERAGE_EPS

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, 'float | None', 'float | None'], None]
"""Called after each epoch with (epoch, train loss, validation loss or None)."""


class UnsupportedOption(ValueError):
    """A backend cannot honour an option; the message names the option and the backend."""

    def __init__(self, option: str, backend: str, why: str = '') -> None:
        self.option, self.backend = option, backend
        super().__init__(f'{option} is not supported by the {backend} backend'
                         + (f': {why}' if why else ''))


class TrainingCancelled(RuntimeError):
    """Training stopped because :attr:`TrainHooks.should_stop` said so; nothing was saved."""


@dataclass(frozen=True)
class TrainHooks:
    """How a caller follows and steers training: per-epoch losses, cancellation."""

    on_epoch: EpochCallback | None = None
    should_stop: Callable[[], bool] | None = None
    """Polled after every batch; True stops training at once and no bundle is written."""


@dataclass(frozen=True)
class LoadedModel:
    """A trained network ready to reconstruct any number of scans.

    ``handle`` is the backend's own object (Keras models, a Lightning module); only the
    backend that made it reads it.
    """

    backend: str
    config: TrainingConfig
    intensity_scale: float
    path: Path | None
    handle: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class TrainResult:
    backend: str
    model: LoadedModel
    history: Mapping[str, list[float]]
    """``{'train_loss': [...], 'val_loss': [...]}``, one entry per epoch."""
    epochs_run: int
    bundle_path: Path | None
    checkpoint_path: Path | None
    seconds: float
    primary: bool = True
    """False in the other processes of a distributed run: they wrote nothing, and their
    callers should not write outputs either (rank 0 does)."""


@dataclass(frozen=True)
class GroupObjects:
    """One complex object (N, N) per group and the group centres (x, y), object pixels."""

    patches: NDArray[np.complex64]
    positions_xy: NDArray[np.float64]
    seconds: float = 0.0
    device: str = 'cpu'
    """Where they were computed (``'cpu'``, ``'cuda:0'``, ...); stitching runs there too."""


@dataclass(frozen=True)
class Reconstruction:
    """A stitched object: canvas pixel (0, 0) is object coordinate ``origin_xy``."""

    obj: NDArray[np.complex64]
    coverage: NDArray[np.float32]
    origin_xy: tuple[float, float]
    M: int
    backend: str
    groups: GroupObjects
    timings: Mapping[str, float] = field(default_factory=dict)
    probe: NDArray[np.complex64] | None = field(default=None, repr=False, compare=False)
    """The probe the object goes with: the refined probe (in the data's units,
    ``|F(P O)| ~ D``) after a probe refinement, else the scan's probe as given; None from
    :meth:`Backend.stitch` alone."""
    probe_refined: bool = False
    """True when ``probe`` was refined with the object (then it replaces the input probe in
    the outputs: ``recon.npz``, ``product-out.h5``, the plugin's product)."""
    losses: tuple[float, ...] = ()
    """Data residual ``sqrt(sum m (A - D)**2 / sum m D**2)`` after each refinement epoch,
    the first entry before any (empty without refinement)."""
    positions_xy: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)
    """``(M, 2)`` patch centres ``(x, y)`` in object pixels as a position refinement left
    them (their mean is the given positions' mean); None when the positions were not
    refined (the scan's own positions hold)."""

    @property
    def amplitude(self) -> NDArray[np.float32]:
        return np.abs(self.obj)

    @property
    def phase(self) -> NDArray[np.float32]:
        return np.angle(self.obj)

    @property
    def uncovered(self) -> int:
        return int(np.count_nonzero(self.coverage < COVERAGE_EPS))


@runtime_checkable
class Backend(Protocol):
    """One deep-learning backend: train, load, reconstruct, stitch."""

    name: str

    def train(self, train_data: Any, test_data: Any | None, config: TrainingConfig, *,
              resume: bool | str | os.PathLike[str] = False, max_time: timedelta | None = None,
              hooks: TrainHooks | None = None, save_bundle: bool = True) -> TrainResult:
        """Fit a new model on ``train_data`` (``RawData``), validating on ``test_data``;
        write ``{output_dir}/wts.h5.zip`` (``save_bundle``). ``resume`` continues from the
        backend's checkpoint; ``max_time`` bounds the whole call, data preparation included.
        A cancelled run raises :class:`TrainingCancelled`."""
        ...

    def load(self, path: str | os.PathLike[str]) -> LoadedModel:
        """Load a bundle (a ``wts.h5.zip`` of this backend, or the directory holding one)."""
        ...

    def predict(self, model: LoadedModel, scan: Any, config: InferenceConfig) -> GroupObjects:
        """Reconstruct each group of ``scan`` in one forward pass.

        ``scan`` is a ``RawData`` (grouped as ``config`` says: every position, in order) or
        a :class:`ptycho.loader.PtychoDataContainer` already grouped and normalised (what
        :mod:`ptycho.workflows.streaming` hands over, chunk by chunk)."""
        ...

    def stitch(self, groups: GroupObjects, M: int, *,
               canvas_shape: tuple[int, int] | None = None,
               origin_xy: tuple[float, float] | None = None,
               align_phase: bool = True) -> Reconstruction:
        """Place each group's central M x M crop at its centre, averaged by coverage, after
        aligning the groups' constant phases (``align_phase``)."""
        ...

    def refine(self, scan: Any, reconstruction: Reconstruction,
               config: InferenceConfig) -> Reconstruction:
        """``reconstruction`` of ``scan`` (a ``RawData``) refined for ``config.refine_epochs``
        epochs on the scan's own data through this backend's forward model: the object, and
        the probe when ``config.refine_probe`` (:mod:`ptycho.refinement`). Same canvas;
        ``probe`` and ``losses`` filled in."""
        ...


    # -- the reference guide's workflows (legacy results dicts), same names in both ----
    def run_cdi_example(self, train_data: Any, test_data: Any | None, config: TrainingConfig,
                        flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                        M: int | None = None, do_stitching: bool = False
                        ) -> tuple[Any, Any, dict[str, Any]]:
        ...

    def train_cdi_model(self, train_data: Any, test_data: Any | None,
                        config: TrainingConfig) -> dict[str, Any]:
        ...

    def load_inference_bundle(self, model_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
        ...

    def reassemble_cdi_image(self, test_data: Any, config: TrainingConfig | InferenceConfig,
                             flip_x: bool = False, flip_y: bool = False,
                             transpose: bool = False, M: int | None = None, *,
                             models: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        ...


def orient(groups: GroupObjects, *, flip_x: bool = False, flip_y: bool = False,
           transpose: bool = False) -> GroupObjects:
    """The groups mirrored (x -> -x, y -> -y) or transposed (rows <-> columns of every patch
    and x <-> y of every centre: the whole image transposed); legacy orientation fixes."""
    if not (flip_x or flip_y or transpose):
        return groups
    positions = np.array(groups.positions_xy, dtype=np.float64, copy=True)
    patches = groups.patches
    if flip_x:
        positions[:, 0] = -positions[:, 0]
    if flip_y:
        positions[:, 1] = -positions[:, 1]
    if transpose:
        positions = positions[:, ::-1].copy()
        patches = np.ascontiguousarray(np.swapaxes(patches, -1, -2))
    return GroupObjects(patches, positions, groups.seconds, groups.device)


def reconstruct(backend: Backend, model: LoadedModel, scan: Any, config: InferenceConfig, *,
                M: int | None = None, canvas_shape: tuple[int, int] | None = None,
                origin_xy: tuple[float, float] | None = None, align_phase: bool = True,
                flip_x: bool = False, flip_y: bool = False,
                transpose: bool = False) -> Reconstruction:
    """A whole scan: one stream (:mod:`ptycho.workflows.streaming`) fed the scan in one chunk,
    its positions the plan; ``M`` defaults to :func:`ptycho.physics.default_crop`."""
    from ptycho.workflows.streaming import reconstruct_scan

    check_refinement(config, flip_x=flip_x, flip_y=flip_y, transpose=transpose)
    result = reconstruct_scan(backend, model, scan, config, M=M, canvas_shape=canvas_shape,
                              origin_xy=origin_xy, align_phase=align_phase, flip_x=flip_x,
                              flip_y=flip_y, transpose=transpose)
    n_groups = len(result.groups.positions_xy)
    logger.log(logging.INFO if config.debug else logging.DEBUG,
               'Reconstruction (%s backend, %s): %d groups in %d batches of up to %d, '
               'inference %.3f s, stitching %.3f s (M=%d), canvas %dx%d, %d uncovered pixels',
               backend.name, result.groups.device, n_groups, -(-n_groups // config.batch_size),
               config.batch_size, result.timings['inference_s'], result.timings['stitch_s'],
               result.M, *result.obj.shape[-2:], result.uncovered)
    return with_refinement(backend, scan, result, config)


def check_refinement(config: InferenceConfig, *, flip_x: bool = False, flip_y: bool = False,
                     transpose: bool = False) -> None:
    """Refuse, before any work, a refinement the image's orientation would make wrong: the
    legacy ``flip_x``/``flip_y``/``transpose`` mirror the image, not the data it is refined
    on."""
    if config.refine_epochs > 0 and (flip_x or flip_y or transpose):
        raise ValueError(f'InferenceConfig.refine_epochs: expected 0 with flip_x/flip_y/'
                         f'transpose (they mirror the image, not the diffraction data it would '
                         f'be refined on), found {config.refine_epochs!r}')


def with_refinement(backend: Backend, scan: Any, result: Reconstruction,
                    config: InferenceConfig) -> Reconstruction:
    """The network's whole-scan ``result`` as returned to users: refined on the scan's data
    when ``config.refine_epochs`` > 0 (:meth:`Backend.refine`), else unchanged with the
    scan's probe as given (``probe``)."""
    if config.refine_epochs > 0:
        return backend.refine(scan, result, config)
    return dataclasses.replace(result, probe=np.array(scan.probeGuess, np.complex64))


RUN_SETTINGS: tuple[str, ...] = ('batch_size', 'neighbor_count', 'device', 'refine_epochs',
                                 'refine_probe', 'refine_positions', 'tiling',
                                 'inference_precision')
"""The ``InferenceConfig`` fields a user chooses for each reconstruction with a trained model
(the Ptychodus panel's reconstruction settings, and the CLI's): what :func:`run_settings`
carries from the user's config to :func:`inference_config_for`."""


def run_settings(config: InferenceConfig, *extra: str) -> dict[str, Any]:
    """The user's :data:`RUN_SETTINGS` (and the ``extra`` fields) of ``config``, as
    overrides for :func:`inference_config_for`."""
    return {name: getattr(config, name) for name in RUN_SETTINGS + extra}


def inference_config_for(model: LoadedModel, *, batch_size: int = 256,
                         **overrides: Any) -> InferenceConfig:
    """How a scan is reconstructed with ``model``: its network, every position in order."""
    trained = model.config
    values: dict[str, Any] = dict(model=trained.model, backend=model.backend,
                                  batch_size=batch_size, neighbor_count=trained.neighbor_count,
                                  n_groups=None, sequential_sampling=True)
    values.update(overrides)
    return InferenceConfig(**values)
