"""The PyTorch backend behind the contract of :mod:`ptycho.workflows.contract`."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import Callback

from ptycho.bundle import bundle_path
from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.workflows.contract import (GroupObjects, LoadedModel, Reconstruction, TrainHooks,
                                       TrainingCancelled, TrainResult)
from ptycho_torch.data import as_torch_container
from ptycho_torch.inference import reconstruct_groups, resolve_device, stitch_groups
from ptycho_torch.persistence import load_inference_bundle_torch, save_bundle_torch
from ptycho_torch.workflows.training import prepare_training, run_training

NAME = 'pytorch'


class _Hooks(Callback):
    """Per-epoch losses out, cancellation in, as Lightning callbacks."""

    def __init__(self, hooks: TrainHooks) -> None:
        self.hooks = hooks
        self.cancelled = False

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if self.hooks.should_stop is not None and self.hooks.should_stop():
            self.cancelled = True
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.hooks.on_epoch is None:
            return
        metrics = trainer.callback_metrics
        value = {k: float(metrics[k]) if k in metrics else None
                 for k in ('train_loss', 'val_loss')}
        self.hooks.on_epoch(int(trainer.current_epoch), value['train_loss'], value['val_loss'])


class TorchBackend:
    """PyTorch + Lightning: training, bundles, batched inference, native stitching."""

    name = NAME

    def train(self, train_data: Any, test_data: Any | None, config: TrainingConfig, *,
              resume: bool | str | os.PathLike[str] = False, max_time: timedelta | None = None,
              hooks: TrainHooks | None = None, save_bundle: bool = True) -> TrainResult:
        tic = time.perf_counter()
        hook = _Hooks(hooks) if hooks is not None else None
        session = prepare_training(train_data, test_data, config, resume=resume,
                                   max_time=max_time,
                                   extra_callbacks=[hook] if hook is not None else None)
        results = run_training(session, save_bundle=False)
        config = session.config  # as trained (nphotons decided from the data)
        if hook is not None and hook.cancelled:
            raise TrainingCancelled(f'training cancelled; no model was saved (the last epoch '
                                    f'checkpoint is {results["checkpoint"]})')
        module = results['models']['lightning_module']
        primary = bool(results['primary'])
        bundle = (save_bundle_torch(module, config, config.output_dir)
                  if save_bundle and primary else None)
        model = LoadedModel(NAME, config, float(results['intensity_scale']), bundle,
                            results['models'])
        return TrainResult(NAME, model, results['history'], int(results['epochs_run']), bundle,
                           Path(results['checkpoint']), time.perf_counter() - tic, primary)

    def load(self, path: str | os.PathLike[str]) -> LoadedModel:
        models, config = load_inference_bundle_torch(path)
        return LoadedModel(NAME, config, float(models['lightning_module'].intensity_scale),
                           bundle_path(path), models)

    def predict(self, model: LoadedModel, scan: Any, config: InferenceConfig) -> GroupObjects:
        tic = time.perf_counter()
        device = resolve_device(config.device)
        container = as_torch_container(scan, config)
        objects = reconstruct_groups(model.handle['diffraction_to_obj'], container,
                                     model.intensity_scale, config.batch_size, device,
                                     config.precision_override)
        positions = container.global_offsets.numpy().astype(np.float64).reshape(-1, 2)
        return GroupObjects(objects.cpu().numpy(), positions, time.perf_counter() - tic,
                            str(device))

    def stitch(self, groups: GroupObjects, M: int, *,
               canvas_shape: tuple[int, int] | None = None,
               origin_xy: tuple[float, float] | None = None,
               align_phase: bool = True) -> Reconstruction:
        import torch

        patches = torch.from_numpy(np.asarray(groups.patches, np.complex64))
        stitched = stitch_groups(patches.to(resolve_device(groups.device)), groups.positions_xy,
                                 M, canvas_shape, origin_xy, align_phase=align_phase)
        return Reconstruction(stitched.image, stitched.coverage, stitched.origin_xy, M, NAME,
                              groups)

    def refine(self, scan: Any, reconstruction: Reconstruction,
               config: InferenceConfig) -> Reconstruction:
        from ptycho_torch.refine import refine

        return refine(scan, reconstruction, config)

    # -- the reference guide's workflows ------------------------------------------------
    def run_cdi_example(self, train_data: Any, test_data: Any | None, config: TrainingConfig,
                        flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                        M: int | None = None, do_stitching: bool = False
                        ) -> tuple[Any, Any, dict[str, Any]]:
        from ptycho_torch.workflows.components import run_cdi_example_torch

        return run_cdi_example_torch(train_data, test_data, config, do_stitching, flip_x,
                                     flip_y, transpose, M)

    def train_cdi_model(self, train_data: Any, test_data: Any | None,
                        config: TrainingConfig) -> dict[str, Any]:
        from ptycho_torch.workflows.training import train_cdi_model_torch

        return train_cdi_model_torch(train_data, test_data, config)

    def load_inference_bundle(self, model_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
        return load_inference_bundle_torch(model_dir)

    def reassemble_cdi_image(self, test_data: Any, config: TrainingConfig | InferenceConfig,
                             flip_x: bool = False, flip_y: bool = False,
                             transpose: bool = False, M: int | None = None, *,
                             models: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        from ptycho_torch.workflows.components import _reassemble_cdi_image_torch

        return _reassemble_cdi_image_torch(test_data, config, flip_x, flip_y, transpose, M,
                                           models=models)
