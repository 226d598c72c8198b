"""PyTorch + Lightning backend of PtychoPINN.

Imports torch, lightning and the numpy core only; never TensorFlow. Submodules are
imported on demand so ``import ptycho_torch`` stays cheap.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
