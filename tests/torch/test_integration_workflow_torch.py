"""End-to-end regression: train 2 epochs -> save -> load (no config kwargs) -> infer -> PNGs."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from _torch_data import tiny_config, tiny_raw  # noqa: E402
from ptycho import params  # noqa: E402
from ptycho.config.config import update_legacy_dict  # noqa: E402
from ptycho.raw_data import RawData  # noqa: E402


@pytest.fixture
def cuda_cpu_env(monkeypatch):
    """CPU-only execution, as the test contract requires."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')


def save_png(image: np.ndarray, path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    shown = ax.imshow(image, cmap='gray')
    fig.colorbar(shown, ax=ax)
    ax.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def test_run_pytorch_train_save_load_infer(cuda_cpu_env, tmp_path):
    from ptycho_torch.workflows.components import (_reassemble_cdi_image_torch,
                                                   load_inference_bundle_torch,
                                                   run_cdi_example_torch)

    train_file, test_file = tmp_path / 'train.npz', tmp_path / 'test.npz'
    tiny_raw().to_file(train_file)
    tiny_raw(48, seed=1).to_file(test_file)
    output_dir = tmp_path / 'training_outputs'
    config = tiny_config(output_dir, gridsize=2, nepochs=2, n_groups=64, train_data_file=train_file,
                         test_data_file=test_file)
    update_legacy_dict(params.cfg, config)
    train_data = RawData.from_file(str(config.train_data_file))
    test_data = RawData.from_file(str(config.test_data_file))

    # Training phase
    _, _, results = run_cdi_example_torch(train_data, test_data, config, do_stitching=False)
    assert len(results['history']['train_loss']) == 2

    # Persistence phase
    assert (output_dir / 'checkpoints' / 'last.ckpt').is_file()
    assert (output_dir / 'wts.h5.zip').is_file()
    from ptycho_torch.model import PtychoPINN_Lightning
    restored = PtychoPINN_Lightning.load_from_checkpoint(output_dir / 'checkpoints' / 'last.ckpt')
    assert restored.intensity_scale == pytest.approx(results['intensity_scale'])

    # Load phase: no config kwargs
    models, loaded_config = load_inference_bundle_torch(output_dir)
    assert 'lightning_module' in models and 'diffraction_to_obj' in models
    assert loaded_config.model.gridsize == 2 and loaded_config.backend == 'pytorch'
    assert params.get('intensity_scale') == pytest.approx(results['intensity_scale'])

    # Inference phase (M as the guide passes it: larger than N falls back to N/2)
    amplitude, phase, recon = _reassemble_cdi_image_torch(
        test_data, loaded_config, flip_x=False, flip_y=False, transpose=False,
        M=loaded_config.model.N * 8)
    assert amplitude.ndim == 2 and amplitude.shape == phase.shape
    assert np.isfinite(amplitude).all() and np.isfinite(phase).all()
    assert np.iscomplexobj(recon['reconstruction']) and recon['backend'] == 'pytorch'

    # Artefact validation
    amp_png, phase_png = tmp_path / 'reconstructed_amplitude.png', tmp_path / 'reconstructed_phase.png'
    save_png(amplitude, amp_png, 'amplitude')
    save_png(phase, phase_png, 'phase')
    assert amp_png.stat().st_size > 1024 and phase_png.stat().st_size > 1024
