"""``ptychopinn``: simulate, train, infer, evaluate, demo, watch, follow.

One module per command (``add_parser`` declares its flags, ``run`` does it); the parser
pieces, the run config, backend access, output, Ctrl-C handling and error reporting are
shared modules beside them. The command imports only the numpy core at start-up;
TensorFlow or torch load when a command actually trains or reconstructs, through
``ptycho.workflows.backend_selector``. User mistakes (a missing file, a bad flag value, data
that break the contract, a bundle from the other backend) end with exit status 2 and one
line on stderr; Ctrl-C during training ends with status 130 and the command that resumes it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ptycho.cli import demo, evaluate, follow, infer, simulate, train, watch
from ptycho.cli.errors import PROG, UsageError, report_error
from ptycho.cli.output import setup_logging
from ptycho.cli.parser import Parser

__all__ = ['PROG', 'build_parser', 'main']

#: The subcommands in the order ``--help`` lists them.
COMMANDS = {'simulate': simulate, 'train': train, 'infer': infer, 'evaluate': evaluate,
            'demo': demo, 'watch': watch, 'follow': follow}


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptychopinn`` parser (subcommands with their flags)."""
    parser = Parser(prog=PROG, allow_abbrev=False,
                    description='PtychoPINN: physics-informed neural-network ptychography.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptychopinn`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = '-v' in argv or '--verbose' in argv
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:
            raise UsageError(f'unrecognized arguments: {" ".join(extra)} '
                             f'(see {PROG} {args.command} --help)')
        setup_logging(args.verbose, args.quiet)
        return COMMANDS[args.command].run(args, argv)
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - each gets its one line
        return report_error(exc, verbose)
