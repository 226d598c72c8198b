"""Throughput on whatever device is there (a GPU when one is visible), both backends.

    bench/gpu.sh                                   # both backends, full sizes, JSON per backend
    .venv/bin/python bench/gpu.py --backend pytorch [--compile] [--bf16]
    .venv/bin/python bench/gpu.py --smoke          # tiny sizes: what `make test` runs on a CPU

Figures are diffraction patterns per second (groups x gridsize**2), gridsize 2,
``n_filters_scale`` 1, an untrained network (speed does not depend on the weights):

* ``network``: the convolutional network alone, its back-projection input precomputed;
* ``with_backprojection``: ``diffraction_to_obj`` as inference runs it (back-projection
  computed from the patterns);
* ``end_to_end``: the backend contract's ``predict`` + ``stitch`` of a simulated scan
  (grouping, normalisation, network, phase alignment, stitching), host to host, in scan
  patterns per second (each pattern counted once, though gridsize 2 reconstructs it in
  about four groups);
* ``train``: optimisation steps as training runs them (back-projection cached);
* at N = 64 ``end_to_end`` is the whole 2,000-position standard scan (``ptycho.simulation.
  STANDARD``, test split); at N = 128 a 500-position scan.

Batch sizes grow until a size brings no gain or memory runs out (on a GPU up to 4,096
groups). ``--compile`` adds ``torch.compile`` / XLA, ``--bf16`` the bfloat16 network
(torch autocast). The device, the load average and the versions go into the JSON
(``bench/results/gpu_<backend>_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from speed import _median_seconds  # noqa: E402

GRIDSIZE = 2
C = GRIDSIZE * GRIDSIZE


def _rate(groups: int, fn: Callable[[], Any], repeats: int) -> float:
    return round(groups * C / _median_seconds(fn, repeats, min_seconds=0.2), 1)


def _sizes(smoke: bool, gpu: bool) -> list[int]:
    if smoke:  # one size: each new batch shape costs TensorFlow a trace and an XLA compile
        return [4]
    return [64, 256, 1024, 4096] if gpu else [16, 64, 256]


def _scan(N: int, positions: int, seed: int = 0) -> Any:
    from ptycho.simulation import default_object_size, simulate_dataset

    return simulate_dataset(N=N, n_positions=positions,
                            object_size=default_object_size(N, positions), seed=seed)


def _grow(sizes: list[int], measure: Callable[[int], float]) -> dict[int, float]:
    """Rate per batch size; stops at out-of-memory or when doubling the size gains < 5 %."""
    out: dict[int, float] = {}
    for size in sizes:
        try:
            out[size] = measure(size)
        except (RuntimeError, MemoryError) as exc:  # CUDA OOM is a RuntimeError
            if 'out of memory' not in str(exc).lower() and not isinstance(exc, MemoryError):
                raise
            break
        if len(out) >= 2 and out[size] < 1.05 * max(list(out.values())[:-1]):
            break
    return out


def end_to_end(backend: Any, loaded: Any, scan: Any, device: str,
               rates: dict[int, float]) -> dict[str, Any]:
    """Whole-scan reconstruction through the contract at the fastest batch size measured
    (after one warm-up run): scan patterns per second, each counted once."""
    from ptycho.workflows.contract import inference_config_for, reconstruct

    run = inference_config_for(loaded, batch_size=max(rates, key=rates.__getitem__),
                               device=device)
    reconstruct(backend, loaded, scan, run)
    tic = time.perf_counter()
    result = reconstruct(backend, loaded, scan, run)
    seconds = time.perf_counter() - tic
    return {'patterns': len(scan), 'seconds': round(seconds, 3),
            'patterns_per_s': round(len(scan) / seconds, 1),
            'timings': {k: round(v, 3) for k, v in result.timings.items()}}


# ------------------------------------------------------------------------------ pytorch
def bench_pytorch(N: int, sizes: list[int], scan: Any, args: argparse.Namespace
                  ) -> dict[str, Any]:
    import torch

    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.workflows.contract import LoadedModel
    from ptycho_torch import config_bridge
    from ptycho_torch.backend import TorchBackend
    from ptycho_torch.inference import resolve_device
    from ptycho_torch.model import PtychoPINN_Lightning

    device = resolve_device('auto')
    torch.manual_seed(0)
    out: dict[str, Any] = {'device': str(device), 'torch': torch.__version__}
    if device.type == 'cuda':
        out['device_name'] = torch.cuda.get_device_name(device)
    variants = [('float32', 'float32')] + ([('bfloat16', 'bfloat16')] if args.bf16 else [])
    for label, precision in variants:
        config = TrainingConfig(model=ModelConfig(N=N, gridsize=GRIDSIZE, n_filters_scale=1,
                                                  network_precision=precision),
                                backend='pytorch', nphotons=1e9)
        _, model_cfg, training_cfg = config_bridge.to_torch(config)
        module = PtychoPINN_Lightning(model_cfg, training_cfg).to(device).eval()
        module.model.net.set_channels_last(True)
        infer = module.diffraction_to_obj()
        runner: Callable[..., Any] = torch.compile(infer) if args.compile else infer

        def sync() -> None:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)

        def inputs(batch: int) -> tuple[Any, Any]:
            X = torch.rand(batch, C, N, N, device=device) * module.intensity_scale
            return X, torch.randn(batch, C, 2, device=device) * 3

        def with_bp(batch: int) -> float:
            X, offsets = inputs(batch)

            def step() -> None:
                with torch.inference_mode():
                    runner(X, offsets)
                sync()
            return _rate(batch, step, 3)

        def network(batch: int) -> float:
            X, offsets = inputs(batch)
            with torch.inference_mode():
                features = module.model.backprojection(X / module.intensity_scale, offsets)
                net_in = module.model.network_input(X / module.intensity_scale, offsets, features)

            def step() -> None:
                with torch.inference_mode():
                    module.model.net(net_in)
                sync()
            return _rate(batch, step, 3)

        row: dict[str, Any] = {'network': _grow(sizes, network),
                               'with_backprojection': _grow(sizes, with_bp)}
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        train_batch = sizes[0] if args.smoke else 64
        X, offsets = inputs(train_batch)
        with torch.no_grad():
            batch = {'X': X / module.intensity_scale, 'offsets': offsets}
            batch['features'] = module.model.backprojection(batch['X'], offsets)
        module.train()

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            module.compute_loss(batch).backward()
            optimizer.step()
            sync()
        row['train'] = _rate(train_batch, train_step, 3)
        module.eval()
        loaded = LoadedModel('pytorch', config, module.intensity_scale, None,
                             {'lightning_module': module, 'diffraction_to_obj': infer})
        row['end_to_end'] = end_to_end(TorchBackend(), loaded, scan, str(device),
                                       row['with_backprojection'])
        out[label] = row
    return out


# --------------------------------------------------------------------------- tensorflow
def bench_tensorflow(N: int, sizes: list[int], scan: Any, args: argparse.Namespace
                     ) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.tf.backend import TensorFlowBackend
    from ptycho.tf.model import create_model
    from ptycho.tf.training import compile_models
    from ptycho.workflows.contract import LoadedModel

    gpus = tf.config.list_physical_devices('GPU')
    device = 'cuda:0' if gpus else 'cpu'
    out: dict[str, Any] = {'device': device, 'tensorflow': tf.__version__}
    if gpus:
        out['device_name'] = tf.config.experimental.get_device_details(gpus[0]).get('device_name')
    rng = np.random.default_rng(0)
    config = TrainingConfig(model=ModelConfig(N=N, gridsize=GRIDSIZE, n_filters_scale=1),
                            nphotons=1e9)
    models = create_model(config, np.full((N, N), 0.5, np.complex64))
    net = models.diffraction_to_obj
    call = tf.function(lambda x, o: net([x, o], training=False), jit_compile=args.compile)

    def inputs(batch: int) -> tuple[Any, Any]:
        X = tf.constant(rng.random((batch, N, N, C), np.float32) * models.intensity_scale)
        return X, tf.constant(rng.normal(size=(batch, 1, 2, C)).astype(np.float32) * 3)

    def with_bp(batch: int) -> float:
        X, offsets = inputs(batch)
        return _rate(batch, lambda: np.asarray(call(X, offsets)), 3)

    row: dict[str, Any] = {'with_backprojection': _grow(sizes, with_bp)}
    if models.cached_input_model is not None:
        def network(batch: int) -> float:
            X, offsets = inputs(batch)
            features = models.backprojection_features(np.asarray(X) / models.intensity_scale,
                                                       np.asarray(offsets))
            cached = models.cached_input_model
            return _rate(batch, lambda: np.asarray(
                cached.predict_on_batch([X, offsets, features])[0]), 3)
        row['network'] = _grow(sizes, network)
        train_batch = sizes[0] if args.smoke else 64
        X = rng.random((train_batch, N, N, C)).astype(np.float32)
        offsets = (rng.normal(size=(train_batch, 1, 2, C)) * 3).astype(np.float32)
        trainee = models.cached_input_model
        compile_models(models, config, trainee)
        train_inputs = [X, offsets, models.backprojection_features(X, offsets)]
        row['train'] = _rate(train_batch, lambda: trainee.train_on_batch(train_inputs, X), 3)
    loaded = LoadedModel('tensorflow', config, float(models.intensity_scale), None, models)
    row['end_to_end'] = end_to_end(TensorFlowBackend(), loaded, scan, device,
                                   row['with_backprojection'])
    out['float32'] = row
    return out


BENCHES = {'pytorch': bench_pytorch, 'tensorflow': bench_tensorflow}


def device_of(backend: str) -> str:
    """Where a backend runs here: the first GPU when there is one, else the CPU."""
    if backend == 'pytorch':
        from ptycho_torch.inference import resolve_device

        return str(resolve_device('auto'))
    import tensorflow as tf

    return 'cuda:0' if tf.config.list_physical_devices('GPU') else 'cpu'


def end_to_end_scan(N: int, smoke: bool) -> Any:
    """N = 64: the standard 2,000-position scan; N = 128: a 500-position scan (smoke: 32)."""
    from ptycho.simulation import standard_dataset

    if smoke:
        return _scan(N, 32, seed=5)
    return standard_dataset('test') if N == 64 else _scan(N, 500, seed=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', default='both', choices=['both', *sorted(BENCHES)])
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 128],
                        help='patch sizes N to measure')
    parser.add_argument('--compile', action='store_true', help='torch.compile / XLA')
    parser.add_argument('--bf16', action='store_true', help='also the bfloat16 network (torch)')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny sizes: checks that everything runs (CPU, make test)')
    parser.add_argument('--output-dir', type=Path, default=ROOT / 'bench' / 'results')
    args = parser.parse_args(argv)
    backends = sorted(BENCHES) if args.backend == 'both' else [args.backend]
    for name in backends:
        device = device_of(name)
        results: dict[str, Any] = {'backend': name, 'device': device, 'smoke': args.smoke,
                                   'command': ' '.join(sys.argv),
                                   'load_average': os.getloadavg()[0],
                                   'cpu_count': os.cpu_count()}
        print(f'{name}: measuring on {device}', flush=True)
        for N in args.sizes:
            results[f'N={N}'] = BENCHES[name](N, _sizes(args.smoke, device != 'cpu'),
                                              end_to_end_scan(N, args.smoke), args)
            results.setdefault('device_name', results[f'N={N}'].get('device_name'))
        print(json.dumps(results, indent=2))
        target = args.output_dir / (f'gpu_{name}_{device.replace(":", "")}'
                                    f'{"_smoke" if args.smoke else ""}.json')
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix('.tmp')
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, target)
        print(f'written: {target}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
