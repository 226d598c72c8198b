"""Physics refinement after the network, in torch (see :mod:`ptycho.refinement`).

The stitched object and (optionally) the probe and position corrections are optimised by
Adam on the Poisson likelihood of the scan's own counts (with the object's total variation
prior, see :mod:`ptycho.refinement`) through :mod:`ptycho_torch.physics` (bilinear patch
extraction, orthonormal far field). One step takes a mini-batch of patterns: patches are
gathered in one indexing operation (its backward is a scatter-add into the canvas), so
nothing loops per pattern.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ptycho import refinement
from ptycho.config.config import InferenceConfig
from ptycho.workflows.contract import Reconstruction
from ptycho_torch import physics, threads
from ptycho_torch.inference import resolve_device

_EPS = 1e-12
"""Added to the far-field intensity under the square root (a finite gradient at zero)."""


def _intensity(obj: Tensor, probe: Tensor, positions: Tensor, N: int) -> Tensor:
    spectrum = torch.fft.fft2(probe * physics.extract_patches(obj, positions, N), norm='ortho')
    return spectrum.real.square() + spectrum.imag.square()


def _amplitude(obj: Tensor, probe: Tensor, positions: Tensor, N: int) -> Tensor:
    return torch.sqrt(_intensity(obj, probe, positions, N) + _EPS)


def total_variation(re: Tensor, im: Tensor) -> Tensor:
    """Isotropic total variation of the complex image ``re + i im`` (forward differences,
    smoothed by :data:`ptycho.refinement.TV_EPS`)."""
    dr = re[1:, :-1] - re[:-1, :-1]
    dc = re[:-1, 1:] - re[:-1, :-1]
    di = im[1:, :-1] - im[:-1, :-1]
    dj = im[:-1, 1:] - im[:-1, :-1]
    return torch.sqrt(dr.square() + dc.square() + di.square() + dj.square()
                      + refinement.TV_EPS ** 2).sum()


def _shifted(D: Tensor) -> Tensor:
    """Measured amplitudes in unshifted FFT order (saves an fftshift per step)."""
    return torch.fft.ifftshift(D, dim=(-2, -1))


def refine(scan: Any, recon: Reconstruction, config: InferenceConfig) -> Reconstruction:
    """``recon`` refined on ``scan``'s data for ``config.refine_epochs`` epochs."""
    tic = time.perf_counter()
    problem = refinement.prepare(scan, recon, config)
    device = resolve_device(config.device)
    # Small operations: one thread, no wake-ups (bench/refine_threads.py measures why).
    with threads.one_intra_op_thread(device):
        obj, refined_probe, losses, refined_positions = optimise(problem, device)
    return refinement.finish(problem, recon, obj, refined_probe, losses,
                             time.perf_counter() - tic, refined_positions)


def optimise(problem: refinement.RefineProblem, device: torch.device
             ) -> tuple[np.ndarray, np.ndarray, list[float], np.ndarray]:
    """Object, probe, residual per epoch and patch centres (canvas pixels) after the run."""
    N = problem.N
    D = _shifted(torch.from_numpy(problem.diffraction)).to(device)
    mask = _shifted(torch.from_numpy(problem.mask)).to(device)
    positions = torch.from_numpy(problem.positions).to(device)
    canvas = torch.from_numpy(problem.canvas).to(device)
    obj_re = canvas.real.clone().requires_grad_(True)
    obj_im = canvas.imag.clone().requires_grad_(True)
    probe = torch.from_numpy(problem.probe).to(device)

    with torch.no_grad():  # least-squares amplitude scale of the probe, and the start residual
        fit = torch.zeros(3, dtype=torch.float64, device=device)
        for index in torch.arange(len(D), device=device).split(256):
            A = _amplitude(canvas, probe, positions[index], N)
            fit += torch.stack([(mask * A * D[index]).sum(), (mask * A * A).sum(),
                                (mask * D[index] * D[index]).sum()]).double()
        scale = float(fit[0] / fit[1])
        start = float(torch.sqrt(torch.clamp(1 - fit[0] ** 2 / (fit[1] * fit[2]), min=0)))
    peak = float(probe.abs().max()) * scale
    unit = probe * (scale / peak)  # the probe in units of its peak: Adam's step is relative
    power = float(unit.abs().square().sum())
    pr = unit.real.clone().requires_grad_(problem.refine_probe)
    pi = unit.imag.clone().requires_grad_(problem.refine_probe)
    groups = [{'params': [obj_re, obj_im], 'lr': problem.object_lr}]
    if problem.refine_probe:
        groups.append({'params': [pr, pi], 'lr': problem.probe_lr})
    delta = torch.zeros_like(positions).requires_grad_(problem.refine_positions)
    if problem.refine_positions:
        groups.append({'params': [delta], 'lr': problem.position_lr})
    optimizer = torch.optim.Adam(groups)
    base = [group['lr'] for group in groups]
    losses = [start]
    step = 0
    for epoch in problem.batches:
        total = 0.0
        for batch in epoch:
            factor = problem.learning_rate_factor(step)
            for group, lr in zip(optimizer.param_groups, base):
                group['lr'] = lr * factor
            index = torch.from_numpy(batch).to(device)
            intensity = _intensity(torch.complex(obj_re, obj_im), torch.complex(pr, pi) * peak,
                                   positions[index] + delta[index], N)
            measured = D[index]
            counts = measured.square()
            total_counts = (mask * counts).sum()
            loss = (mask * (intensity - counts * torch.log(intensity + problem.poisson_eps))
                    ).sum() / total_counts
            if problem.tv_weight:
                loss = loss + (problem.prior_weight(len(batch)) * total_variation(obj_re, obj_im)
                               / total_counts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                residual = (mask * (torch.sqrt(intensity.detach() + _EPS) - measured).square()
                            ).sum() / total_counts
            with torch.no_grad():
                if problem.refine_probe:
                    norm = torch.sqrt(power / (pr.square() + pi.square()).sum())
                    pr.mul_(norm)
                    pi.mul_(norm)
                if problem.refine_positions:
                    delta.sub_(delta.mean(dim=0))
            total += float(residual) * len(batch)
            step += 1
        losses.append(float(np.sqrt(total / len(D))))
    with torch.no_grad():
        obj = torch.complex(obj_re, obj_im).cpu().numpy()
        refined_probe = (torch.complex(pr, pi) * peak).cpu().numpy()
        refined_positions = (positions + delta).cpu().numpy()
    return obj, refined_probe, losses, refined_positions
