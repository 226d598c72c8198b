"""The CLI's way to a backend: only through the dispatcher, imported when a command needs it."""

from __future__ import annotations

from types import ModuleType

from ptycho.cli.errors import UsageError


def backend_selector() -> ModuleType:
    """``ptycho.workflows.backend_selector``, imported late so ``--help`` stays fast."""
    from ptycho.workflows import backend_selector as selector
    return selector


def require_backend(backend: str) -> None:
    """Import the backend now, so a missing install is a one-line user error up front."""
    try:
        backend_selector().get_backend(backend)
    except (ImportError, RuntimeError) as exc:
        raise UsageError(str(exc)) from exc
