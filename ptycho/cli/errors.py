"""Exit statuses and the one-line error report of ``ptychopinn``.

A user mistake ends with status 2 and one line on stderr, Ctrl-C with 130, a diverged
training with 1 and its reason; anything else is an internal error, one line unless
``--verbose`` asked for the traceback.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger('ptycho.cli')

PROG = 'ptychopinn'
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake the user can fix; reported as one line, exit status 2."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; carries the resume hint."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
    NotADirectoryError, PermissionError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, naming the file where the OS error did not."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) and \
            getattr(exc, 'filename', None) and str(exc.filename) not in text:
        text = f'{exc.filename}: {text}'
    return ' '.join(text.split())


def _stderr(text: str) -> None:
    print(f'{PROG}: {text}', file=sys.stderr, flush=True)


def report_error(exc: BaseException, verbose: bool) -> int:
    """Tell the user what ended the command and return the exit status for it."""
    if isinstance(exc, TrainingInterrupted):
        _stderr(str(exc))
        return EXIT_INTERRUPTED
    if isinstance(exc, KeyboardInterrupt):
        _stderr('interrupted')
        return EXIT_INTERRUPTED
    if isinstance(exc, (*USER_ERRORS, ImportError)):
        if verbose:
            logger.error('details', exc_info=exc)
        message = one_line(exc)
        if not isinstance(exc, USER_ERRORS):
            message = f'a required package is missing ({message})'
        _stderr(f'error: {message}')
        return EXIT_USAGE
    # Training diverged: TF raises NonFiniteLossError (a FloatingPointError), torch a
    # RuntimeError of that name.
    if isinstance(exc, FloatingPointError) or (
            isinstance(exc, RuntimeError) and type(exc).__name__ == 'NonFiniteLossError'):
        _stderr(f'training failed: {one_line(exc)}')
        return EXIT_FAILED
    if verbose:
        logger.error('internal error', exc_info=exc)
    else:
        _stderr(f'internal error: {type(exc).__name__}: {one_line(exc)} '
                f'(rerun with --verbose for the traceback)')
    return EXIT_INTERNAL
