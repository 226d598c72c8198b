"""bench/gpu.py runs end to end at tiny sizes (on a GPU machine the same script measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(REPO / 'bench' / 'gpu.py'), '--smoke', '--sizes',
                          '64', '--output-dir', str(tmp_path)], capture_output=True, text=True,
                         timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for backend in ('pytorch', 'tensorflow'):
        assert f'{backend}: measuring on ' in run.stdout
        (path,) = tmp_path.glob(f'gpu_{backend}_*_smoke.json')
        result = json.loads(path.read_text())
        assert result['device'] in ('cpu', 'cuda', 'cuda:0')
        row = result['N=64']['float32']
        assert min(row['with_backprojection'].values()) > 0 and row['train'] > 0
        assert row['end_to_end']['patterns'] == 32 and row['end_to_end']['patterns_per_s'] > 0
