"""The GUI panel Ptychodus shows when a PtychoPINN-Dual algorithm is selected.

Built with Ptychodus' own parameter widgets, so edits go straight into the settings
registry (and so into the saved settings file). A status line re-validates every change
through the ``ptycho.config`` dataclasses and shows the first problem in red, so a bad
value is visible before Train/Infer is pressed (which then fails with the same message).
"""

from __future__ import annotations

from PyQt5.QtWidgets import QLabel, QWidget

from ptychodus.api.observer import Observable, Observer
from ptychodus.controller.data import FileDialogFactory
from ptychodus.controller.parameters import (
    ComboBoxParameterViewController,
    ParameterViewBuilder,
    ParameterViewController,
)
from ptychodus.controller.processing import ReconstructorViewControllerFactory

from ptycho.config.config import ACCELERATORS, BACKENDS, INPUT_FEATURES, PRECISIONS, STRATEGIES

from . import LIBRARY_NAME
from .library import PinnDualReconstructorLibrary
from .settings import AMP_ACTIVATION_CHOICES, PluginSettings

BACKEND_COMBO_NAME = 'ptychopinnDualBackendComboBox'
STATUS_LABEL_NAME = 'ptychopinnDualStatusLabel'


class ValidationStatusViewController(ParameterViewController, Observer):
    """A label that says whether the current settings make a valid run config."""

    def __init__(self, settings: PluginSettings, model_type: str) -> None:
        super().__init__()
        self._settings = settings
        self._model_type = model_type
        self._label = QLabel()
        self._label.setObjectName(STATUS_LABEL_NAME)
        self._label.setWordWrap(True)
        for group in settings.groups():
            group.add_observer(self)
        self._sync()

    def get_widget(self) -> QWidget:
        return self._label

    def _sync(self) -> None:
        problem = self._settings.validate(self._model_type)
        if problem:
            self._label.setText(f'Invalid setting: {problem}')
            self._label.setStyleSheet('color: #b00020;')
        else:
            self._label.setText(f'Settings valid ({self._settings.backend_name()} backend).')
            self._label.setStyleSheet('')

    def _update(self, observable: Observable) -> None:
        if observable in self._settings.groups():
            self._sync()


class PinnDualViewControllerFactory(ReconstructorViewControllerFactory):
    def __init__(self, library: PinnDualReconstructorLibrary,
                 file_dialog_factory: FileDialogFactory | None = None) -> None:
        super().__init__()
        self._library = library
        self._file_dialog_factory = file_dialog_factory

    @property
    def name(self) -> str:
        return LIBRARY_NAME

    def create_view_controller(self, reconstructor_name: str) -> QWidget:
        settings = self._library.settings
        is_pinn = reconstructor_name.casefold() == 'pinn'
        builder = ParameterViewBuilder(self._file_dialog_factory)
        builder.add_view_controller_to_top(
            ValidationStatusViewController(settings, reconstructor_name.lower()))

        backend = ComboBoxParameterViewController(
            settings.backend.backend, BACKENDS,
            tool_tip='Framework that trains and runs the model (in a separate worker process). '
                     'A model can only be loaded by the backend that trained it.')
        backend.get_widget().setObjectName(BACKEND_COMBO_NAME)
        builder.add_view_controller(backend, 'Backend:', group='Backend')

        model = settings.model
        group = 'Model (patch size N = diffraction pattern size)'
        builder.add_integer_line_edit(model.gridsize, 'Grid Size:', group=group,
                                      tool_tip='Patterns per sample = gridsize**2')
        builder.add_integer_line_edit(model.n_filters_scale, 'Filter Scale:', group=group)
        builder.add_combo_box(model.amp_activation, AMP_ACTIVATION_CHOICES,
                              'Amplitude Activation:', group=group)
        builder.add_check_box(model.object_big, 'Object Big', group=group)
        builder.add_check_box(model.probe_big, 'Probe Big', group=group)
        builder.add_check_box(model.pad_object, 'Pad Object', group=group)
        builder.add_check_box(model.probe_mask, 'Probe Mask', group=group)
        builder.add_combo_box(model.input_features, INPUT_FEATURES, 'Network Input:',
                              group=group)
        builder.add_integer_line_edit(model.backprojection_iterations,
                                      'Back-projection Steps:', group=group)
        builder.add_check_box(model.skip_connections, 'Skip Connections', group=group)

        training = settings.training
        group = 'Training'
        builder.add_integer_line_edit(training.nepochs, 'Epochs:', group=group)
        builder.add_integer_line_edit(training.batch_size, 'Batch Size:', group=group)
        builder.add_decimal_line_edit(training.learning_rate, 'Learning Rate:', group=group)
        builder.add_decimal_line_edit(training.nphotons, 'Photons per Pattern:', group=group)
        if is_pinn:
            builder.add_decimal_line_edit(training.nll_weight, 'Poisson NLL Weight:', group=group)
            builder.add_decimal_line_edit(training.mae_weight, 'Amplitude MAE Weight:',
                                          group=group)
            builder.add_check_box(training.intensity_scale_trainable,
                                  'Train Intensity Scale', group=group)
        else:
            builder.add_decimal_line_edit(training.realspace_mae_weight, 'Real-space MAE Weight:',
                                          group=group)
            builder.add_decimal_line_edit(training.realspace_weight, 'Real-space MSE Weight:',
                                          group=group)
        builder.add_integer_line_edit(training.n_groups, 'Groups (0 = all):', group=group)
        builder.add_integer_line_edit(training.neighbor_count, 'Neighbours:', group=group)
        builder.add_integer_line_edit(training.seed, 'Seed:', group=group)
        builder.add_decimal_line_edit(training.validation_split, 'Validation Fraction:',
                                      group=group)
        builder.add_combo_box(training.accelerator, ACCELERATORS, 'Accelerator:', group=group)
        builder.add_integer_line_edit(training.devices, 'Devices:', group=group,
                                      tool_tip='GPUs to train on (PyTorch: with Strategy ddp)')
        builder.add_combo_box(training.strategy, STRATEGIES, 'Strategy:', group=group)
        builder.add_combo_box(training.precision, PRECISIONS, 'Precision:', group=group)

        inference = settings.inference
        group = 'Inference'
        builder.add_integer_line_edit(inference.batch_size, 'Batch Size:', group=group)
        builder.add_integer_line_edit(inference.neighbor_count, 'Neighbours:', group=group)
        builder.add_line_edit(inference.device, 'Device:', group=group,
                              tool_tip="'auto' (a GPU when there is one), 'cpu', 'cuda' or "
                                       "'cuda:N'")
        return builder.build_widget()
