"""Worker process main loop: the only place the plugin touches TensorFlow or torch.

Started by :mod:`ptychopinn_plugin.client` in a ``spawn`` context; it answers requests
until told to stop or until the Ptychodus process goes away (its pipe closes). State
(the loaded models) lives in one :class:`~ptychopinn_plugin.engine.Engine` owned by this
loop: nothing is kept in module globals.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger('ptychopinn_plugin.worker')


class _Sender:
    """Serialises writes to the pipe: framework threads may log while the loop answers."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)


class _PipeLogHandler(logging.Handler):
    """Forwards log records to Ptychodus, which re-emits them in its own log."""

    def __init__(self, sender: _Sender) -> None:
        super().__init__()
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sender.send(('log', record.levelno, record.name, self.format(record)))
        except Exception:  # noqa: BLE001 - logging must never break the worker
            pass


def _builtin_base(exc: BaseException) -> str:
    """Name of the nearest builtin class of ``exc`` (BundleError -> ValueError), so
    Ptychodus gets an exception class it can import, with the worker's message."""
    for cls in type(exc).__mro__:
        if cls.__module__ == 'builtins':
            return cls.__name__
    return 'RuntimeError'


def _warm_import(backend: str) -> dict[str, float]:
    """Import the framework now, so start-up cost is paid (and measured) once.

    A missing framework is not an error here: the dispatcher raises its own actionable
    message on the first request, and that is the message the user must see.
    """
    module = {'tensorflow': 'tensorflow', 'pytorch': 'torch'}.get(backend)
    tic = time.perf_counter()
    try:
        if module is not None:
            __import__(module)
        from ptycho.workflows.backend_selector import get_backend

        get_backend(backend)
    except (ImportError, RuntimeError) as exc:
        logger.info('Backend %s is not usable in this environment: %s', backend, exc)
    return {'framework_import_s': time.perf_counter() - tic}


def serve(conn: Connection, cancel: Any, log_level: int, backend: str) -> None:
    """Answer ``(kind, request_id, payload)`` requests until ``shutdown`` or EOF."""
    tic = time.perf_counter()
    sender = _Sender(conn)
    handler = _PipeLogHandler(sender)
    handler.setFormatter(logging.Formatter('%(message)s'))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(log_level)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

    info = _warm_import(backend)
    from ptychopinn_plugin.engine import Engine  # after the log handler: its imports log

    engine = Engine(backend, cancel)
    info['worker_init_s'] = time.perf_counter() - tic
    info['python'] = sys.version.split()[0]
    sender.send(('ready', os.getpid(), info))

    while True:
        try:
            kind, request_id, payload = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if kind == 'shutdown':
            break

        def emit(event: dict[str, Any], _rid: int = request_id) -> None:
            sender.send(('event', _rid, event))

        try:
            result = engine.handle(kind, payload, emit)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to Ptychodus
            logger.debug('Request %s failed', kind, exc_info=True)
            try:
                sender.send(('error', request_id, _builtin_base(exc), str(exc),
                           f'{type(exc).__module__}.{type(exc).__qualname__}: '
                           + traceback.format_exc()))
            except (OSError, EOFError):
                break
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                break
            continue
        try:
            sender.send(('result', request_id, result))
        except (OSError, EOFError):
            break
    root.removeHandler(handler)
