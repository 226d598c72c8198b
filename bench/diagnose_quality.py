"""Why the PINN's quality is what it is: three measurements on the standard benchmark.

1. **Is the problem well posed?** Direct gradient-descent ptychography (no network: the
   whole object is the unknown, Adam with cosine decay on the amplitude misfit) on the
   ``train`` scan, with the true probe; prints SSIM against ground truth after each block
   of epochs.
2. **How well can the model's physics explain the data?** The ground-truth patches pushed
   through the torch forward model, without and with the gridsize-2 overlap merge:
   relative amplitude residual after a best scale fit (Poisson noise alone gives ~0.1 %).
3. **What did a trained network learn?** (``--bundle DIR``, a PyTorch ``wts.h5.zip``
   directory) its data residual, and how much its output varies from pattern to pattern
   compared with the truth (a network stuck near the flat-object plateau varies little).

    .venv/bin/python bench/diagnose_quality.py [--bundle /tmp/quality_pytorch_xxxx]

Numbers from this script are quoted in README ("Quality").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


SAMPLE = 400  # groups used for the residuals and spreads


def _sample(container):
    """Measured X, true patches Y and local offsets of the first ``SAMPLE`` groups."""
    return (container.X[:SAMPLE], container.Y[:SAMPLE],
            container.local_offsets[:SAMPLE].float())


def _model_amplitude(model, patches, offsets):
    """Far-field amplitude of object patches through the model's own physics path."""
    import torch

    return torch.sqrt(model.predicted_intensity(patches, offsets))


def relative_residual(predicted, measured) -> float:
    """``|k A - X| / |X|`` with the least-squares scale ``k``."""
    import torch

    k = (predicted * measured).sum() / predicted.square().sum()
    return float(torch.linalg.vector_norm(k * predicted - measured)
                 / torch.linalg.vector_norm(measured))


def direct_reconstruction(raw, epochs: int, report_every: int, lr: float) -> None:
    import torch

    from ptycho.metrics import evaluate_reconstruction
    from ptycho_torch import physics

    X = torch.from_numpy(np.asarray(raw.diff3d, np.float32))
    probe = torch.from_numpy(np.asarray(raw.probeGuess, np.complex64))
    positions = torch.from_numpy(np.stack([raw.xcoords, raw.ycoords], axis=1))
    truth = np.asarray(raw.objectGuess)
    size = truth.shape[0]
    N = X.shape[-1]
    real = torch.ones(size, size, requires_grad=True)
    imag = torch.zeros(size, size, requires_grad=True)
    optimizer = torch.optim.Adam([real, imag], lr=lr)
    # Cosine decay: at a constant step the amplitude gets noisier while the phase converges.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    region = np.zeros((size, size), dtype=bool)
    margin = N // 2 + 8
    region[margin:-margin, margin:-margin] = True
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for index in torch.randperm(len(X), generator=generator).split(100):
            patches = physics.extract_patches(torch.complex(real, imag), positions[index], N)
            loss = torch.mean((physics.far_field_amplitude(probe * patches) - X[index]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        if epoch % report_every == 0 or epoch == epochs:
            with torch.no_grad():
                estimate = torch.complex(real, imag).numpy()
            scores = evaluate_reconstruction(estimate, truth, mask=region)
            print(f'  direct, epoch {epoch:3d} ({time.perf_counter() - start:5.1f} s): '
                  f'amp SSIM {scores["amp_ssim"]:.3f}  phase SSIM {scores["phase_ssim"]:.3f}')


def physics_floor(raw, gridsize: int) -> None:
    import torch

    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho_torch import physics
    from ptycho_torch.config_bridge import to_torch_model
    from ptycho_torch.data import as_torch_container
    from ptycho_torch.model import PtychoPINN

    config = TrainingConfig(model=ModelConfig(N=raw.probeGuess.shape[-1], gridsize=gridsize))
    container = as_torch_container(raw, config)
    model = PtychoPINN(to_torch_model(config.model), config.nphotons, container.probe)
    X, Y, offsets = _sample(container)
    with torch.inference_mode():
        plain = physics.far_field_amplitude(model.probe * Y)
        merged = _model_amplitude(model, Y, offsets)
    print(f'  ground truth, no overlap merge: residual {relative_residual(plain, X):.4f}')
    if gridsize > 1:
        print(f'  ground truth, gridsize-{gridsize} overlap merge: residual '
              f'{relative_residual(merged, X):.4f}  (bilinear merge + re-extraction blur)')


def trained_network(raw, bundle: Path) -> None:
    import torch

    from ptycho_torch.data import as_torch_container
    from ptycho_torch.persistence import load_inference_bundle_torch

    models, config = load_inference_bundle_torch(bundle)
    model = models['lightning_module'].model
    container = as_torch_container(raw, config)
    X, Y, offsets = _sample(container)
    N = X.shape[-1]
    centre = slice(N // 2 - 8, N // 2 + 8)
    with torch.inference_mode():
        amp, phase, obj = model.object_patches(X)
        predicted = _model_amplitude(model, obj, offsets)
        flat = torch.full_like(Y, complex(float(Y.abs().mean()), 0.0))
        flat_predicted = _model_amplitude(model, flat, offsets)
    print(f'  network residual {relative_residual(predicted, X):.4f} '
          f'(flat object: {relative_residual(flat_predicted, X):.4f})')
    print(f'  pattern-to-pattern spread of the central 16x16: amplitude '
          f'{float(amp[..., centre, centre].std(0).mean()):.4f} (truth '
          f'{float(Y.abs()[..., centre, centre].std(0).mean()):.4f}), phase '
          f'{float(phase[..., centre, centre].std(0).mean()):.4f} (truth '
          f'{float(Y.angle()[..., centre, centre].std(0).mean()):.4f})')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', type=Path, default=None,
                        help='directory holding a trained PyTorch wts.h5.zip')
    parser.add_argument('--direct-epochs', type=int, default=45)
    parser.add_argument('--direct-lr', type=float, default=0.05)
    parser.add_argument('--gridsize', type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from ptycho.simulation import standard_dataset

    raw = standard_dataset('train')
    print('1. direct gradient-descent ptychography (no network), train scan:')
    direct_reconstruction(raw, args.direct_epochs, max(args.direct_epochs // 5, 1), args.direct_lr)
    print('2. how well the model physics explains the measurements (relative residual):')
    physics_floor(raw, args.gridsize)
    if args.bundle is not None:
        print(f'3. trained network {args.bundle}:')
        trained_network(raw, args.bundle)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
