"""Inference and training throughput (diffraction patterns/s) of a backend, with variants.

    nice .venv/bin/python bench/speed.py --backend pytorch [--compile]
    nice .venv/bin/python bench/speed.py --backend tensorflow [--compile]   # XLA variants

The default network is the quality benchmark's (N = 64, gridsize 2, ``n_filters_scale`` 1,
the default back-projection input). Inference is timed on the bare ``diffraction_to_obj``
model at batch sizes 1, 16 and 256 groups (median of several repeats after warm-up); it
includes computing the back-projection input. ``backprojection`` times that input alone
(256 groups). Training is timed on full optimisation steps (loss, backward, Adam) at the
training batch size, the way training runs them: with the back-projection precomputed.
Variants: memory format (contiguous vs channels_last), grad mode (no_grad vs
inference_mode) and optionally ``torch.compile`` / XLA. Every figure is patterns/s
(groups x gridsize**2 per second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see ptycho_torch)


def _median_seconds(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.5) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 50:
            break
    return statistics.median(times)


def bench_pytorch(gridsize: int, n_filters_scale: int, batch_sizes: list[int], train_batch: int,
                  use_compile: bool) -> dict[str, Any]:
    import torch

    from ptycho_torch.torch_config import ModelConfig, TrainingConfig
    from ptycho_torch.model import PtychoPINN_Lightning

    torch.manual_seed(0)
    C = gridsize * gridsize
    out: dict[str, Any] = {'threads': torch.get_num_threads(), 'torch': torch.__version__}
    module = PtychoPINN_Lightning(ModelConfig(N=64, grid_size=(gridsize, gridsize),
                                              n_filters_scale=n_filters_scale),
                                  TrainingConfig(nphotons=1e9))
    infer = module.diffraction_to_obj().eval()
    variants: list[tuple[str, bool, Any]] = [
        ('contiguous+no_grad', False, torch.no_grad),
        ('channels_last+no_grad', True, torch.no_grad),
        ('channels_last+inference_mode', True, torch.inference_mode),
    ]
    for name, channels_last, mode in variants:
        module.model.net.set_channels_last(channels_last)
        row = {}
        for batch in batch_sizes:
            X = torch.rand(batch, C, 64, 64) * module.intensity_scale
            offsets = torch.randn(batch, C, 2) * 3

            def step() -> None:
                with mode():
                    infer(X, offsets)
            row[batch] = round(batch * C / _median_seconds(step, 5), 1)
        out[f'infer[{name}]'] = row
    if use_compile:
        module.model.net.set_channels_last(True)
        compiled = torch.compile(infer)
        row = {}
        for batch in batch_sizes:
            X = torch.rand(batch, C, 64, 64) * module.intensity_scale
            offsets = torch.randn(batch, C, 2) * 3

            def step_c() -> None:
                with torch.no_grad():
                    compiled(X, offsets)
            row[batch] = round(batch * C / _median_seconds(step_c, 5), 1)
        out['infer[channels_last+compile]'] = row
    X = torch.rand(256, C, 64, 64)
    offsets = torch.randn(256, C, 2) * 3

    def features() -> None:
        with torch.no_grad():
            module.model.backprojection(X, offsets)
    if module.model.config.input_features == 'backprojection':
        out['backprojection'] = round(256 * C / _median_seconds(features, 3), 1)
    for channels_last in (False, True):
        module.model.net.set_channels_last(channels_last)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        batch = {'X': torch.rand(train_batch, C, 64, 64),
                 'offsets': torch.randn(train_batch, C, 2) * 3}
        if module.model.config.input_features == 'backprojection':  # as training runs it
            with torch.no_grad():
                batch['features'] = module.model.backprojection(batch['X'], batch['offsets'])

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            module.compute_loss(batch).backward()
            optimizer.step()
        seconds = _median_seconds(train_step, 5)
        label = 'channels_last' if channels_last else 'contiguous'
        out[f'train[{label}]'] = round(train_batch * C / seconds, 1)
    return out


def bench_tensorflow(gridsize: int, n_filters_scale: int, batch_sizes: list[int],
                     train_batch: int, use_compile: bool) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.tf.model import create_model
    from ptycho.tf.training import compile_models

    tf.random.set_seed(0)
    C = gridsize * gridsize
    rng = np.random.default_rng(0)
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=gridsize,
                                              n_filters_scale=n_filters_scale), nphotons=1e9)
    probe = np.ones((64, 64), np.complex64) * 0.5
    models = create_model(config, probe)
    out: dict[str, Any] = {'threads': tf.config.threading.get_intra_op_parallelism_threads(),
                           'tensorflow': tf.__version__}
    net = models.diffraction_to_obj
    variants: list[tuple[str, Callable[..., Any]]] = [
        ('predict_on_batch', lambda x, o: net.predict_on_batch([x, o])),
        ('tf.function', tf.function(lambda x, o: net([x, o], training=False))),
    ]
    if use_compile:
        variants.append(('tf.function+XLA', tf.function(lambda x, o: net([x, o], training=False),
                                                        jit_compile=True)))
    for name, fn in variants:
        row = {}
        for batch in batch_sizes:
            X = tf.constant(rng.random((batch, 64, 64, C), np.float32) * models.intensity_scale)
            offsets = tf.constant(rng.normal(size=(batch, 1, 2, C)).astype(np.float32) * 3)
            seconds = _median_seconds(lambda: np.asarray(fn(X, offsets)), 5)
            row[batch] = round(batch * C / seconds, 1)
        out[f'infer[{name}]'] = row
    X = rng.random((256, 64, 64, C)).astype(np.float32)
    offsets = (rng.normal(size=(256, 1, 2, C)) * 3).astype(np.float32)
    if models.cached_input_model is not None:
        seconds = _median_seconds(lambda: models.backprojection_features(X, offsets), 3)
        out['backprojection'] = round(256 * C / seconds, 1)
    X, offsets = X[:train_batch], offsets[:train_batch]
    # as training runs it: on the cached-input model when there is one
    trainee = models.cached_input_model or models.autoencoder
    inputs = [X, offsets]
    if models.cached_input_model is not None:
        inputs.append(models.backprojection_features(X, offsets))
    for label, jit in (('graph', False),) + ((('XLA', True),) if use_compile else ()):
        compile_models(models, config, trainee)
        if jit:
            trainee.compile(optimizer=trainee.optimizer, loss=trainee.loss, jit_compile=True)
        seconds = _median_seconds(lambda: trainee.train_on_batch(inputs, X), 5)
        out[f'train[{label}]'] = round(train_batch * C / seconds, 1)
    return out


BENCHES = {'pytorch': bench_pytorch, 'tensorflow': bench_tensorflow}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', default='pytorch', choices=sorted(BENCHES))
    parser.add_argument('--gridsize', type=int, default=2)
    parser.add_argument('--n-filters-scale', type=int, default=1)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 16, 256])
    parser.add_argument('--train-batch', type=int, default=16)
    parser.add_argument('--compile', action='store_true', help='also time torch.compile')
    parser.add_argument('--output', type=Path, default=None)
    args = parser.parse_args(argv)
    results = BENCHES[args.backend](args.gridsize, args.n_filters_scale, args.batch_sizes,
                                    args.train_batch, args.compile)
    results.update(backend=args.backend, gridsize=args.gridsize,
                   n_filters_scale=args.n_filters_scale, cpu_count=os.cpu_count(),
                   load_average=os.getloadavg()[0],
                   omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'),
                   gomp_spincount=os.environ.get('GOMP_SPINCOUNT'),
                   command=' '.join([Path(sys.executable).name, *sys.argv]))
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_suffix('.tmp')
        tmp.write_text(text)
        os.replace(tmp, args.output)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
