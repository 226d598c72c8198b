"""``python -m ptycho.cli`` (what ``torchrun -m ptycho.cli`` starts on every rank)."""

import sys

from ptycho.cli import main

sys.exit(main())
