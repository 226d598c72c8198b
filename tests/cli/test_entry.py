"""The entry point itself: cheap to import, runnable as a module, help for every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO, cli_env, run_cli


def test_import_is_cheap_and_loads_no_backend() -> None:
    code = ('import sys, ptycho.cli; '
            'print(sorted(m for m in ("torch", "tensorflow", "lightning", "matplotlib", '
            '"scipy") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=cli_env(),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == '[]'


def test_help_for_every_command(tmp_path: Path) -> None:
    result = run_cli('--help', cwd=tmp_path)
    assert result.returncode == 0
    for command in ('simulate', 'train', 'infer', 'evaluate', 'demo', 'watch'):
        assert command in result.stdout
    result = run_cli('train', '--help', cwd=tmp_path)
    assert result.returncode == 0
    assert '--gaussian_smoothing_sigma' in result.stdout and '--resume' in result.stdout
