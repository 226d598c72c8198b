"""Run pty-chi 2.2.0 on one scan given as an NPZ, for ``bench/compare_ptychi.py``.

pty-chi is a comparator, not a dependency: this script runs inside ``.venv-ptychi``
(``bench/ptychi_env.sh``) as a subprocess and imports nothing from PtychoPINN, so the two
torch installations never meet. The main process uses only the numpy helpers here
(:func:`write_input`, :func:`read_output`), which import neither torch nor pty-chi.

Input NPZ (this project's conventions):

- ``diffraction`` (n, N, N) float: amplitudes (``diffraction_kind='amplitude'``, sqrt of
  counts) or intensities (``'intensity'``), DC at the array centre;
- ``positions_xy`` (n, 2) float: patch centres ``(x, y)`` in object pixels (the patch of
  ``(x, y)`` covers rows ``y - N/2 ... y + N/2 - 1``);
- ``probe`` (N, N) or (modes, N, N) complex: the probe guess;
- ``object_shape`` (2,) int; optional ``object_guess`` (H, W) complex (default ones) and
  ``bad_pixels`` (N, N) bool (detector pixels not measured; given to pty-chi as its
  ``valid_pixel_mask``, which it fft-shifts with the data).

Output NPZ: ``object`` (H, W) complex on the same pixel grid as the input's positions,
``probe`` (modes, N, N), ``positions_xy`` used (same convention as the input),
``positions_ptychi_yx`` (what pty-chi was given), ``seconds`` (task build + run),
``run_seconds`` (the epochs alone), ``loss`` (per-epoch data loss, pty-chi's displayed
metric), ``probe_scale`` (the factor applied to the probe guess) and ``options`` (JSON).

pty-chi's conventions, and how this maps onto them (pty-chi 2.2.0 source):

- positions: ``ptychi/data_structures/object.py`` ``update_pos_origin_coords``: with the
  default ``SUPPORT`` rule the buffer pixel of a position is ``pos + round(shape/2) - 0.5``;
  ``ptychi/image_proc.py`` ``extract_patches_fourier_shift``: a patch centred at buffer
  pixel ``c`` starts at ``c - (N - 1)/2``. Ours starts at ``y - N/2``, hence
  ``pos_ptychi = y - round(H/2)`` (and likewise x); ``ptychi/api/task.py``
  ``build_probe_positions`` stacks ``[y, x]``.
- data: ``ptychi/api/options/data.py``: intensities, not amplitudes; ``fft_shift=True``
  (default) because ours have DC at the centre (for even N fftshift is its own inverse).
- FFT: ``ptychi/propagate.py`` ``FourierPropagator(norm=None)``: unnormalised, so the
  predicted intensity sums to ``N**2 * sum |P O|**2`` where ours is orthonormal; the probe
  guess is rescaled to the data's mean total intensity (object ~1), see :func:`probe_scale`.
- shapes: ``task.py`` ``check_task_data``: object ``(n_slices, H, W)``, probe
  ``(n_opr_modes, n_modes, N, N)``.

    .venv-ptychi/bin/python bench/ptychi_runner.py IN.npz OUT.npz --algorithm lsqml --probe refine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger('bench.ptychi_runner')

ALGORITHMS = ('lsqml', 'rpie', 'pie', 'epie')
PROBE_MODES = ('fixed', 'refine', 'refine+positions')
DIFFRACTION_KINDS = ('amplitude', 'intensity')

# --------------------------------------------------------------------------- NPZ contract


def write_input(path: str | os.PathLike[str], diffraction: np.ndarray, positions_xy: np.ndarray,
                probe: np.ndarray, object_shape: tuple[int, int], *,
                diffraction_kind: str = 'amplitude',
                object_guess: np.ndarray | None = None,
                bad_pixels: np.ndarray | None = None) -> Path:
    """Write the runner's input NPZ after checking shapes (fails here, not in the venv)."""
    diffraction = np.asarray(diffraction)
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    probe = np.asarray(probe)
    if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2]:
        raise ValueError(f'ptychi_runner: diffraction must be (n, N, N), found {diffraction.shape}')
    n, N = diffraction.shape[0], diffraction.shape[1]
    if positions_xy.shape != (n, 2):
        raise ValueError(f'ptychi_runner: positions_xy must be ({n}, 2), found '
                         f'{positions_xy.shape}')
    if probe.shape[-2:] != (N, N) or probe.ndim not in (2, 3):
        raise ValueError(f'ptychi_runner: probe must be ({N}, {N}) or (modes, {N}, {N}), '
                         f'found {probe.shape}')
    if diffraction_kind not in DIFFRACTION_KINDS:
        raise ValueError(f'ptychi_runner: diffraction_kind must be one of {DIFFRACTION_KINDS}, '
                         f'found {diffraction_kind!r}')
    shape = tuple(int(s) for s in object_shape)
    if len(shape) != 2 or min(shape) < N:
        raise ValueError(f'ptychi_runner: object_shape must be (H, W) >= N={N}, found {shape}')
    arrays: dict[str, Any] = dict(diffraction=diffraction.astype(np.float32),
                                  positions_xy=positions_xy, probe=probe.astype(np.complex64),
                                  object_shape=np.asarray(shape, dtype=np.int64),
                                  diffraction_kind=np.asarray(diffraction_kind))
    if object_guess is not None:
        guess = np.asarray(object_guess)
        if guess.shape != shape:
            raise ValueError(f'ptychi_runner: object_guess must be {shape}, found {guess.shape}')
        arrays['object_guess'] = guess.astype(np.complex64)
    if bad_pixels is not None:
        bad = np.asarray(bad_pixels)
        if bad.shape != (N, N):
            raise ValueError(f'ptychi_runner: bad_pixels must be ({N}, {N}), found {bad.shape}')
        arrays['bad_pixels'] = bad.astype(bool)
    path = Path(path)
    np.savez(path, **arrays)
    return path


