"""The real Ptychodus main window, started through the launcher (offscreen Qt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from plugin_support import subprocess_env

# Runs ``ptychodus-pinn`` (launcher.main) unchanged; QApplication.exec is replaced by the
# checks, which drive the window like a user would and then return instead of looping.
GUI_SCRIPT = r"""
import json, sys
from pathlib import Path
from PyQt5.QtWidgets import (QAction, QApplication, QComboBox, QGroupBox, QLabel, QMainWindow,
                             QStackedWidget)

from ptychopinn_plugin.launcher import main
from ptychopinn_plugin.panel import BACKEND_COMBO_NAME, STATUS_LABEL_NAME

out = Path(sys.argv[1])

def visible(widget):
    return widget.isVisibleTo(widget.window())

def checks(app):
    app.processEvents()
    window = next(w for w in app.topLevelWidgets() if isinstance(w, QMainWindow))
    algorithms = next(c for c in window.findChildren(QComboBox)
                      if c.findText('ptychopinn-dual_pinn') >= 0)
    keys = [algorithms.itemText(i) for i in range(algorithms.count())]
    algorithms.setCurrentText('ptychopinn-dual_pinn')
    algorithms.textActivated.emit('ptychopinn-dual_pinn')  # what a user's click does
    app.processEvents()
    stack = next(s for s in window.findChildren(QStackedWidget)
                 if s.currentWidget() is not None
                 and s.currentWidget().findChild(QComboBox, BACKEND_COMBO_NAME) is not None)
    panel = stack.currentWidget()
    backend = panel.findChild(QComboBox, BACKEND_COMBO_NAME)
    status = panel.findChild(QLabel, STATUS_LABEL_NAME)
    result = {
        'keys': keys,
        'backend_items': [backend.itemText(i) for i in range(backend.count())],
        'backend_before': backend.currentText(),
        'status_before': status.text(),
    }
    backend.setCurrentText('pytorch')
    backend.textActivated.emit('pytorch')
    app.processEvents()
    result['status_after'] = status.text()
    # A bad value typed into the panel is reported at once, with the config's message.
    epochs = next(l for l in panel.findChildren(QLabel) if l.text() == 'Epochs:').buddy()
    epochs.setText('0')
    epochs.editingFinished.emit()
    app.processEvents()
    result['status_invalid'] = status.text()
    epochs.setText('3')
    epochs.editingFinished.emit()
    app.processEvents()
    result['status_fixed'] = status.text()
    result['groups'] = sorted(g.title() for g in panel.findChildren(QGroupBox))
    window.resize(1400, 900)
    next(a for a in window.findChildren(QAction) if a.text() == 'Processing').trigger()
    app.processEvents()
    result['processing_view_shown'] = visible(panel)
    window.grab().save(str(out / 'ptychodus_main_window.png'))
    panel.grab().save(str(out / 'ptychopinn_dual_panel.png'))
    result['frameworks'] = sorted(m for m in ('tensorflow', 'torch', 'keras', 'lightning')
                                  if sys.modules.get(m) is not None)
    print('RESULT ' + json.dumps(result), flush=True)
    return 0

QApplication.exec = checks
QApplication.exec_ = checks
sys.exit(main([]))
"""


def test_main_window_shows_the_panel_and_backend_choice(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, '-c', GUI_SCRIPT, str(tmp_path)],
                         env=subprocess_env(HOME=str(tmp_path)), capture_output=True, text=True,
                         timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    result = json.loads(output.split('RESULT ')[-1].splitlines()[0])
    assert {'ptychopinn-dual_pinn', 'ptychopinn-dual_supervised'} <= set(result['keys'])
    assert result['backend_items'] == ['tensorflow', 'pytorch']
    assert result['backend_before'] == 'tensorflow'
    assert result['status_before'] == 'Settings valid (tensorflow backend).'
    assert result['status_after'] == 'Settings valid (pytorch backend).'
    assert result['status_invalid'] == ('Invalid setting: TrainingConfig.nepochs: expected an '
                                        'integer >= 1, found 0')
    assert result['status_fixed'] == 'Settings valid (pytorch backend).'
    assert {'Backend', 'Training', 'Inference'} <= set(result['groups'])
    assert result['processing_view_shown']
    assert result['frameworks'] == []  # the GUI process has no TensorFlow/torch
    for name in ('ptychodus_main_window.png', 'ptychopinn_dual_panel.png'):
        assert (tmp_path / name).stat().st_size > 1000
