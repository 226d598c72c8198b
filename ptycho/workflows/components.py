"""Legacy path of the TensorFlow workflows: an alias of :mod:`ptycho.tf.workflows`.

Ptychodus 1.7.0's built-in integration calls ``run_cdi_example``, ``save_outputs`` and
``load_inference_bundle`` from ``ptycho.workflows.components`` in its worker, and the reference
guide imports them from here. Importing this module puts :mod:`ptycho.tf.workflows` itself in
its place in ``sys.modules``, so ``ptycho.workflows.components is ptycho.tf.workflows``: one
module, and a ``monkeypatch`` of either name changes the code that runs. ``import
ptycho.workflows`` does not import it. New code imports :mod:`ptycho.tf.workflows`.
"""

import sys

from ptycho.tf import workflows as _implementation
from ptycho.tf.workflows import *  # noqa: F401,F403 (its names, for static tools)

sys.modules[__name__] = _implementation
