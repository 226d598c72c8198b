"""The GUI panel Ptychodus shows when a PtychoPINN-Dual algorithm is selected.

Built with Ptychodus' own parameter widgets, so edits go straight into the settings
registry (and so into the saved settings file). The rows are generated from the settings
groups, and so from the config fields' metadata (label, help, choices); only the backend
choice is laid out here. A status line re-validates every change
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

from ptycho.config.config import BACKENDS

from . import LIBRARY_NAME
from .library import PinnDualReconstructorLibrary
from .settings import ConfigSettings, PluginField, PluginSettings

BACKEND_COMBO_NAME = 'ptychopinnDualBackendComboBox'
STATUS_LABEL_NAME = 'ptychopinnDualStatusLabel'
MODEL_GROUP_TITLE = 'Model (patch size N = diffraction pattern size)'


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
        builder = ParameterViewBuilder(self._file_dialog_factory)
        builder.add_view_controller_to_top(
            ValidationStatusViewController(settings, reconstructor_name.lower()))

        backend = ComboBoxParameterViewController(
            settings.backend.backend, BACKENDS,
            tool_tip='Framework that trains and runs the model (in a separate worker process). '
                     'A model can only be loaded by the backend that trained it.')
        backend.get_widget().setObjectName(BACKEND_COMBO_NAME)
        builder.add_view_controller(backend, 'Backend:', group='Backend')

        for group_settings, title in ((settings.model, MODEL_GROUP_TITLE),
                                      (settings.training, 'Training'),
                                      (settings.inference, 'Inference')):
            add_rows(builder, group_settings, title, reconstructor_name.lower())
        return builder.build_widget()


def add_rows(builder: ParameterViewBuilder, group: ConfigSettings, title: str,
             model_type: str) -> None:
    """One panel row per shown setting of ``group``, its widget chosen by the field: a check
    box for a flag, a combo box for a closed vocabulary, else a line edit; the field's help
    is the tool tip."""
    for field in group.fields:
        setting = field.setting
        if not setting.shown or setting.model_type not in (None, model_type):
            continue
        parameter = group.parameters[field.name]
        tip = _tool_tip(field)
        kind = field.info.type
        if kind is bool:
            builder.add_check_box(parameter, setting.label, tool_tip=tip, group=title)
        elif field.menu and kind is str:
            builder.add_combo_box(parameter, field.menu, f'{setting.label}:', tool_tip=tip,
                                  group=title)
        elif kind is int:
            builder.add_integer_line_edit(parameter, f'{setting.label}:', tool_tip=tip,
                                          group=title)
        elif kind is float:
            builder.add_decimal_line_edit(parameter, f'{setting.label}:', tool_tip=tip,
                                          group=title)
        else:
            builder.add_line_edit(parameter, f'{setting.label}:', tool_tip=tip, group=title)


def _tool_tip(field: PluginField) -> str:
    help_text = field.info.help
    return help_text[:1].upper() + help_text[1:] if help_text else ''
