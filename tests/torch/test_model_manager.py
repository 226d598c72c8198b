"""Cross-backend bundle loading: a bundle is read only by the backend that wrote it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.workflows import backend_selector


def _config(out: Path, backend: str) -> TrainingConfig:
    return TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), output_dir=out,
                          backend=backend)


@pytest.fixture
def tensorflow_bundle(tmp_path: Path) -> Path:
    pytest.importorskip('tensorflow')
    from ptycho import model_manager
    from ptycho.model import create_model

    config = _config(tmp_path / 'tf', 'tensorflow')
    models = create_model(config, np.ones((64, 64), np.complex64))
    model_manager.save_models(models, config, config.output_dir)
    return config.output_dir


@pytest.fixture
def pytorch_bundle(tmp_path: Path) -> Path:
    torch = pytest.importorskip('torch')
    persistence = pytest.importorskip('ptycho_torch.persistence')
    from ptycho_torch import config_bridge
    from ptycho_torch.model import PtychoPINN_Lightning

    config = _config(tmp_path / 'torch', 'pytorch')
    _, model_cfg, training_cfg = config_bridge.to_torch(config)
    module = PtychoPINN_Lightning(model_cfg, training_cfg,
                                  probe=torch.ones((64, 64), dtype=torch.complex64))
    persistence.save_bundle_torch(module, config, config.output_dir)
    return config.output_dir


def test_load_tensorflow_checkpoint_with_pytorch_backend(tensorflow_bundle: Path) -> None:
    config = InferenceConfig(model=ModelConfig(N=64), model_path=tensorflow_bundle,
                             backend='pytorch')
    with pytest.raises(ValueError, match=r'tensorflow backend.*pytorch backend') as info:
        backend_selector.load_inference_bundle_with_backend(tensorflow_bundle, config)
    assert str(tensorflow_bundle / 'wts.h5.zip') in str(info.value)
    torch_components = pytest.importorskip('ptycho_torch.workflows.components')
    with pytest.raises(ValueError, match='tensorflow'):
        torch_components.load_inference_bundle_torch(tensorflow_bundle)
    # The right backend loads it.
    config.backend = 'tensorflow'
    model, config_dict = backend_selector.load_inference_bundle_with_backend(tensorflow_bundle,
                                                                            config)
    assert config_dict['model']['N'] == 64 and hasattr(model, 'predict')


def test_load_pytorch_checkpoint_with_tensorflow_backend(pytorch_bundle: Path) -> None:
    config = InferenceConfig(model=ModelConfig(N=64), model_path=pytorch_bundle,
                             backend='tensorflow')
    with pytest.raises(ValueError, match=r'pytorch backend.*tensorflow backend'):
        backend_selector.load_inference_bundle_with_backend(pytorch_bundle, config)
    with pytest.raises(ValueError, match=r'pytorch backend.*tensorflow backend'):
        backend_selector.reassemble_with_backend(None, config)
    pytest.importorskip('tensorflow')
    from ptycho.workflows import components

    with pytest.raises(ValueError, match='pytorch'):
        components.load_inference_bundle(pytorch_bundle)
