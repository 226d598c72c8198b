"""Ctrl-C during training: an interruption the user asked for, not a crash."""

from __future__ import annotations

import signal
from typing import Any, Callable

from ptycho.cli.errors import TrainingInterrupted


class InterruptGuard:
    """Turn Ctrl-C inside the block into :class:`TrainingInterrupted` with ``message()``.

    SIGINT is remembered even when a library turns it into SystemExit: Lightning catches
    KeyboardInterrupt, shuts down and calls ``sys.exit(1)``; the flag tells that apart
    from a real exit, which passes through unchanged.
    """

    def __init__(self, message: Callable[[], str]) -> None:
        self.fired = False
        self._message = message
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> 'InterruptGuard':
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and self.fired):
            raise TrainingInterrupted(self._message()) from None
