"""Early stopping means the same in both backends (``TrainingConfig.early_stopping_patience``).

One scripted loss sequence drives each backend's own early-stopping callbacks, with the
weights set to the epoch number: both must stop after the same epoch and end with the
weights of the epoch with the lowest loss (Keras restores them itself; the torch backend's
``BestWeights`` does it for Lightning). Improvement means strictly lower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho.config.config import ModelConfig, TrainingConfig

#: Best 0.7 at epoch 3; epochs 4-6 do not go below it (0.75 twice, then 0.72, lower than
#: the last epoch but not than the best): with patience 3 training stops after epoch 6.
LOSSES = [1.0, 0.8, 0.9, 0.7, 0.75, 0.75, 0.72, 0.6, 0.5]
PATIENCE, STOP_EPOCH, BEST_EPOCH = 3, 6, 3


def _config(backend: str, out: Path) -> TrainingConfig:
    return TrainingConfig(model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), backend=backend,
                          nepochs=len(LOSSES), early_stopping_patience=PATIENCE,
                          lr_plateau_patience=0, logger='none', accelerator='cpu',
                          output_dir=out)


def test_tensorflow_stops_and_restores_the_best_epoch(tmp_path: Path) -> None:
    pytest.importorskip('tensorflow')
    import keras

    from ptycho.train_pinn import early_stopping_callback

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse')
    callback = early_stopping_callback(_config('tensorflow', tmp_path), 'loss')
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate(LOSSES):
        model.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
        callback.on_epoch_end(epoch, {'loss': loss})
        if model.stop_training:
            break
    callback.on_train_end()
    assert epoch == STOP_EPOCH
    assert model.get_weights()[0].item() == BEST_EPOCH


def test_pytorch_stops_and_restores_the_best_epoch(tmp_path: Path) -> None:
    pytest.importorskip('lightning')
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ptycho_torch.workflows.training import LossHistory, build_trainer

    class Scripted(pl.LightningModule):
        """Weight = epoch number; the logged train_loss follows LOSSES."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def on_train_epoch_start(self) -> None:
            with torch.no_grad():
                self.w.fill_(float(self.current_epoch))

        def training_step(self, batch: object, index: int) -> torch.Tensor:
            loss = self.w.sum() * 0 + LOSSES[self.current_epoch]
            self.log('train_loss', loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)

    history = LossHistory()
    module = Scripted()
    trainer = build_trainer(_config('pytorch', tmp_path), tmp_path, 'train_loss',
                            history=history, batches_per_epoch=2, validate=False)
    trainer.fit(module)
    assert len(history.history['train_loss']) == STOP_EPOCH + 1
    assert history.history['train_loss'] == pytest.approx(LOSSES[:STOP_EPOCH + 1])
    assert module.w.item() == BEST_EPOCH
    # The last checkpoint carries the best weights, so a resumed run ends the same way.
    saved = torch.load(tmp_path / 'checkpoints' / 'last.ckpt', weights_only=False)
    [best] = [state for key, state in saved['callbacks'].items() if 'BestWeights' in key]
    assert best['best_epoch'] == BEST_EPOCH and best['weights']['w'].item() == BEST_EPOCH
