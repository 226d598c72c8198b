"""The TensorFlow backend lives in ``ptycho.tf``; its historical paths, which Ptychodus 1.7.0's
built-in integration and the reference guide import, are the very same modules."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LEGACY = [('ptycho.model', 'ptycho.tf.model'),
          ('ptycho.tf_helper', 'ptycho.tf.physics'),
          ('ptycho.train_pinn', 'ptycho.tf.training'),
          ('ptycho.model_manager', 'ptycho.tf.persistence'),
          ('ptycho.workflows.components', 'ptycho.tf.workflows')]


def _loaded_after(statement: str) -> list[str]:
    """Modules among TensorFlow, Keras, torch and the TF backend loaded by ``statement``."""
    code = (f'import sys\n{statement}\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("tensorflow", "keras", "torch") or m.startswith("ptycho.tf.") '
            'or m in ("ptycho.model", "ptycho.workflows.components")))\n')
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', QT_QPA_PLATFORM='offscreen')
    run = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return ast.literal_eval(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('legacy,module', LEGACY)
def test_a_legacy_path_is_the_module_itself(legacy: str, module: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    old = importlib.import_module(legacy)
    new = importlib.import_module(module)
    assert old is new and sys.modules[legacy] is new and new.__name__ == module
    parent, _, child = legacy.rpartition('.')
    assert getattr(importlib.import_module(parent), child) is new  # ``from ptycho import model``
    monkeypatch.setattr(old, 'logger', 'patched through the legacy name')
    assert new.logger == 'patched through the legacy name'


def test_the_core_and_the_packages_load_no_backend_and_no_legacy_alias() -> None:
    assert _loaded_after('import ptycho, ptycho.workflows, ptycho.workflows.backend_selector, '
                         'ptycho.config.config, ptycho.loader, ptycho.probe, ptycho.params, '
                         'ptycho_torch, ptychopinn_plugin') == []


def test_the_tf_package_backend_and_workflows_import_tensorflow_lazily() -> None:
    loaded = _loaded_after('import ptycho.tf.backend, ptycho.workflows.components')
    assert not [m for m in loaded if m.split('.')[0] in ('tensorflow', 'keras', 'torch')]
    assert {'ptycho.tf.backend', 'ptycho.tf.workflows', 'ptycho.workflows.components'} <= set(
        loaded)


def test_mirror_legacy_params_is_the_one_writer_of_params_cfg(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher and both backends mirror configs through one function (issue 12)."""
    from ptycho import params
    from ptycho.config.config import ModelConfig, mirror_legacy_params
    from ptycho.tf.workflows import mirror_legacy_params as tf_mirror

    assert tf_mirror is mirror_legacy_params
    monkeypatch.setattr(params, 'cfg', {'intensity_scale': 7.0})
    mirror_legacy_params(ModelConfig(N=64, gridsize=2))
    assert (params.get('N'), params.get('gridsize'), params.get('intensity_scale')) == (64, 2, 7.0)
    mirror_legacy_params(ModelConfig(N=128), 3.5)
    assert (params.get('N'), params.get('intensity_scale')) == (128, 3.5)
    writers = [f'{path.relative_to(REPO)}:{number}'
               for package in ('ptycho', 'ptycho_torch', 'ptychopinn_plugin')
               for path in sorted((REPO / package).rglob('*.py'))
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if not line.lstrip().startswith(("f'", "'", '"', '#'))  # messages, comments
               and ('update_legacy_dict(params.cfg' in line
                    or ('params.cfg[' in line and '] =' in line))]
    # config.py: the mirror itself; probe.py: the legacy set_probe_guess (the 'probe' key).
    assert sorted({w.split(':')[0] for w in writers}) == ['ptycho/config/config.py',
                                                         'ptycho/probe.py'], writers
