"""The two backends as the conformance suite sees them (tests/conformance).

Each backend's physics is reached through a :class:`PhysicsAdapter` that takes and returns
numpy arrays, so a test reads the same for TensorFlow and PyTorch and both are held to the
float64 numpy reference (:mod:`ptycho.physics`). Workflow checks go through the backend
contract (:func:`ptycho.workflows.backend_selector.get_backend`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

BACKENDS = ('tensorflow', 'pytorch')
_MODULES = {'tensorflow': 'tensorflow', 'pytorch': 'torch'}


def backend_params() -> list[Any]:
    """``pytest.param`` per backend, skipped with the reason where its framework is missing."""
    return [pytest.param(name, id=name, marks=pytest.mark.skipif(
        importlib.util.find_spec(_MODULES[name]) is None,
        reason=f'{_MODULES[name]} is not installed')) for name in BACKENDS]


@dataclass(frozen=True)
class PhysicsAdapter:
    """One backend's physics functions, numpy in and numpy out (complex64/float32 inside)."""

    name: str
    translate: Callable[[np.ndarray, np.ndarray], np.ndarray]
    extract_patches: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    far_field_amplitude: Callable[[np.ndarray], np.ndarray]
    forward_group: Callable[..., np.ndarray]
    enforce_overlap: Callable[..., np.ndarray]
    group_object: Callable[..., np.ndarray]
    backprojection: Callable[..., np.ndarray]
    stitch: Callable[..., tuple[np.ndarray, np.ndarray]]
    complex_dtype: Callable[[np.ndarray], Any]


def _tensorflow() -> PhysicsAdapter:
    import tensorflow as tf

    from ptycho.tf import physics as tph

    def numpy(fn: Callable[..., Any]) -> Callable[..., np.ndarray]:
        return lambda *args, **kw: np.asarray(fn(*args, **kw))

    def stitch(patches, positions, M, **kw):
        image, coverage = tph.stitch(patches, positions, M, **kw)
        return np.asarray(image), np.asarray(coverage)

    def backprojection(X, probe, offsets=None, iterations=1):
        # A float64 tensor asks for float64 arithmetic; plain arrays are taken as float32.
        return np.asarray(tph.backprojection(tf.constant(X), probe, offsets, iterations))

    return PhysicsAdapter(
        'tensorflow', numpy(tph.translate), numpy(tph.extract_patches),
        numpy(tph.far_field_amplitude), numpy(tph.forward_group), numpy(tph.enforce_overlap),
        numpy(tph.group_object), backprojection, stitch,
        complex_dtype=lambda found: found.dtype)


def _pytorch() -> PhysicsAdapter:
    import torch

    from ptycho_torch import physics as tp

    def t(array: Any, real: bool = False) -> Any:
        if array is None or isinstance(array, torch.Tensor):
            return array
        array = np.asarray(array)
        if np.iscomplexobj(array):
            return torch.tensor(array.astype(np.complex128 if array.dtype == np.complex128
                                             else np.complex64))
        return torch.tensor(array if array.dtype == np.float64 and not real
                            else array.astype(np.float32))

    def out(value: Any) -> np.ndarray:
        return value.detach().numpy()

    def forward_group(patches, probe, offsets=None, support=None):
        return out(tp.forward_group(t(patches), t(probe), t(offsets), t(support, real=True)))

    def enforce_overlap(patches, offsets, support=None):
        return out(tp.enforce_overlap(t(patches), t(offsets), t(support, real=True)))

    def group_object(patches, offsets, support=None):
        return out(tp.group_object(t(patches), t(offsets), t(support, real=True)))

    def backprojection(X, probe, offsets=None, iterations=1):
        X = np.asarray(X)
        probe = np.asarray(probe)
        probe = probe.astype(np.complex128 if X.dtype == np.float64 else np.complex64)
        return out(tp.backprojection(t(X), torch.tensor(probe), t(offsets), iterations))

    def stitch(patches, positions, M, **kw):
        image, coverage = tp.stitch(t(patches), torch.tensor(np.asarray(positions)), M, **kw)
        return out(image), out(coverage)

    return PhysicsAdapter(
        'pytorch', lambda im, s: out(tp.translate(t(im), torch.tensor(np.asarray(s)))),
        lambda obj, pos, N: out(tp.extract_patches(t(obj), np.asarray(pos), N)),
        lambda psi: out(tp.far_field_amplitude(t(psi))), forward_group, enforce_overlap,
        group_object, backprojection, stitch, complex_dtype=lambda found: found.dtype)


def physics_adapter(name: str) -> PhysicsAdapter:
    """The adapter of backend ``name`` (imports its framework now)."""
    return {'tensorflow': _tensorflow, 'pytorch': _pytorch}[name]()


# -- shared checks (also used by the backend-only physics tests) ----------------------
def rel_err(found: np.ndarray, expected: np.ndarray) -> float:
    found = np.asarray(found)
    expected = np.asarray(expected)
    assert found.shape == expected.shape
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


def random_complex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def gaussian_probe(rng: np.random.Generator, N: int, sigma: float = 10.0) -> np.ndarray:
    """Random complex probe under a Gaussian envelope: weak at the edges, so alpha matters."""
    yy, xx = np.mgrid[:N, :N] - N / 2
    envelope = np.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    return (1.0 + 0.3 * random_complex(rng, N, N)) * envelope


@dataclass(frozen=True)
class BackprojectionCase:
    """Noise-free amplitudes of random phase objects under a Gaussian probe, and the float64
    reference back-projection of them (what every back-projection is held to)."""

    probe: np.ndarray
    X: np.ndarray
    offsets: np.ndarray | None
    expected: np.ndarray


def backprojection_case(rng: np.random.Generator, gridsize: int, iterations: int,
                        N: int = 64, B: int = 3) -> BackprojectionCase:
    from ptycho import physics

    C = gridsize ** 2
    probe = gaussian_probe(rng, N)
    objects = np.exp(1j * rng.uniform(-1, 1, size=(B, C, N, N)))
    X = np.abs(np.fft.fftshift(np.fft.fft2(probe * objects, norm='ortho'), axes=(-2, -1)))
    offsets = rng.uniform(-7, 7, size=(B, C, 2)) if C > 1 else None
    expected = np.stack([physics.backprojection(X[b], probe, None if offsets is None
                                                else offsets[b], iterations) for b in range(B)])
    return BackprojectionCase(probe, X, offsets, expected)
