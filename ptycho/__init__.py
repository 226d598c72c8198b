"""PtychoPINN: physics-informed neural network ptychographic reconstruction.

The package root imports nothing heavy: ``ptycho.config``, ``ptycho.raw_data``,
``ptycho.loader`` and the rest of the core use numpy/scipy only. TensorFlow is
imported by the TensorFlow backend alone, the subpackage :mod:`ptycho.tf` (a peer of
``ptycho_torch``). Its legacy paths ``ptycho.model``, ``ptycho.tf_helper``,
``ptycho.train_pinn``, ``ptycho.model_manager`` and ``ptycho.workflows.components`` are
aliases of its modules, imported only when asked for.
"""

import logging

__version__ = '0.1.0'

logging.getLogger(__name__).addHandler(logging.NullHandler())
