"""What ``ptychopinn`` shows: its own lines on stdout, log records and progress on stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ptycho.progress import ENV as PROGRESS_ENV


def say(text: str = '') -> None:
    """User-facing output: stdout, flushed so it interleaves sanely with progress bars."""
    print(text, flush=True)


def setup_logging(verbose: bool, quiet: bool) -> None:
    """Our packages' records at WARNING (DEBUG with --verbose) through one handler; other
    libraries' records only from WARNING up, so their INFO chatter is not echoed twice."""
    formatter = logging.Formatter('%(levelname)s %(name)s: %(message)s' if verbose
                                  else '%(message)s')
    ours = logging.StreamHandler(sys.stderr)
    ours.setFormatter(formatter)
    for name in ('ptycho', 'ptycho_torch', 'ptychopinn_plugin'):
        package = logging.getLogger(name)
        package.handlers[:] = [ours]
        package.propagate = False
        package.setLevel(logging.DEBUG if verbose else logging.WARNING)
    others = logging.StreamHandler(sys.stderr)
    others.setFormatter(formatter)
    others.setLevel(logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [others]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    if quiet:  # progress bars (ptycho.progress) too; without it they show on a terminal
        os.environ[PROGRESS_ENV] = 'off'
    if not verbose:
        import warnings
        # Third-party deprecation notices are for developers, not for someone running a scan.
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings('ignore', category=category)
        os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # read when TensorFlow loads


def progress_mode(args: argparse.Namespace) -> str:
    """'bar' on a terminal, 'lines' when piped, 'off' with --quiet."""
    if args.quiet:
        return 'off'
    return 'bar' if sys.stdout.isatty() else 'lines'


def print_report(report: Any, heading: str) -> None:
    """The files a command wrote, its notes and its metrics, under ``heading``."""
    from ptycho.run_outputs import format_metrics

    say(heading)
    width = max((len(k) for k in report.files), default=0)
    for label, path in report.files.items():
        say(f'  {label:<{width}}  {path}')
    for note in report.notes:
        say(f'  note: {note}')
    if report.metrics:
        say('Metrics (phase offset removed, registered to ground truth):')
        for line in format_metrics(report.metrics).splitlines():
            say(f'  {line}')
