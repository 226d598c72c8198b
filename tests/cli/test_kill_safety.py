"""``kill -9`` of a real torch training run mid-write loses nothing and leaves no debris.

A run is killed (SIGKILL, a real subprocess) while it writes ``last.ckpt`` and, later,
while it writes the final ``wts.h5.zip``. After each kill the last complete checkpoint
and bundle still load; the next start removes the temporaries the kill left; and
``--resume`` ends where an uninterrupted run with the same seed and epochs ends.

To stop at exactly those moments, a ``sitecustomize`` in the test's own folder (imported
only by these subprocesses) wraps :func:`ptycho.atomic.atomic_path`: once the n-th write
of a named file has its temporary complete, but before the rename, it writes a marker
file and sleeps until killed. The library itself has no test hooks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import assert_no_temporaries, cli_env, run_cli

from ptycho.atomic import STALE_AFTER_S, find_temporaries

KILL_AT = 'PTYCHOPINN_TEST_KILL_AT'
KILL_MARKER = 'PTYCHOPINN_TEST_KILL_MARKER'
PAUSE_HOOK = f'''"""Test harness only: pause inside atomic_path so the test can SIGKILL the run."""
import contextlib
import os
import time

if os.environ.get({KILL_AT!r}):
    import ptycho.atomic as _atomic

    _name, _nth = os.environ[{KILL_AT!r}].rsplit(':', 1)
    _marker = os.environ[{KILL_MARKER!r}]
    _real = _atomic.atomic_path
    _seen = [0]

    @contextlib.contextmanager
    def _paused(target):
        with _real(target) as tmp:
            yield tmp
            if os.path.basename(os.fspath(target)) == _name:
                _seen[0] += 1
                if _seen[0] == int(_nth):
                    with open(_marker + '.part', 'w') as handle:
                        handle.write(str(tmp))
                    os.replace(_marker + '.part', _marker)
                    time.sleep(600)

    _atomic.atomic_path = _paused
'''
# Tiny and fast: 48 groups of 64x64, 3 batches per epoch, no validation, no logger.
TRAIN_ARGS = ('--backend', 'pytorch', '--n_groups', 48, '--gridsize', 1, '--n_filters_scale', 1,
              '--batch_size', 16, '--validation_split', 0, '--logger', 'none',
              '--accelerator', 'cpu', '--probe_trainable', 'no', '--subsample_seed', 7)


def _train(*args: object, cwd: Path) -> str:
    result = run_cli('train', *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stderr


def _train_until_killed(hook_dir: Path, kill_at: str, *args: object, cwd: Path) -> Path:
    """Start ``train``, SIGKILL it inside the write ``kill_at`` names; the temporary it left."""
    marker = cwd / f'killed-at-{kill_at.replace(":", "-")}'
    env = {**cli_env(hook_dir), KILL_AT: kill_at, KILL_MARKER: str(marker)}
    log = cwd / f'{marker.name}.log'
    with open(log, 'w') as output:
        proc = subprocess.Popen([sys.executable, '-m', 'ptycho.cli', 'train', '-v',
                                 *map(str, args)], cwd=cwd, env=env, stdout=output,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not marker.exists():
                assert proc.poll() is None, f'run ended before {kill_at}: {log.read_text()}'
                assert time.monotonic() < deadline, f'no {kill_at} write: {log.read_text()}'
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    temporary = Path(marker.read_text())
    assert temporary.exists(), 'the kill should leave the half-done write behind'
    # The next start comes later than STALE_AFTER_S in practice (a user, a scheduler);
    # age the debris instead of sleeping, so the live-writer guard does not keep it.
    past = time.time() - STALE_AFTER_S - 1
    os.utime(temporary, (past, past))
    return temporary


def _weights(bundle_dir: Path) -> dict:
    from ptycho_torch.workflows.components import load_inference_bundle_torch

    models, _config = load_inference_bundle_torch(bundle_dir)
    return {k: v.detach().clone() for k, v in models['lightning_module'].state_dict().items()}


def _checkpoint_epoch(path: Path) -> int:
    import torch

    from ptycho_torch.model import PtychoPINN_Lightning

    PtychoPINN_Lightning.load_from_checkpoint(path, map_location='cpu')  # loads as a model
    return int(torch.load(path, map_location='cpu', weights_only=False)['epoch'])


@pytest.mark.slow
def test_sigkill_during_checkpoint_and_final_save(tmp_path: Path, small_sim: Path) -> None:
    pytest.importorskip('torch')
    import torch

    hook_dir = tmp_path / 'hook'
    hook_dir.mkdir()
    (hook_dir / 'sitecustomize.py').write_text(PAUSE_HOOK)

    # What the interrupted run must end at: 3 epochs in one go.
    reference = tmp_path / 'reference'
    _train('--train-data', small_sim, *TRAIN_ARGS, '--nepochs', 3, '-o', reference,
           cwd=tmp_path)

    # One complete epoch (bundle + checkpoint), then kill the resumed run while it writes
    # last.ckpt after its second epoch (epoch index 2).
    out = tmp_path / 'run'
    _train('--train-data', small_sim, *TRAIN_ARGS, '--nepochs', 1, '-o', out, cwd=tmp_path)
    ckpt = out / 'checkpoints' / 'last.ckpt'
    first_bundle = (out / 'wts.h5.zip').read_bytes()
    left = _train_until_killed(hook_dir, 'last.ckpt:2', '-o', out, '--nepochs', 3, '--resume',
                               cwd=tmp_path)
    assert left.parent == ckpt.parent and left.name.startswith('.last.')
    assert _checkpoint_epoch(ckpt) == 1  # the last complete one: epoch index 1
    assert (out / 'wts.h5.zip').read_bytes() == first_bundle
    _weights(out)  # the last complete bundle loads

    # Restart, killed this time while it writes the final bundle. It removed the
    # checkpoint debris first and finished training, so last.ckpt holds epoch index 2.
    left_bundle = _train_until_killed(hook_dir, 'wts.h5.zip:1', '-o', out, '--resume',
                                      cwd=tmp_path)
    assert not left.exists()
    assert find_temporaries(ckpt.parent) == []
    assert f'Removed {left}' in (tmp_path / 'killed-at-wts.h5.zip-1.log').read_text()
    assert left_bundle.parent == out and left_bundle.name.startswith('.wts.h5.')
    assert _checkpoint_epoch(ckpt) == 2
    assert (out / 'wts.h5.zip').read_bytes() == first_bundle  # untouched, still loads
    _weights(out)

    # The next start clears the debris and, with nothing left to train, writes the bundle.
    log = _train('-v', '-o', out, '--resume', cwd=tmp_path)
    assert f'Removed {left_bundle}' in log
    assert_no_temporaries(out)
    history = json.loads((out / 'history.json').read_text())
    expected = json.loads((reference / 'history.json').read_text())
    assert len(history['train_loss']) == 3
    assert history['train_loss'] == pytest.approx(expected['train_loss'], rel=1e-6, abs=1e-7)
    weights, expected_weights = _weights(out), _weights(reference)
    assert weights.keys() == expected_weights.keys()
    for name, value in weights.items():
        torch.testing.assert_close(value, expected_weights[name], rtol=1e-5, atol=1e-6,
                                   msg=f'{name} differs from the uninterrupted run')
