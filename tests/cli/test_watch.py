"""``ptychopinn watch`` as a user runs it: a subprocess following a folder, stopped by Ctrl-C.

Two good scans land (one copied in atomically, one written slowly in pieces) and a corrupt
one: both good ones get infer's outputs in their own folders, the corrupt one is one line
on stderr naming it, the watcher is still running afterwards, and SIGINT ends it with the
CLI's status 130 and a summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_no_temporaries, cli_env, run_cli

PNG = b'\x89PNG\r\n\x1a\n'
DEADLINE_S = 180.0
SETTLE_S = 1.0


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory: pytest.TempPathFactory, small_sim: Path) -> Path:
    """A one-epoch PyTorch model (N=64, n_filters_scale=1)."""
    pytest.importorskip('torch')
    out = tmp_path_factory.mktemp('watch_model')
    result = run_cli('train', '--train-data', small_sim, '--backend', 'pytorch', '--nepochs', 1,
                     '--gridsize', 1, '--n_filters_scale', 1, '--output-dir', out / 'run', cwd=out,
                     timeout=600)
    assert result.returncode == 0, result.stderr
    return out / 'run'


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str,
              log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f'{what}: watcher exit code {proc.returncode}\n'
                                 f'{log.read_text()}')
        time.sleep(0.1)


def test_watch_reconstructs_landing_scans_and_stops_on_ctrl_c(
        tiny_model: Path, small_sim: Path, small_sim_test: Path, tmp_path: Path) -> None:
    watched = tmp_path / 'scans'
    watched.mkdir()
    out = tmp_path / 'recon'
    stdout_path, stderr_path = tmp_path / 'stdout.txt', tmp_path / 'stderr.txt'
    with open(stdout_path, 'w') as stdout, open(stderr_path, 'w') as stderr:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'ptycho.cli', 'watch', str(watched), '--model',
             str(tiny_model), '--output-dir', str(out), '--settle', str(SETTLE_S),
             '--batch-size', '64'], cwd=tmp_path, env=cli_env(), stdout=stdout, stderr=stderr)
    try:
        _wait_for(lambda: 'Watching' in stdout_path.read_text(), proc, 'start-up', stderr_path)

        # Copied in atomically: written beside the folder, then renamed into it.
        staged = tmp_path / 'a.npz'
        shutil.copyfile(small_sim_test, staged)
        os.replace(staged, watched / 'a.npz')
        # Written slowly in pieces, pausing shorter than --settle between them.
        data = small_sim.read_bytes()
        piece = len(data) // 5 + 1
        with open(watched / 'b.npz', 'wb') as handle:
            for start in range(0, len(data), piece):
                handle.write(data[start:start + piece])
                handle.flush()
                time.sleep(SETTLE_S / 4)
        # Corrupt: the start of a zip archive and nothing more.
        (watched / 'broken.npz').write_bytes(data[:4096])

        recon = {name: out / name / 'recon.npz' for name in ('a', 'b')}
        _wait_for(lambda: all(p.is_file() for p in recon.values())
                  and 'broken.npz' in stderr_path.read_text(), proc, 'the three scans',
                  stderr_path)
        time.sleep(0.5)
        assert proc.poll() is None, 'the watcher stopped after a corrupt file'
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=180)  # a loaded machine: the scan in hand finishes first
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    assert proc.returncode == 130, (stdout, stderr)
    assert 'Traceback' not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if 'broken.npz' in line]
    assert len(error_lines) == 1 and 'skipped' in error_lines[0], stderr
    assert 'Stopped: 2 scan(s) reconstructed, 1 skipped' in stdout, stdout
    for name in ('a', 'b'):
        folder = out / name
        assert f'{name}.npz -> {folder}' in stdout
        for png in ('reconstructed_amplitude.png', 'reconstructed_phase.png'):
            assert (folder / png).read_bytes()[:8] == PNG
        assert (folder / 'metrics.json').is_file()  # the NPZ has ground truth, as in infer
        with np.load(folder / 'recon.npz') as result:
            assert np.iscomplexobj(result['object']) and np.isfinite(result['object']).all()
    assert sorted(p.name for p in out.iterdir()) == ['a', 'b']  # nothing for the corrupt one
    assert_no_temporaries(out)


def test_follow_reconstructs_a_growing_file_as_the_stream_does(
        tiny_model: Path, small_sim_test: Path, tmp_path: Path) -> None:
    """``ptychopinn follow``: a SWMR writer appends integer counts in pieces and then marks
    the scan complete; the final image is the no-plan stream's image of the whole scan,
    refined as ``infer`` refines (``--refine_epochs 2`` here)."""
    import threading

    import h5py

    from ptycho.raw_data import RawData
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import inference_config_for, with_refinement
    from ptycho.workflows.streaming import ScanStream

    raw = RawData.from_file(small_sim_test)
    counts = np.round(np.asarray(raw.diff3d, np.float64) ** 2).astype(np.uint32)
    n, N = counts.shape[0], counts.shape[1]
    growing, out = tmp_path / 'scan.h5', tmp_path / 'live'
    f = h5py.File(growing, 'w', libver='latest')
    f.create_dataset('diffraction', shape=(0, N, N), maxshape=(None, N, N), dtype='u4',
                     chunks=(8, N, N))
    for key in ('xcoords', 'ycoords'):
        f.create_dataset(key, shape=(0,), maxshape=(None,), dtype='f8', chunks=(64,))
    f.create_dataset('probeGuess', data=raw.probeGuess)
    f.create_dataset('complete', data=np.zeros(1, np.int8))
    f.swmr_mode = True

    def acquire() -> None:
        for start in range(0, n, 16):
            stop = min(start + 16, n)
            f['diffraction'].resize((stop, N, N))
            f['diffraction'][start:stop] = counts[start:stop]
            for key, values in (('xcoords', raw.xcoords), ('ycoords', raw.ycoords)):
                f[key].resize((stop,))
                f[key][start:stop] = values[start:stop]
            f.flush()
            time.sleep(0.3)
        f['complete'][0] = 1
        f.flush()
        f.close()

    stdout_path, stderr_path = tmp_path / 'stdout.txt', tmp_path / 'stderr.txt'
    writer = threading.Thread(target=acquire)
    with open(stdout_path, 'w') as stdout_file, open(stderr_path, 'w') as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'ptycho.cli', 'follow', str(growing), '--model',
             str(tiny_model), '--output-dir', str(out), '--interval', '0.1',
             '--preview-every', '0.2', '--batch-size', '64', '--refine_epochs', '2'],
            cwd=tmp_path, env=cli_env(),
            stdout=stdout_file, stderr=stderr_file)
        try:
            _wait_for(lambda: 'Following' in stdout_path.read_text(), proc, 'start-up',
                      stderr_path)
            writer.start()  # the scan starts once the model is loaded
            proc.wait(timeout=DEADLINE_S)
        finally:
            if writer.ident is None:
                f.close()  # the scan never started
            else:
                writer.join()
            if proc.poll() is None:
                proc.kill()
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    assert proc.returncode == 0, (stdout, stderr)
    assert f'Scan ended (complete): {n} patterns' in stdout, stdout
    assert 'groups in the image' in stdout, stdout  # the image so far, while it ran
    with np.load(out / 'recon.npz') as result:
        followed = result['object']
        assert len(result['refine_losses']) == 3 and bool(result['probe_refined'])
        assert bool(result['positions_refined'])
    for png in ('reconstructed_amplitude.png', 'reconstructed_phase.png'):
        assert (out / png).read_bytes()[:8] == PNG
    assert_no_temporaries(out)

    backend = get_backend('pytorch')
    model = backend.load(tiny_model)
    config = inference_config_for(model, batch_size=64, refine_epochs=2)
    stream = ScanStream(backend, model, config, raw.probeGuess)
    amplitudes = np.sqrt(counts.astype(np.float32))
    stream.add(amplitudes, np.stack([raw.xcoords, raw.ycoords], axis=1))
    scan = RawData(raw.xcoords, raw.ycoords, None, None, amplitudes, raw.probeGuess, None,
                   diffraction_units='amplitude')
    whole = with_refinement(backend, scan, stream.close(), config).obj
    assert followed.shape == whole.shape
    np.testing.assert_allclose(followed, whole, rtol=0, atol=1e-4 * np.abs(whole).max())
