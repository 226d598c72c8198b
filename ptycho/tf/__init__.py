"""The TensorFlow (Keras 3) backend, a peer of ``ptycho_torch``.

* :mod:`ptycho.tf.backend`: the backend contract (:mod:`ptycho.workflows.contract`);
* :mod:`ptycho.tf.model`: the Keras network with the physics as layers, and the losses;
* :mod:`ptycho.tf.physics`: the TensorFlow twin of the numpy reference :mod:`ptycho.physics`;
* :mod:`ptycho.tf.training`: the Keras training loop; :mod:`ptycho.tf.checkpoint` and
  :mod:`ptycho.tf.training_logs` its resumable checkpoint and run logs;
* :mod:`ptycho.tf.persistence`: ``wts.h5.zip`` bundles;
* :mod:`ptycho.tf.workflows`: train / load / reconstruct / save outputs, the functions
  Ptychodus 1.7.0's built-in integration calls.

Importing this package (or :mod:`ptycho.tf.backend`, :mod:`ptycho.tf.workflows`) loads no
TensorFlow; the other modules do. The historical paths ``ptycho.model``, ``ptycho.tf_helper``,
``ptycho.train_pinn``, ``ptycho.model_manager`` and ``ptycho.workflows.components``, which
Ptychodus' built-in library and the reference guide import, are aliases of
:mod:`ptycho.tf.model`, :mod:`~ptycho.tf.physics`, :mod:`~ptycho.tf.training`,
:mod:`~ptycho.tf.persistence` and :mod:`~ptycho.tf.workflows`: each puts the module itself in
its place in ``sys.modules``.
"""
