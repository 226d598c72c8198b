"""Legacy path of the TensorFlow physics: an alias of :mod:`ptycho.tf.physics`.

Ptychodus 1.7.0's built-in integration calls ``ptycho.tf_helper.reassemble_position`` in its
worker, and the reference guide imports ``ptycho.tf_helper``. Importing this module puts
:mod:`ptycho.tf.physics` itself in its place in ``sys.modules``, so
``ptycho.tf_helper is ptycho.tf.physics``: one module, and a ``monkeypatch`` of either name
changes the code that runs. New code imports :mod:`ptycho.tf.physics`.
"""

import sys

from ptycho.tf import physics as _implementation
from ptycho.tf.physics import *  # noqa: F401,F403 (its names, for static tools)

sys.modules[__name__] = _implementation
