"""Stock Ptychodus 1.7.0 with its built-in PtychoPINN-Torch library on this package.

* batch mode, unmodified ``python -m ptychodus``: ``-b train`` on a simulated scan with
  ``Algorithm = ptychopinn-torch_unsupervised``, then ``-b reconstruct`` of the scan with the
  ``model.ckpt`` training left, writes a product whose phase follows the simulated object;
* the stock GUI (offscreen) lists the built-in entries and opens their panel;
* started through our launcher, the built-in TensorFlow and torch libraries and our
  PtychoPINN-Dual live side by side, each with its own settings groups.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ptychodus.api.io import load_product

import scenes
from plugin_support import subprocess_env

TORCH_ALGORITHM = 'ptychopinn-torch_unsupervised'


def _torch_settings(epochs: int) -> dict[str, dict[str, object]]:
    # What a user sets in the panel for a 64-pixel scan on a CPU.
    return {'PtychoPINNTorchData': {'model_size': 64, 'x_lower_bound': 0.0,
                                    'x_upper_bound': 1.0, 'y_lower_bound': 0.0,
                                    'y_upper_bound': 1.0},
            'PtychoPINNTorchModel': {'num_filters_scale': 1},
            'PtychoPINNTorchTraining': {'epochs': epochs, 'device': 'cpu',
                                        'num_dataloader_workers': 0}}


def test_stock_batch_train_then_reconstruct(tmp_path: Path) -> None:
    raw = scenes.simulate(n_positions=256, seed=5)
    train_in = scenes.write_workflow_dir(tmp_path / 'train_in', raw, algorithm=TORCH_ALGORITHM,
                                         settings=_torch_settings(epochs=5))
    train_out = tmp_path / 'train_out'
    env = subprocess_env()
    run = subprocess.run([sys.executable, '-m', 'ptychodus', '-b', 'train', '-i', str(train_in),
                          '-o', str(train_out)], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    model = train_out / 'model.ckpt'
    assert model.is_file(), sorted(str(p) for p in train_out.rglob('*'))
    assert len(list(train_out.glob('run_*/checkpoints/last.ckpt'))) == 1

    shutil.copy(model, train_in / 'model.ckpt')  # what -b reconstruct loads
    recon_out = tmp_path / 'recon_out'
    run = subprocess.run([sys.executable, '-m', 'ptychodus', '-b', 'reconstruct', '-i',
                          str(train_in), '-o', str(recon_out)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    products = sorted(recon_out.glob('product.*.h5'))
    assert [p.name for p in products] == ['product.000001.h5'], run.stderr[-3000:]
    image = load_product(products[0]).object_.get_layer(0)
    # The product's object grid is the input product's: compare where the scan is.
    region = scenes.scanned_region(raw)
    truth = raw.objectGuess[region]
    rec = image[region]
    assert np.all(np.isfinite(rec))
    aligned = np.angle(rec * np.exp(-1j * np.angle(np.vdot(truth, rec))))
    corr = scenes.correlation(aligned, np.angle(truth))
    # Measured: 0.82 after 5 epochs (-0.04 after 3); the built-in library's quality is
    # tests/test_ptychodus_torch_builtin.py's, this run checks the stock batch mode end to end.
    assert corr > 0.4, corr


GUI_SCRIPT = r"""
import json, sys
from PyQt5.QtWidgets import (QApplication, QCheckBox, QComboBox, QGroupBox, QLabel,
                             QMainWindow, QStackedWidget)

def checks(app):
    app.processEvents()
    window = next(w for w in app.topLevelWidgets() if isinstance(w, QMainWindow))
    algorithms = next(c for c in window.findChildren(QComboBox)
                      if c.findText('ptychopinn-torch_unsupervised') >= 0)
    keys = [algorithms.itemText(i) for i in range(algorithms.count())]
    stacks = [s for s in window.findChildren(QStackedWidget) if s.count() > 1]
    before = {id(s): s.currentWidget() for s in stacks}
    algorithms.setCurrentText('ptychopinn-torch_unsupervised')
    algorithms.textActivated.emit('ptychopinn-torch_unsupervised')
    app.processEvents()
    changed = [s.currentWidget() for s in stacks if s.currentWidget() is not before[id(s)]]
    panel = changed[0] if changed else None
    texts = sorted({w.text() for w in panel.findChildren(QLabel)} |
                   {w.title() for w in panel.findChildren(QGroupBox)} |
                   {w.text() for w in panel.findChildren(QCheckBox)}) if panel else []
    from ptychodus.api.settings import SettingsRegistry
    registry = next((o for o in __import__('gc').get_objects()
                     if isinstance(o, SettingsRegistry)), None)
    groups = sorted(registry) if registry is not None else []
    print('RESULT ' + json.dumps({'keys': keys, 'panel': texts, 'groups': groups}), flush=True)
    return 0

QApplication.exec = checks
QApplication.exec_ = checks
if sys.argv[1] == 'stock':
    from ptychodus.__main__ import main
    sys.argv = ['ptychodus']
    sys.exit(main())
from ptychopinn_plugin.launcher import main
sys.exit(main([]))
"""


def _gui(which: str, tmp_path: Path) -> dict[str, list[str]]:
    run = subprocess.run([sys.executable, '-c', GUI_SCRIPT, which],
                         env=subprocess_env(HOME=str(tmp_path)), capture_output=True, text=True,
                         timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    return json.loads(output.split('RESULT ')[-1].splitlines()[0])


def test_stock_gui_lists_the_builtin_torch_library_and_opens_its_panel(tmp_path: Path) -> None:
    result = _gui('stock', tmp_path)
    assert {'ptychopinn-torch_unsupervised', 'ptychopinn-torch_supervised'} <= set(result['keys'])
    assert result['panel'], 'selecting the algorithm showed no settings panel'
    assert 'Amplitude Activation:' in result['panel'], result['panel']


def test_launcher_keeps_builtin_libraries_and_ours_apart(tmp_path: Path) -> None:
    result = _gui('launcher', tmp_path)
    assert {'ptychopinn-dual_pinn', 'ptychopinn-dual_supervised', 'ptychopinn-torch_unsupervised',
            'ptychopinn-torch_supervised', 'ptychopinn_pinn'} <= set(result['keys'])
    groups = result['groups']
    assert len(groups) == len(set(groups))
    ours = {g for g in groups if g.startswith('PtychoPINNDual')}
    torch_builtin = {g for g in groups if g.startswith('PtychoPINNTorch')}
    tf_builtin = {g for g in groups if g.startswith('PtychoPINN')} - ours - torch_builtin
    # Each library keeps its own groups, so one library's settings never overwrite another's.
    assert ours == {'PtychoPINNDualBackend', 'PtychoPINNDualModel', 'PtychoPINNDualTraining',
                    'PtychoPINNDualInference'}
    assert torch_builtin == {'PtychoPINNTorchData', 'PtychoPINNTorchModel',
                             'PtychoPINNTorchTraining', 'PtychoPINNTorchInference'}
    assert tf_builtin == {'PtychoPINNModel', 'PtychoPINNTraining', 'PtychoPINNInference'}
