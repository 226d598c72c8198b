"""The TensorFlow (Keras 3) backend, a peer of ``ptycho_torch``.

:mod:`ptycho.tf.backend` implements the backend contract
(:mod:`ptycho.workflows.contract`). The network, physics and training code still live at
their historical paths (``ptycho.model``, ``ptycho.tf_helper``, ``ptycho.train_pinn``,
``ptycho.model_manager``, ``ptycho.workflows.components``), which Ptychodus' built-in
library and the reference guide import.
"""
