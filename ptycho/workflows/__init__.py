"""Run-level workflows. Importing this package loads no backend.

``ptycho.workflows.contract`` is the backend contract and
``ptycho.workflows.backend_selector`` the dispatcher, which imports a backend only after the
config has chosen it. ``ptycho.workflows.components`` is the legacy path of the TensorFlow
workflows (an alias of :mod:`ptycho.tf.workflows`); this package does not import it.
"""
