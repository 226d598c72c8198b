"""The backend contract is type-checked: mypy on the contract, both implementations and the
dispatcher, with an assignment of each backend to ``Backend`` (a structural check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ['ptycho/workflows/contract.py', 'ptycho/workflows/backend_selector.py',
           'ptycho/tf/backend.py', 'ptycho_torch/backend.py', 'ptycho/config/config.py',
           'tests/typecheck/backend_conformance.py']


def test_both_backends_satisfy_the_contract() -> None:
    run = subprocess.run([sys.executable, '-m', 'mypy', '--follow-imports=skip',
                          '--ignore-missing-imports', '--no-incremental', *CHECKED],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert 'Success' in run.stdout


def test_the_dispatcher_hands_out_backends_that_are_the_contract() -> None:
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import Backend

    for name in ('tensorflow', 'pytorch'):
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
    with pytest.raises(ValueError, match="expected one of \\['tensorflow', 'pytorch'\\]"):
        get_backend('jax')
