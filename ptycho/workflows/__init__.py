"""Run-level workflows. Importing this package loads no backend.

``ptycho.workflows.components`` is the TensorFlow backend (imports TensorFlow);
``ptycho.workflows.backend_selector`` is the dispatcher, which imports a backend only
after the config has chosen it.
"""
