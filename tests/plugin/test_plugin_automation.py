"""Ptychodus' own automation with the PtychoPINN-Dual workflow, nothing mocked.

A ``ModelCore`` built through the launcher (as ``ptychodus-pinn`` builds it), its
Automation settings pointed at a temporary folder, the model loaded the way the GUI's
"Load Model..." does, then Ptychodus' watchdog observer, pending-file buffer and task
queue do the rest while the test pumps the foreground tasks as the GUI's one-second timer
does. Two scan folders land (one written in place, one moved in whole); each must get
its reconstructed product, equal to what the reconstructor gives for the same scan, and
the worker must have read the model from disk once.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import scenes
from plugin_support import Trained

DEADLINE_S = 120.0


def test_dropped_scans_are_reconstructed_with_the_warm_model(trained: Trained,
                                                             tmp_path: Path) -> None:
    from ptychodus.api.io import load_product
    from ptychodus.model import ModelCore
    from ptychodus.model.automation import AutomationDatasetState

    from ptycho.atomic import find_temporaries
    from ptychopinn_plugin import launcher
    from ptychopinn_plugin.automation import (OUTPUT_NAME, WORKFLOW_DISPLAY_NAME,
                                              WORKFLOW_SIMPLE_NAME, algorithm_key)

    registration = launcher.install()
    try:
        model = ModelCore()
    finally:
        launcher.uninstall()
    library = registration.library_for(model.processing_core.algorithm_parameter)
    assert library is not None
    try:
        watched = tmp_path / 'watched'
        watched.mkdir()
        automation = model.automation_core
        automation.settings.data_directory.set_value(watched)
        automation.settings.watchdog_delay_s.set_value(1)
        automation.settings.workflow.set_value(WORKFLOW_SIMPLE_NAME)
        assert automation.presenter.get_current_workflow() == WORKFLOW_DISPLAY_NAME
        library.settings.backend.backend.set_value('pytorch')
        model.processing_core.processing_api.load_model_from_file(
            trained.model_path, algorithm=algorithm_key('PINN'))

        raws = {'scan_a': scenes.simulate(64, seed=21), 'scan_b': scenes.simulate(64, seed=22)}
        outputs = {name: watched / name / OUTPUT_NAME for name in raws}
        with model:
            automation.presenter.set_watcher_enabled(True)
            assert automation.presenter.is_watcher_enabled()
            scenes.write_workflow_dir(watched / 'scan_a', raws['scan_a'])  # written in place
            staged = scenes.write_workflow_dir(tmp_path / 'staging' / 'scan_b', raws['scan_b'])
            staged.rename(watched / 'scan_b')  # moved in whole, as a transfer tool lands it
            deadline = time.monotonic() + DEADLINE_S
            while not all(p.is_file() for p in outputs.values()) \
                    and time.monotonic() < deadline:
                model.run_tasks()  # the GUI's timer: Ptychodus' foreground tasks
                time.sleep(0.1)
            model.run_tasks()
            states = {item.label: item.state for item in automation.repository}
            client = library.workers.current()
            assert client is not None
            ping = client.call('ping')
            automation.presenter.set_watcher_enabled(False)

        assert all(p.is_file() for p in outputs.values()), (states, sorted(watched.rglob('*')))
        assert states == {f'{name}/product.h5': AutomationDatasetState.COMPLETE
                          for name in raws}
        assert client.starts == 1
        assert ping['loads'] == 1, ping  # "Load Model..." read it; both scans reused it
        for name, raw in raws.items():
            written = load_product(outputs[name]).object_.get_array()
            (expected,) = trained.pinn.reconstruct(scenes.reconstruct_input(raw))
            np.testing.assert_allclose(written, expected.product.object_.get_array(),
                                       rtol=1e-4, atol=1e-5)
            assert find_temporaries(watched / name) == []
    finally:
        library.shutdown()


def test_workflow_is_registered_and_reports_what_it_cannot_do(tmp_path: Path, caplog) -> None:
    """Registered with every ``ModelCore`` the launcher builds; a scan it cannot reconstruct
    is one error line naming the folder, never an exception that stalls the automation."""
    import logging

    from ptychodus.model import ModelCore

    from ptychopinn_plugin import launcher
    from ptychopinn_plugin.automation import (OUTPUT_NAME, WORKFLOW_SIMPLE_NAME,
                                              PinnDualFileBasedWorkflow)

    launcher.install()
    try:
        model = ModelCore()
    finally:
        launcher.uninstall()
    workflow = model.plugin_registry.file_based_workflows.get_strategy_by_name(
        WORKFLOW_SIMPLE_NAME)
    assert isinstance(workflow, PinnDualFileBasedWorkflow)
    assert workflow.binding is not None
    assert workflow.get_watch_file_pattern() == 'product.h5' and workflow.is_watch_recursive
    assert ModelCore().plugin_registry.file_based_workflows.find_plugin(
        WORKFLOW_SIMPLE_NAME) is None  # uninstalled: Ptychodus' own registry again

    lonely = tmp_path / 'lonely'
    lonely.mkdir()
    (lonely / 'product.h5').write_bytes(b'')
    complete = scenes.write_workflow_dir(tmp_path / 'complete', scenes.simulate(16, seed=5))
    with caplog.at_level(logging.ERROR, logger='ptychopinn_plugin.automation'):
        workflow.execute(model.workflow_api, lonely / 'product.h5')
        workflow.execute(model.workflow_api, complete / 'product.h5')
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors
    assert 'lonely' in errors[0] and 'diffraction.h5 not found' in errors[0]
    assert 'complete' in errors[1] and 'no PtychoPINN-Dual model is loaded' in errors[1]
    assert not (complete / OUTPUT_NAME).exists()
