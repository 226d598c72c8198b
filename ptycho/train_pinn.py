"""Legacy path of the TensorFlow training loop: an alias of :mod:`ptycho.tf.training`.

The reference guide and older scripts import ``ptycho.train_pinn``. Importing this module puts
:mod:`ptycho.tf.training` itself in its place in ``sys.modules``, so
``ptycho.train_pinn is ptycho.tf.training``: one module, and a ``monkeypatch`` of either name
changes the code that runs. New code imports :mod:`ptycho.tf.training`.
"""

import sys

from ptycho.tf import training as _implementation
from ptycho.tf.training import *  # noqa: F401,F403 (its names, for static tools)

sys.modules[__name__] = _implementation
