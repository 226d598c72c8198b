"""Legacy path of the TensorFlow network: an alias of :mod:`ptycho.tf.model`.

The TensorFlow backend lives in the subpackage :mod:`ptycho.tf`, a peer of ``ptycho_torch``;
``ptycho.model`` stays importable because the reference guide and older scripts import it.
Importing this module puts :mod:`ptycho.tf.model` itself in its place in ``sys.modules``, so
``ptycho.model is ptycho.tf.model``: there is one module, and ``monkeypatch.setattr(ptycho.model,
...)`` changes the code that runs. New code imports :mod:`ptycho.tf.model`.
"""

import sys

from ptycho.tf import model as _implementation
from ptycho.tf.model import *  # noqa: F401,F403 (its names, for static tools)

sys.modules[__name__] = _implementation