OUTPUT_KEYS = ('object', 'probe', 'positions_xy', 'positions_ptychi_yx', 'seconds',
               'run_seconds', 'loss', 'probe_scale', 'options')


def read_output(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The runner's output NPZ as a dict (scalars as floats, ``options`` parsed)."""
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [k for k in OUTPUT_KEYS if k not in data.files]
        if missing:
            raise ValueError(f'ptychi_runner: {path} lacks {missing}')
        out: dict[str, Any] = {k: data[k] for k in data.files}
    for key in ('seconds', 'run_seconds', 'probe_scale'):
        out[key] = float(out[key])
    out['options'] = json.loads(str(out['options']))
    return out


def to_ptychi_positions(positions_xy: np.ndarray, object_shape: tuple[int, int]) -> np.ndarray:
    """Our patch centres ``(x, y)`` -> pty-chi's ``(y, x)`` relative to the buffer centre."""
    xy = np.asarray(positions_xy, dtype=np.float64)
    centre = np.round(np.asarray(object_shape, dtype=np.float64) / 2.0)  # round half to even,
    return np.stack([xy[:, 1] - centre[0], xy[:, 0] - centre[1]], axis=1)  # as torch.round


def from_ptychi_positions(positions_yx: np.ndarray, object_shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_ptychi_positions`."""
    yx = np.asarray(positions_yx, dtype=np.float64)
    centre = np.round(np.asarray(object_shape, dtype=np.float64) / 2.0)
    return np.stack([yx[:, 1] + centre[1], yx[:, 0] + centre[0]], axis=1)


def intensities(diffraction: np.ndarray, kind: str) -> np.ndarray:
    """pty-chi wants measured intensities (``data.py``: 'should NOT be ... square-rooted')."""
    data = np.asarray(diffraction, dtype=np.float32)
    return data * data if kind == 'amplitude' else data


def probe_scale(intensity: np.ndarray, probe: np.ndarray) -> float:
    """Factor that gives the probe the data's power under pty-chi's unnormalised FFT.

    ``sum_k |fft2(P O)|**2 = N**2 sum |P O|**2``; with the object ~1 the mean total
    intensity of a pattern fixes ``sum |P|**2``. A probe known only up to scale (ours is
    normalised differently from the data) thus reaches pty-chi with the right power.
    """
    N = probe.shape[-1]
    power = float(np.sum(np.abs(probe) ** 2))
    mean_total = float(np.mean(np.sum(intensity, axis=(-2, -1), dtype=np.float64)))
    if power <= 0 or mean_total <= 0:
        raise ValueError('ptychi_runner: probe and data must have non-zero power')
    return float(np.sqrt(mean_total / (N * N * power)))


# --------------------------------------------------------------------------- torchvision stand-in

TORCHVISION_INIT = '''"""Stand-in for torchvision, written by bench/ptychi_runner.py: pty-chi 2.2.0 imports
torchvision only for ``transforms.GaussianBlur`` (ptychi/utils.py), and no torchvision wheel
matches this venv's torch. Not the real package."""
__version__ = "0.0.0+ptychi-stub"
from . import transforms  # noqa: F401
'''

TORCHVISION_TRANSFORMS = '''"""``GaussianBlur`` with torchvision's semantics (v1 transforms), the one name pty-chi uses."""
import random
from typing import Sequence, Union

import torch

__all__ = ["GaussianBlur"]


def _pair(value, name):
    if isinstance(value, (int, float)):
        return (value, value)
    value = tuple(value)
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a sequence of two numbers")
    return value


def _kernel1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    half = (size - 1) * 0.5
    x = torch.linspace(-half, half, steps=size, dtype=dtype, device=device)
    pdf = torch.exp(-0.5 * (x / sigma) ** 2)
    return pdf / pdf.sum()


class GaussianBlur(torch.nn.Module):
    """Blur a tensor (..., C, H, W) with a Gaussian kernel, reflect-padded.

    As torchvision: ``kernel_size`` is (kx, ky), odd and positive; ``sigma`` a number or a
    (min, max) range from which one sigma is drawn per call and used for both axes.
    """

    def __init__(self, kernel_size: Union[int, Sequence[int]],
                 sigma: Union[float, Sequence[float]] = (0.1, 2.0)) -> None:
        super().__init__()
        self.kernel_size = tuple(int(k) for k in _pair(kernel_size, "kernel_size"))
        for k in self.kernel_size:
            if k <= 0 or k % 2 == 0:
                raise ValueError("Kernel size value should be an odd and positive number.")
        low, high = (float(s) for s in _pair(sigma, "sigma"))
        if not 0 < low <= high:
            raise ValueError("sigma values should be positive and of the form (min, max).")
        self.sigma = (low, high)

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float) -> float:
        return sigma_min if sigma_min == sigma_max else random.uniform(sigma_min, sigma_max)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(img, torch.Tensor):
            raise TypeError("this GaussianBlur stand-in accepts tensors only")
        sigma = self.get_params(*self.sigma)
        kx, ky = self.kernel_size
        shape = img.shape
        dtype = img.dtype if img.is_floating_point() else torch.float32
        x = img.reshape(-1, 1, shape[-2], shape[-1]).to(dtype)
        x = torch.nn.functional.pad(x, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
        wx = _kernel1d(kx, sigma, dtype, x.device).reshape(1, 1, 1, kx)
        wy = _kernel1d(ky, sigma, dtype, x.device).reshape(1, 1, ky, 1)
        x = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, wx), wy)
        return x.reshape(shape).to(img.dtype)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(kernel_size={self.kernel_size}, sigma={self.sigma})"
'''


def write_torchvision_stub(site_dir: str | os.PathLike[str]) -> Path:
    """Write the stand-in ``torchvision`` package into ``site_dir`` (the venv's site-packages)."""
    package = Path(site_dir) / 'torchvision'
    (package / 'transforms').mkdir(parents=True, exist_ok=True)
    (package / '__init__.py').write_text(TORCHVISION_INIT)
    (package / 'transforms' / '__init__.py').write_text(TORCHVISION_TRANSFORMS)
    return package


def install_torchvision_stub() -> bool:
    """Make ``torchvision.transforms.GaussianBlur`` importable; True if the stand-in was used.

    The real package wins where it imports; a broken one (a wheel built for another torch)
    is purged from ``sys.modules`` and replaced in memory.
    """
    try:
        import torchvision.transforms  # noqa: F401
        return False
    except Exception:  # a mismatched wheel raises RuntimeError/OSError, not only ImportError
        for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
            del sys.modules[name]
    package = types.ModuleType('torchvision')
    package.__doc__ = TORCHVISION_INIT
    package.__path__ = []  # a package, so the submodule import below resolves
    transforms = types.ModuleType('torchvision.transforms')
    exec(compile(TORCHVISION_TRANSFORMS, 'torchvision/transforms/__init__.py', 'exec'),
         transforms.__dict__)
    package.transforms = transforms  # type: ignore[attr-defined]
    sys.modules['torchvision'] = package
    sys.modules['torchvision.transforms'] = transforms
    logger.info('torchvision does not import: using the GaussianBlur stand-in')
    return True


# --------------------------------------------------------------------------- pty-chi


def build_options(api: Any, algorithm: str, probe_mode: str, epochs: int, batch_size: int,
                  seed: int | None) -> Any:
    """pty-chi task options: its defaults except device (CPU), epochs, batch and probe;
    ``refine+positions`` also corrects the positions (pty-chi's default position correction,
    their mean held, as this project's refinement holds it)."""
    classes = {'lsqml': api.LSQMLOptions, 'rpie': api.RPIEOptions, 'pie': api.PIEOptions,
               'epie': api.EPIEOptions}
    options = classes[algorithm]()
    options.data_options.fft_shift = True  # our patterns have DC at the centre
    options.object_options.determine_position_origin_coords_by = \
        api.ObjectPosOriginCoordsMethods.SUPPORT
    options.object_options.optimizable = True
    options.probe_options.optimizable = probe_mode in ('refine', 'refine+positions')
    options.probe_position_options.optimizable = probe_mode == 'refine+positions'
    options.probe_position_options.constrain_position_mean = probe_mode == 'refine+positions'
    options.reconstructor_options.num_epochs = int(epochs)
    options.reconstructor_options.batch_size = int(batch_size)
    options.reconstructor_options.default_device = api.Devices.CPU
    options.reconstructor_options.random_seed = seed
    return options


def run(input_path: Path, output_path: Path, *, algorithm: str = 'lsqml',
        probe_mode: str = 'refine', epochs: int = 100, batch_size: int = 100,
        seed: int | None = 0, threads: int | None = None) -> dict[str, Any]:
    """Reconstruct the input NPZ with pty-chi and write the output NPZ (atomically)."""
    install_torchvision_stub()
    import torch
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask
    from importlib.metadata import version

    if threads:
        torch.set_num_threads(int(threads))
    with np.load(input_path, allow_pickle=False) as data:
        diffraction = data['diffraction']
        positions_xy = data['positions_xy'].astype(np.float64)
        probe = data['probe'].astype(np.complex64)
        object_shape = tuple(int(s) for s in data['object_shape'])
        kind = str(data['diffraction_kind']) if 'diffraction_kind' in data.files else 'amplitude'
        guess = data['object_guess'] if 'object_guess' in data.files else None
        bad = data['bad_pixels'] if 'bad_pixels' in data.files else None
    intensity = intensities(diffraction, kind)
    scale = probe_scale(intensity, probe)
    probe4 = (probe * scale).reshape((1, -1) + probe.shape[-2:])  # (opr, modes, N, N)
    obj3 = (np.ones(object_shape, np.complex64) if guess is None
            else guess.astype(np.complex64))[None]
    pos_yx = to_ptychi_positions(positions_xy, object_shape)
    options = build_options(api, algorithm, probe_mode, epochs, batch_size, seed)

    tic = time.perf_counter()
    task = PtychographyTask(options, diffraction_data=intensity, object_data=obj3,
                            probe_data=probe4, probe_position_x_px=pos_yx[:, 1].copy(),
                            probe_position_y_px=pos_yx[:, 0].copy(),
                            valid_pixel_mask=None if bad is None else ~bad)
    built = time.perf_counter()
    task.run()
    done = time.perf_counter()

    obj = task.get_data_to_cpu('object', as_numpy=True)[0]
    probe_out = task.get_data_to_cpu('probe', as_numpy=True)[0]  # first OPR mode: (modes, N, N)
    used_yx = np.stack([task.get_probe_positions_y(as_numpy=True),
                        task.get_probe_positions_x(as_numpy=True)], axis=1).astype(np.float64)
    table = task.reconstructor.loss_tracker.table
    loss = np.asarray(table['loss'], dtype=np.float64) if len(table) else np.zeros(0)
    record = dict(algorithm=algorithm, probe=probe_mode, epochs=int(epochs),
                  batch_size=int(batch_size), seed=seed, threads=torch.get_num_threads(),
                  ptychi_version=version('ptychi'), torch_version=torch.__version__,
                  diffraction_kind=kind, n_positions=int(len(positions_xy)),
                  bad_pixels=0 if bad is None else int(bad.sum()),
                  object_shape=list(object_shape),
                  position_origin='SUPPORT: pos = (y, x) - round(shape / 2)',
                  build_seconds=built - tic)
    result = dict(object=obj.astype(np.complex64), probe=probe_out.astype(np.complex64),
                  positions_xy=from_ptychi_positions(used_yx, object_shape),
                  positions_ptychi_yx=used_yx, seconds=np.float64(done - tic),
                  run_seconds=np.float64(done - built), loss=loss,
                  probe_scale=np.float64(scale), options=np.asarray(json.dumps(record)))
    output_path = Path(output_path)
    tmp = output_path.with_name(output_path.name + '.tmp.npz')
    np.savez(tmp, **result)
    os.replace(tmp, output_path)
    logger.info('%s (probe %s): %d epochs in %.1f s (+%.1f s build), final loss %s',
                algorithm, probe_mode, epochs, done - built, built - tic,
                f'{loss[-1]:.4g}' if loss.size else 'n/a')
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('input', type=Path, nargs='?')
    parser.add_argument('output', type=Path, nargs='?')
    parser.add_argument('--algorithm', default='lsqml', choices=ALGORITHMS)
    parser.add_argument('--probe', default='refine', choices=PROBE_MODES,
                        help='fixed: the guess is the known probe; refine: pty-chi updates it')
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--batch-size', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default torch)')
    parser.add_argument('--quiet', action='store_true', help="hide pty-chi's per-epoch lines")
    parser.add_argument('--write-torchvision-stub', type=Path, default=None, metavar='SITE_DIR',
                        help='write the GaussianBlur stand-in package into SITE_DIR and exit')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    if args.write_torchvision_stub is not None:
        print(write_torchvision_stub(args.write_torchvision_stub))
        return 0
    if args.input is None or args.output is None:
        parser.error('input and output NPZ paths are required')
    if args.quiet:
        logging.getLogger('ptychi').setLevel(logging.WARNING)  # LossTracker logs each epoch
    run(args.input, args.output, algorithm=args.algorithm, probe_mode=args.probe,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, threads=args.threads)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
