"""PyTorch + Lightning backend of PtychoPINN.

Imports torch, lightning and the numpy core only; never TensorFlow. Submodules are
imported on demand so ``import ptycho_torch`` stays cheap.
"""

import logging
import os

# OpenMP threads spin while waiting by default. On a shared CPU (beamline workstation,
# cluster node, CI) that spinning competes with other processes for the same cores: a
# training step measured 4-25x slower at load 8 on 2 cores. Passive waiting costs little on
# an idle machine. It only takes effect if set before torch loads its OpenMP runtime, so it
# is done here, and a value set by the user always wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

logging.getLogger(__name__).addHandler(logging.NullHandler())
