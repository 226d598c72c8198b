"""PtychoPINN: physics-informed neural network ptychographic reconstruction.

The package root imports nothing heavy: ``ptycho.config``, ``ptycho.raw_data``,
``ptycho.loader`` and the rest of the core use numpy/scipy only. TensorFlow is
imported by the TensorFlow backend modules alone (``ptycho.model``,
``ptycho.tf_helper``, ``ptycho.train_pinn``, ``ptycho.model_manager``,
``ptycho.workflows.components``).
"""

import logging

__version__ = '0.1.0'

logging.getLogger(__name__).addHandler(logging.NullHandler())
