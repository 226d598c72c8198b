"""``python -m ptychopinn_plugin``: the same as the ``ptychodus-pinn`` console script."""

import sys

from ptychopinn_plugin.launcher import main

if __name__ == '__main__':
    sys.exit(main())
