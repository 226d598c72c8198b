"""The pieces every ``ptychopinn`` subcommand's parser is built from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptycho.cli.errors import UsageError

#: Keyword arguments of a subcommand whose help lists the defaults.
WITH_DEFAULTS: dict[str, Any] = dict(allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) through :class:`UsageError`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f'{message} (see {self.prog} --help)')


def add_model_flag(parser: argparse.ArgumentParser) -> None:
    """``--model M`` of the commands that load one model and keep it (watch, follow)."""
    parser.add_argument('--model', dest='bundle', type=Path, required=True, metavar='M',
                        help='trained model: a bundle directory or its wts.h5.zip (the '
                             'backend is read from it)')


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` and ``--quiet``, which every subcommand takes."""
    group = parser.add_argument_group('output')
    group.add_argument('-v', '--verbose', action='store_true',
                       help='debug logging (and full tracebacks on errors)')
    group.add_argument('-q', '--quiet', action='store_true',
                       help='only warnings and errors; no progress bars')


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, also written as ``2e3``."""
    try:
        value = int(float(text)) if 'e' in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {text!r}')
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive number, found {text!r}') from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'expected a positive number, found {text!r}')
    return value
