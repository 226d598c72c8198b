"""``ptychodus-pinn``: Ptychodus with the PtychoPINN-Dual library, its GUI panel and its
automation workflow.

Ptychodus 1.7.0 has no plugin entry point for reconstructor libraries: ``ModelCore``
hard-codes its list and hands it to ``ProcessingCore``, and ``ControllerCore`` hands a
hard-coded list of panel factories to ``ProcessingController``. :func:`install` wraps
those two names where ``ptychodus.model.core`` and ``ptychodus.controller.core`` look
them up, before Ptychodus builds anything, so our library is appended to the list and
our panel factory to the other. Workflow plugins are found only in the
``ptychodus.plugins`` folder, so the ``PluginRegistry`` that ``ModelCore`` loads is
wrapped too: it registers :class:`~ptychopinn_plugin.automation.PinnDualFileBasedWorkflow`,
which the same ``ModelCore`` then binds to our library when it builds ``ProcessingCore``
(``ModelCore.__init__`` loads the plugins first, on one thread). Everything else,
including the command line (GUI or ``-b train|reconstruct -i IN -o OUT``), is Ptychodus'
own ``main``.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_MARK = '__ptychopinn_dual_wrapped__'


@dataclass
class Registration:
    """Libraries created by the wrapped ``ProcessingCore``, keyed by their algorithm parameter."""

    libraries: 'weakref.WeakKeyDictionary[Any, Any]' = field(
        default_factory=weakref.WeakKeyDictionary)
    unbound_workflows: list[Any] = field(default_factory=list)
    """Workflows registered with a ``ModelCore``'s plugins, waiting for its library."""

    def library_for(self, algorithm_parameter: Any) -> Any:
        return self.libraries.get(algorithm_parameter)


def install() -> Registration:
    """Wrap Ptychodus' ProcessingCore and ProcessingController (idempotent)."""
    import ptychodus.model.core as model_core
    import ptychodus.controller.core as controller_core

    existing = getattr(model_core.ProcessingCore, _MARK, None)
    if existing is not None:
        return existing
    registration = Registration()
    original_core = model_core.ProcessingCore
    original_registry = model_core.PluginRegistry

    class PluginRegistry(original_registry):  # type: ignore[valid-type, misc]
        """Ptychodus' plugins plus the PtychoPINN-Dual automation workflow."""

        @classmethod
        def load_plugins(cls) -> Any:
            from .automation import (WORKFLOW_DISPLAY_NAME, WORKFLOW_SIMPLE_NAME,
                                     PinnDualFileBasedWorkflow)

            registry = super().load_plugins()
            workflow = PinnDualFileBasedWorkflow()
            registry.file_based_workflows.register_plugin(
                workflow, simple_name=WORKFLOW_SIMPLE_NAME, display_name=WORKFLOW_DISPLAY_NAME)
            registration.unbound_workflows.append(workflow)
            return registry

    def processing_core(task_manager: Any, settings_registry: Any, product_api: Any,
                        algorithm_libraries: Sequence[Any]) -> Any:
        from .library import PinnDualReconstructorLibrary

        library = PinnDualReconstructorLibrary(settings_registry)
        core = original_core(task_manager, settings_registry, product_api,
                             [*algorithm_libraries, library])
        registration.libraries[core.algorithm_parameter] = library
        from .automation import Binding

        while registration.unbound_workflows:
            registration.unbound_workflows.pop().binding = Binding(
                library, core.algorithm_parameter)
        return core

    original_controller = controller_core.ProcessingController

    def processing_controller(algorithm_parameter: Any, *args: Any, **kwargs: Any) -> Any:
        from .panel import PinnDualViewControllerFactory

        library = registration.library_for(algorithm_parameter)
        if library is not None:
            if 'view_controller_factories' in kwargs:
                dialogs = kwargs.get('file_dialog_factory', args[-1] if args else None)
                kwargs['view_controller_factories'] = [
                    *kwargs['view_controller_factories'],
                    PinnDualViewControllerFactory(library, dialogs)]
            else:
                *head, dialogs, factories = args
                args = (*head, dialogs,
                        [*factories, PinnDualViewControllerFactory(library, dialogs)])
        return original_controller(algorithm_parameter, *args, **kwargs)

    for wrapper, original in ((processing_core, original_core),
                              (processing_controller, original_controller),
                              (PluginRegistry, original_registry)):
        setattr(wrapper, _MARK, registration)
        wrapper.__wrapped__ = original  # type: ignore[attr-defined, union-attr]
    model_core.ProcessingCore = processing_core  # type: ignore[misc, assignment]
    model_core.PluginRegistry = PluginRegistry  # type: ignore[misc]
    controller_core.ProcessingController = processing_controller  # type: ignore[misc, assignment]
    logger.debug('PtychoPINN-Dual registered with Ptychodus')
    return registration


def uninstall() -> None:
    """Restore Ptychodus' own names (tests)."""
    import ptychodus.model.core as model_core
    import ptychodus.controller.core as controller_core

    for module, name in ((model_core, 'ProcessingCore'), (model_core, 'PluginRegistry'),
                         (controller_core, 'ProcessingController')):
        current = getattr(module, name)
        if getattr(current, _MARK, None) is not None:
            setattr(module, name, current.__wrapped__)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script: register, then run Ptychodus' own ``main`` with the same arguments."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    install()
    from ptychodus.__main__ import main as ptychodus_main

    return int(ptychodus_main())


if __name__ == '__main__':
    sys.exit(main())
