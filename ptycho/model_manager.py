"""Legacy path of the TensorFlow bundle I/O: an alias of :mod:`ptycho.tf.persistence`.

Ptychodus 1.7.0's built-in integration calls ``ptycho.model_manager.save(out_dir)`` right after
``run_cdi_example``. Importing this module puts :mod:`ptycho.tf.persistence` itself in its
place in ``sys.modules``, so ``ptycho.model_manager is ptycho.tf.persistence``: one module with
one registry of the last trained model, and a ``monkeypatch`` of either name changes the code
that runs. New code imports :mod:`ptycho.tf.persistence`.
"""

import sys

from ptycho.tf import persistence as _implementation
from ptycho.tf.persistence import *  # noqa: F401,F403 (its names, for static tools)

sys.modules[__name__] = _implementation
