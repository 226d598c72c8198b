"""Read by mypy only (tests/test_contract_types.py): both backends satisfy the contract."""

from ptycho.tf.backend import TensorFlowBackend
from ptycho.workflows.contract import Backend
from ptycho_torch.backend import TorchBackend

tensorflow_backend: Backend = TensorFlowBackend()
pytorch_backend: Backend = TorchBackend()
