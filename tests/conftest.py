"""Suite-wide: every test starts with the logging configuration the session started with.

``ptycho.cli.output.setup_logging`` (run by any in-process ``ptycho.cli.main`` call) gives
our package loggers their own handler with ``propagate = False``; left in place, later
tests in the same worker lose those records from pytest's ``caplog``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

_LOGGERS = ('ptycho', 'ptycho_torch', 'ptychopinn_plugin')
"""Not the root logger: pytest adds and removes its own capture handlers there."""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = [(logging.getLogger(name), logging.getLogger(name).handlers[:],
              logging.getLogger(name).propagate, logging.getLogger(name).level)
             for name in _LOGGERS]
    yield
    for logger, handlers, propagate, level in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)
