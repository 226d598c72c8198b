"""Parent-side handle on the long-lived worker process.

Ptychodus' own subprocess adapter spawns a fresh child per call, so every reconstruction
pays interpreter start-up, the TensorFlow/torch import and the model load. Here one
``spawn``-context worker per backend stays alive between calls and keeps the loaded
model, so the next scan pays only inference and stitching.

Protocol (one duplex pipe, requests answered in order)::

    parent -> worker   (kind, request_id, payload)      kind: ping|load|reconstruct|train|shutdown
    worker -> parent   ('ready', pid, info)               once, after start-up
                       ('log', levelno, name, message)    any time
                       ('event', request_id, dict)        progress (training epochs)
                       ('result', request_id, payload)    final answer
                       ('error', request_id, type_name, message, traceback)

A shared ``Event`` is the cancel flag: the worker's training loop checks it between
batches/epochs. A worker that dies (crash, kill, out of memory) is detected by polling
its liveness while waiting; the call fails with :class:`WorkerCrashedError` and the
next call starts a fresh worker. The parent never imports the worker's modules: the
child resolves its entry point by name.
"""

from __future__ import annotations

import builtins
import importlib
import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger(__name__)

WORKER_ENTRY = 'ptychopinn_plugin.worker:serve'
POLL_S = 0.1


class WorkerError(RuntimeError):
    """The worker raised an exception of a type that has no builtin twin here."""


class WorkerCrashedError(RuntimeError):
    """The worker process died while a request was outstanding (it restarts next call)."""


class WorkerCancelledError(RuntimeError):
    """A request was cancelled before it finished."""


_REBUILDABLE = (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError,
                NotImplementedError, MemoryError, OSError, ImportError)


def _rebuild_exception(type_name: str, message: str, tb: str) -> BaseException:
    """Re-raise the worker's exception as the same builtin class, with its message."""
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, _REBUILDABLE):
        exc: BaseException = cls(message)
    else:
        exc = WorkerError(f'{type_name}: {message}')
    exc.add_note(f'PtychoPINN worker traceback:\n{tb}')
    return exc


def _bootstrap(entry: str, conn: Connection, cancel: Any, log_level: int, backend: str) -> None:
    """Child-side target: import the worker by name (the parent never imports it)."""
    module_name, _, function_name = entry.partition(':')
    getattr(importlib.import_module(module_name), function_name)(conn, cancel, log_level, backend)


@dataclass
class Timings:
    """Wall-clock split of the last calls, for the latency benchmark and the logs."""

    worker_start_s: float = 0.0
    worker_info: dict[str, Any] = field(default_factory=dict)


