"""Backend dispatcher (ptycho.workflows.backend_selector): routing, import walls, errors.

Routing tests run a tiny real training in a fresh interpreter, so they can also check
which framework the route imported: the TensorFlow route must never import torch and the
PyTorch route must never import TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig

REPO = Path(__file__).resolve().parents[2]

ROUTE_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import numpy as np
    from ptycho import params
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.simulation import simulate_dataset
    from ptycho.workflows.backend_selector import run_cdi_example_with_backend
    from ptycho import bundle

    backend, out = sys.argv[1], Path(sys.argv[2])
    train = simulate_dataset(N=64, n_positions=48, object_size=104, seed=1)
    test = simulate_dataset(N=64, n_positions=24, object_size=100, seed=2)
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), nepochs=1,
                            batch_size=16, output_dir=out, backend=backend,
                            logger='none')
    amp, phase, results = run_cdi_example_with_backend(train, test, config,
                                                       do_stitching=True)
    print(json.dumps({
        'backend': results['backend'],
        'history': results['history'],
        'amp_shape': list(np.shape(amp)),
        'finite': bool(np.isfinite(amp).all() and np.isfinite(phase).all()),
        'bundle_backend': bundle.peek_backend(out),
        'cfg_backend': params.cfg.get('backend'),
        'torch_loaded': 'torch' in sys.modules,
        'tensorflow_loaded': 'tensorflow' in sys.modules or 'keras' in sys.modules,
    }))
''')

BLOCK_TORCH = textwrap.dedent('''
    import sys
    from importlib.abc import MetaPathFinder

    class BlockTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == 'torch' or name.startswith('torch.'):
                raise ImportError(f'No module named {name!r} (blocked by test)')
            return None

    sys.meta_path.insert(0, BlockTorch())

    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.workflows.backend_selector import run_cdi_example_with_backend
    config = TrainingConfig(model=ModelConfig(N=64), backend='pytorch')
    try:
        run_cdi_example_with_backend(None, None, config)
    except RuntimeError as exc:
        print('RUNTIME_ERROR:', exc)
    print('TENSORFLOW_LOADED:', 'tensorflow' in sys.modules)
''')


def _python(args: list[str], tmp_path: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3',
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _route(backend: str, tmp_path: Path) -> dict:
    script = tmp_path / 'route.py'
    script.write_text(ROUTE_SCRIPT)
    proc = _python([str(script), backend, str(tmp_path / 'out')], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_backend_field_defaults() -> None:
    assert TrainingConfig().backend == 'tensorflow'
    assert InferenceConfig().backend == 'tensorflow'
    assert TrainingConfig(backend='pytorch').backend == 'pytorch'
    assert InferenceConfig(backend='pytorch').backend == 'pytorch'
    with pytest.raises(ValueError, match='backend'):
        TrainingConfig(backend='jax')


def test_pytorch_backend_routes_correctly(tmp_path: Path) -> None:
    pytest.importorskip('torch')
    pytest.importorskip('ptycho_torch.workflows.components')
    report = _route('pytorch', tmp_path)
    assert report['backend'] == 'pytorch'
    assert report['bundle_backend'] == 'pytorch'
    assert report['cfg_backend'] == 'pytorch'
    assert len(report['history']['train_loss']) == 1
    assert report['finite'] and len(report['amp_shape']) == 2
    assert not report['tensorflow_loaded'], 'the PyTorch route imported TensorFlow'


def test_tensorflow_backend_routes_correctly(tmp_path: Path) -> None:
    pytest.importorskip('tensorflow')
    report = _route('tensorflow', tmp_path)
    assert report['backend'] == 'tensorflow'
    assert report['bundle_backend'] == 'tensorflow'
    assert report['cfg_backend'] == 'tensorflow'
    assert len(report['history']['train_loss']) == 1
    assert report['finite'] and len(report['amp_shape']) == 2
    assert not report['torch_loaded'], 'the TensorFlow route imported torch'


@pytest.fixture
def restore_params():
    saved = dict(params.cfg)
    yield
    params.cfg.clear()
    params.cfg.update(saved)


def test_invalid_backend_raises_value_error(restore_params) -> None:
    from ptycho.workflows import backend_selector

    config = TrainingConfig(model=ModelConfig(N=64), nepochs=7)
    config.backend = 'jax'  # bypasses construction-time validation on purpose
    params.cfg.pop('nepochs', None)
    with pytest.raises(ValueError, match="'tensorflow', 'pytorch'"):
        backend_selector.run_cdi_example_with_backend(None, None, config)
    # update_legacy_dict ran before the backend was inspected.
    assert params.cfg['nepochs'] == 7 and params.cfg['backend'] == 'jax'
    inference = InferenceConfig(model=ModelConfig(N=64))
    inference.backend = 'jax'
    for call in (lambda: backend_selector.load_inference_bundle_with_backend('x', inference),
                 lambda: backend_selector.reassemble_with_backend(None, inference),
                 lambda: backend_selector.train_cdi_model_with_backend(None, None, config)):
        with pytest.raises(ValueError, match='jax'):
            call()


def test_missing_torch_raises_runtime_error(tmp_path: Path) -> None:
    proc = _python(['-c', BLOCK_TORCH], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'RUNTIME_ERROR: PyTorch backend selected but torch module unavailable' in proc.stdout
    assert 'pip install torch>=2.2' in proc.stdout
    assert 'pip install ptychopinn[torch]' in proc.stdout
    assert 'TENSORFLOW_LOADED: False' in proc.stdout  # no silent fallback


def test_dispatcher_imports_no_backend(tmp_path: Path) -> None:
    code = ('import sys, ptycho.workflows.backend_selector, ptycho.workflows; '
            'print(sorted(m for m in ("torch", "tensorflow", "keras", "lightning") '
            'if m in sys.modules))')
    proc = _python(['-c', code], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == '[]'


@pytest.mark.parametrize('blocked,advised', [('lightning', True), ('ptycho_torch.model', False)])
def test_only_a_missing_framework_gets_install_advice(tmp_path: Path, blocked: str,
                                                      advised: bool) -> None:
    """Missing lightning -> the install message; a broken module of ours -> its own error."""
    code = BLOCK_TORCH.replace(
        "if name == 'torch' or name.startswith('torch.'):",
        f"if name == {blocked!r} or name.startswith({blocked + '.'!r}):",
    ).replace("raise ImportError(f'No module named {name!r} (blocked by test)')",
              "raise ModuleNotFoundError(f'No module named {name!r} (blocked by test)', "
              "name=name)").replace('except RuntimeError as exc:', 'except (RuntimeError, ImportError) as exc:'
              ).replace("print('RUNTIME_ERROR:', exc)",
                        "print(type(exc).__name__ + ':', exc)")
    proc = _python(['-c', code], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if advised:
        assert 'RuntimeError: PyTorch backend selected but torch module unavailable' in proc.stdout
        assert "'lightning'" in proc.stdout
    else:
        assert 'ModuleNotFoundError:' in proc.stdout or 'ImportError:' in proc.stdout
        assert 'pip install torch' not in proc.stdout and blocked in proc.stdout
