"""The folder watcher behind ``ptychopinn watch``, with a stand-in handler (no model).

The handler reads each NPZ with numpy, so a file handed over before it was complete would
fail here: the tests land files the ways writers do (atomic rename, moved in from
elsewhere, written slowly in pieces, a Ptychodus pair one file at a time) and check each
is handled once, complete, while a corrupt one is reported in one line and skipped.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from ptycho.watch import (DEFAULT_OUTPUT_NAME, FolderWatcher, Scan, WatchOptions, find_scans,
                          remove_debris, scan_at)

SETTLE_S = 0.5
DEADLINE_S = 20.0


def _npz_bytes(value: float, size: int = 20_000) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, data=np.full(size, value))
    return buffer.getvalue()


class Recorder:
    """Handler: read the scan (NPZ with numpy; a pair by size), write one output file."""

    def __init__(self) -> None:
        self.calls: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, scan: Scan, output_dir: Path) -> str:
        with self.lock:
            self.calls.append(scan.source)
        if scan.source.suffix == '.npz':
            with np.load(scan.source) as data:
                value = float(data['data'][0])
        else:
            value = float(sum(path.stat().st_size for path in scan.files))
        (output_dir / 'value.txt').write_text(f'{value}\n')
        return 'read'


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[Callable[..., tuple[FolderWatcher, Recorder]]]:
    """Start a watcher on ``tmp_path / 'in'`` in a thread; stopped at the end of the test."""
    started: list[tuple[FolderWatcher, threading.Event, threading.Thread]] = []

    def start(**options: object) -> tuple[FolderWatcher, Recorder]:
        root = tmp_path / 'in'
        root.mkdir(exist_ok=True)
        recorder = Recorder()
        watcher = FolderWatcher(root, recorder, options=WatchOptions(
            settle_s=SETTLE_S, tick_s=0.05, poll_s=0.2, **options))  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        started.append((watcher, stop, thread))
        time.sleep(0.3)  # the observer is scheduled
        return watcher, recorder

    yield start
    for _, stop, thread in started:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)


def _value(watcher: FolderWatcher, name: str) -> float:
    return float((watcher.output_root / name / 'value.txt').read_text())


def test_scan_at_knows_scans_from_other_files(tmp_path: Path) -> None:
    root = tmp_path
    out = root / DEFAULT_OUTPUT_NAME
    assert scan_at(root, root / 'a' / 'scan1.npz') == Scan(
        root / 'a' / 'scan1.npz', (root / 'a' / 'scan1.npz',), 'a/scan1')
    pair = scan_at(root, root / 's2' / 'product.h5')
    assert pair is not None and pair.source == root / 's2' and pair.name == 's2'
    assert pair.files == (root / 's2' / 'diffraction.h5', root / 's2' / 'product.h5')
    assert scan_at(root, root / 'diffraction.h5').name == root.name  # a pair in DIR itself
    for ignored in (root / '.scan.abcd1234.npz', root / '.tmp' / 'x.npz', root / 'notes.txt',
                    root / 'x.h5', out / 's1' / 'recon.npz', tmp_path.parent / 'y.npz'):
        assert scan_at(root, ignored, exclude=(out,)) is None, ignored


def test_files_are_handled_once_complete_and_corrupt_ones_reported(
        watching: Callable[..., tuple[FolderWatcher, Recorder]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    watcher, recorder = watching()
    root = watcher.root
    with caplog.at_level(logging.ERROR, logger='ptycho.watch'):
        # Atomic landing inside the folder: a hidden temporary renamed into place.
        (root / '.a.tmp1234x.npz').write_bytes(_npz_bytes(1.0))
        os.replace(root / '.a.tmp1234x.npz', root / 'a.npz')
        # Moved in whole from elsewhere.
        (tmp_path / 'b.npz').write_bytes(_npz_bytes(2.0))
        shutil.move(tmp_path / 'b.npz', root / 'b.npz')
        # Written slowly in pieces (pauses shorter than the settle time).
        data = _npz_bytes(3.0, size=200_000)
        with open(root / 'slow.npz', 'wb') as handle:
            for start in range(0, len(data), len(data) // 6):
                handle.write(data[start:start + len(data) // 6])
                handle.flush()
                time.sleep(SETTLE_S / 3)
        # Corrupt: never a readable NPZ.
        (root / 'bad.npz').write_bytes(b'PK\x03\x04 this is not a zip archive')
        _wait_for(lambda: len(recorder.calls) >= 4, 'four handled files')
        # A Ptychodus pair, one file now and the other later: handled when both are there.
        (root / 'scan5').mkdir()
        (root / 'scan5' / 'diffraction.h5').write_bytes(b'd' * 100)
        time.sleep(3 * SETTLE_S)
        assert root / 'scan5' not in recorder.calls
        (root / 'scan5' / 'product.h5').write_bytes(b'p' * 10)
        _wait_for(lambda: root / 'scan5' in recorder.calls, 'the pair')
        # Still watching after the failure: a new file is handled.
        (tmp_path / 'c.npz').write_bytes(_npz_bytes(4.0))
        shutil.move(tmp_path / 'c.npz', root / 'c.npz')
        _wait_for(lambda: root / 'c.npz' in recorder.calls, 'the file after the corrupt one')
    assert sorted(recorder.calls) == sorted(
        [root / 'a.npz', root / 'b.npz', root / 'slow.npz', root / 'bad.npz', root / 'scan5',
         root / 'c.npz'])  # each once
    assert [_value(watcher, n) for n in ('a', 'b', 'slow', 'c')] == [1.0, 2.0, 3.0, 4.0]
    assert _value(watcher, 'scan5') == 110.0
    assert not (watcher.output_root / 'bad').exists()  # no output for a failed scan
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(root / 'bad.npz') in errors[0], errors
    assert watcher.summary.failed.keys() == {root / 'bad.npz'}
    assert [p.name for p in watcher.output_root.iterdir()] and not [
        p for p in watcher.output_root.rglob('.*')]  # no temporary folders left


def test_a_corrupt_file_that_is_rewritten_is_tried_again(
        watching: Callable[..., tuple[FolderWatcher, Recorder]]) -> None:
    watcher, recorder = watching()
    bad = watcher.root / 'late.npz'
    bad.write_bytes(b'garbage')
    _wait_for(lambda: bad in watcher.summary.failed, 'the report')
    bad.write_bytes(_npz_bytes(7.0))
    _wait_for(lambda: bad in watcher.summary.reconstructed, 'the retry')
    assert recorder.calls == [bad, bad] and _value(watcher, 'late') == 7.0
    assert not watcher.summary.failed


def test_existing_scans_are_processed_first_unless_done_or_left(
        watching: Callable[..., tuple[FolderWatcher, Recorder]], tmp_path: Path) -> None:
    root = tmp_path / 'in'
    root.mkdir()
    (root / 'old.npz').write_bytes(_npz_bytes(5.0))
    (root / 'done.npz').write_bytes(_npz_bytes(6.0))
    done_output = root / DEFAULT_OUTPUT_NAME / 'done'
    done_output.mkdir(parents=True)
    (done_output / 'value.txt').write_text('6.0\n')
    (root / DEFAULT_OUTPUT_NAME / '.x.abcd_123.partial').mkdir()  # debris of a killed run
    watcher, recorder = watching()
    _wait_for(lambda: recorder.calls == [root / 'old.npz'], 'the file present at start')
    assert watcher.summary.kept == [root / 'done.npz']
    assert not (root / DEFAULT_OUTPUT_NAME / '.x.abcd_123.partial').exists()

    other = tmp_path / 'other'
    other.mkdir()
    (other / 'present.npz').write_bytes(_npz_bytes(8.0))
    left = FolderWatcher(other, recorder, options=WatchOptions(process_existing=False))
    left._take_existing()
    assert not left._waiting and other / 'present.npz' in left._handled


def test_polling_mode_sees_new_files(
        watching: Callable[..., tuple[FolderWatcher, Recorder]], tmp_path: Path) -> None:
    watcher, recorder = watching(polling=True)
    (tmp_path / 'p.npz').write_bytes(_npz_bytes(9.0))
    shutil.move(tmp_path / 'p.npz', watcher.root / 'p.npz')
    _wait_for(lambda: recorder.calls == [watcher.root / 'p.npz'], 'the polled file')
    assert _value(watcher, 'p') == 9.0


def test_a_bad_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='does not exist'):
        FolderWatcher(tmp_path / 'missing', Recorder())
    with pytest.raises(ValueError, match="settle_s"):
        WatchOptions(settle_s=-1)


def test_find_scans_skips_the_output_root(tmp_path: Path) -> None:
    (tmp_path / 'a.npz').write_bytes(b'')
    (tmp_path / 'out' / 'a').mkdir(parents=True)
    (tmp_path / 'out' / 'a' / 'recon.npz').write_bytes(b'')
    (tmp_path / 's').mkdir()
    (tmp_path / 's' / 'product.h5').write_bytes(b'')
    (tmp_path / 's' / 'diffraction.h5').write_bytes(b'')
    assert [s.name for s in find_scans(tmp_path, exclude=(tmp_path / 'out',))] == ['a', 's']
    assert remove_debris(tmp_path / 'out') == []