class WorkerClient:
    """One worker process for one backend; thread-safe, restarts after a crash."""

    def __init__(self, backend: str, *, start_timeout_s: float = 300.0,
                 cancel_grace_s: float = 60.0, log_level: int = logging.INFO) -> None:
        self.backend = backend
        self._start_timeout_s = start_timeout_s
        self._cancel_grace_s = cancel_grace_s
        self._log_level = log_level
        self._ctx = multiprocessing.get_context('spawn')
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._process: Any = None
        self._conn: Connection | None = None
        self._cancel = self._ctx.Event()
        self.timings = Timings()
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Start the worker if it is not running (no-op when it is)."""
        with self._lock:
            if self.is_alive() and self._conn is not None:
                return
            self._discard()
            tic = time.perf_counter()
            parent_conn, child_conn = self._ctx.Pipe(duplex=True)
            self._cancel.clear()
            process = self._ctx.Process(
                target=_bootstrap, name=f'ptychopinn-worker-{self.backend}', daemon=True,
                args=(WORKER_ENTRY, child_conn, self._cancel, self._log_level, self.backend))
            process.start()
            child_conn.close()
            self._process, self._conn = process, parent_conn
            self.starts += 1
            logger.info('Starting PtychoPINN %s worker (pid %d)', self.backend, process.pid)
            deadline = time.monotonic() + self._start_timeout_s
            while True:
                message = self._receive(deadline, 'start-up')
                if message[0] == 'ready':
                    self.timings = Timings(time.perf_counter() - tic, dict(message[2]))
                    logger.info('PtychoPINN %s worker ready in %.2f s', self.backend,
                                self.timings.worker_start_s)
                    return

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with self._lock:
            process, conn = self._process, self._conn
            if process is None:
                return
            try:
                if conn is not None and process.is_alive():
                    conn.send(('shutdown', 0, None))
            except (OSError, EOFError):
                pass
            process.join(timeout_s)
            self._discard()

    def kill(self) -> None:
        """Stop the worker at once (used when a cancelled request does not stop in time)."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.terminate()
                process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)

    # -- requests --------------------------------------------------------------------
    def cancel(self) -> None:
        """Raise the cancel flag; the worker stops at its next batch/epoch boundary."""
        self._cancel.set()

    def call(self, kind: str, payload: Any = None,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Send one request and wait for its result (events go to ``on_event``)."""
        stream = self.stream(kind, payload)
        while True:
            try:
                event = next(stream)
            except StopIteration as stop:
                return stop.value
            if on_event is not None:
                on_event(event)

    def stream(self, kind: str, payload: Any = None) -> Generator[dict[str, Any], None, Any]:
        """Generator: yields the request's events; its return value is the result.

        Closing it early (a consumer that stops iterating) raises the cancel flag and
        waits for the worker to acknowledge; a worker that does not is killed.
        """
        with self._lock:
            self.start()
            request_id = next(self._ids)
            self._cancel.clear()
            assert self._conn is not None
            try:
                self._conn.send((kind, request_id, payload))
            except (OSError, EOFError) as exc:
                self._crashed(kind, exc)
            finished = False
            try:
                while True:
                    message = self._receive(None, kind)
                    tag = message[0]
                    if message[1] != request_id:
                        logger.debug('Dropping stale worker message %r', message[:2])
                        continue
                    if tag == 'event':
                        yield message[2]
                    elif tag == 'result':
                        finished = True
                        return message[2]
                    elif tag == 'error':
                        finished = True
                        raise _rebuild_exception(message[2], message[3], message[4])
            finally:
                if not finished and self.is_alive():
                    self._abandon(request_id, kind)

    def _abandon(self, request_id: int, kind: str) -> None:
        """The consumer stopped early: cancel, then drain to this request's answer."""
        self._cancel.set()
        deadline = time.monotonic() + self._cancel_grace_s
        try:
            while True:
                message = self._receive(deadline, kind)
                if message[1] == request_id and message[0] in ('result', 'error'):
                    logger.info('PtychoPINN worker stopped %s after cancel', kind)
                    return
        except (WorkerCrashedError, TimeoutError):
            logger.warning('PtychoPINN worker did not stop %s within %.0f s; killing it',
                           kind, self._cancel_grace_s)
            self._discard()
        finally:
            self._cancel.clear()

    def _receive(self, deadline: float | None, what: str) -> tuple[Any, ...]:
        """Next non-log message; logs are re-emitted here. Detects a dead worker."""
        conn, process = self._conn, self._process
        if conn is None or process is None:
            raise WorkerCrashedError(f'PtychoPINN {self.backend} worker is not running')
        while True:
            try:
                ready = conn.poll(POLL_S)
                message = conn.recv() if ready else None
            except (EOFError, OSError) as exc:
                self._crashed(what, exc)
            if message is None:
                if not process.is_alive():
                    self._crashed(what, None)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f'PtychoPINN {self.backend} worker: no answer to {what}')
                continue
            if message[0] == 'log':
                _, levelno, name, text = message
                logging.getLogger(f'ptychopinn_plugin.worker.{name}').log(levelno, text)
                continue
            return message

    def _crashed(self, what: str, exc: BaseException | None) -> None:
        process = self._process
        pid = process.pid if process is not None else None
        if process is not None:
            process.join(1.0)
        code = process.exitcode if process is not None else None
        self._discard()
        raise WorkerCrashedError(
            f'PtychoPINN {self.backend} worker (pid {pid}) stopped unexpectedly during {what} '
            f'(exit code {code}); it will be restarted on the next call') from exc


class WorkerPool:
    """At most one live worker, for the selected backend (switching restarts it)."""

    def __init__(self, **client_options: Any) -> None:
        self._options = client_options
        self._lock = threading.Lock()
        self._client: WorkerClient | None = None

    def client(self, backend: str) -> WorkerClient:
        with self._lock:
            if self._client is not None and self._client.backend != backend:
                logger.info('Backend changed %s -> %s: stopping the old worker',
                            self._client.backend, backend)
                self._client.shutdown()
                self._client = None
            if self._client is None:
                self._client = WorkerClient(backend, **self._options)
            return self._client

    def current(self) -> WorkerClient | None:
        return self._client

    def shutdown(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.shutdown()
                self._client = None
