"""Atomic output: a failure leaves the old file and no temporary behind; data reach the
disk before the rename; what a killed writer left is recognised and cleared."""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from ptycho.atomic import (atomic_path, copy_file, find_temporaries, remove_stale_temporaries,
                           temporary_pattern, temporary_target, write_bytes, write_text)


def test_write_text_creates_folders_and_normal_permissions(tmp_path: Path) -> None:
    target = write_text(tmp_path / 'a' / 'b.yaml', 'x: 1\n')
    assert target.read_text() == 'x: 1\n'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_failure_keeps_previous_content_and_removes_temporary(tmp_path: Path) -> None:
    target = tmp_path / 'recon.npz'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b'half')
            raise RuntimeError('boom')
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['recon.npz']


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path: Path) -> None:
    with atomic_path(tmp_path / 'figure.png') as tmp:
        assert tmp.name.endswith('.png') and tmp.parent == tmp_path
        tmp.write_bytes(b'png')
    assert (tmp_path / 'figure.png').read_bytes() == b'png'


# --------------------------------------------------------------------- durability (fsync)
def _record_fsync_and_replace(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record, in order, each fsync (inode, is-folder) and each rename."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(('fsync', info.st_ino, stat.S_ISDIR(info.st_mode)))
        real_fsync(fd)

    def replace(src, dst) -> None:
        real_replace(src, dst)
        events.append(('replace', Path(dst).name))

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    return events


@pytest.mark.parametrize('write', ['write_bytes', 'copy_file', 'atomic_path'])
def test_data_synced_before_rename_and_folder_after(tmp_path: Path, write: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / 'source.bin'
    source.write_bytes(b'payload')
    events = _record_fsync_and_replace(monkeypatch)
    target = tmp_path / 'out' / 'wts.h5.zip'
    if write == 'write_bytes':
        write_bytes(target, b'payload')
    elif write == 'copy_file':
        copy_file(source, target)
    else:
        with atomic_path(target) as tmp, open(tmp, 'wb') as handle:  # writers that open by path
            handle.write(b'payload')
    assert target.read_bytes() == b'payload'
    assert events == [('fsync', target.stat().st_ino, False), ('replace', 'wts.h5.zip'),
                      ('fsync', target.parent.stat().st_ino, True)]


def test_failed_fsync_names_the_file_and_keeps_the_old_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / 'recon.npz'
    target.write_bytes(b'old')

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, 'Input/output error')

    monkeypatch.setattr(os, 'fsync', broken)
    with pytest.raises(OSError, match=r'\.recon\..*\.npz') as info:
        write_bytes(target, b'new')
    assert info.value.errno == errno.EIO
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['recon.npz']


# ------------------------------------------------------------ leftovers of a killed writer
def _leftover(target: Path, age_s: float = 60.0) -> Path:
    """What ``kill -9`` inside ``atomic_path(target)`` leaves: its temporary, half written."""
    prefix, suffix = f'.{target.stem}.', ''.join(target.suffixes) or '.tmp'
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    os.write(fd, b'half')
    os.close(fd)
    then = time.time() - age_s
    os.utime(name, (then, then))
    return Path(name)


@pytest.mark.parametrize('name', ['wts.h5.zip', 'last.ckpt', 'epoch=002.ckpt', 'config.yaml',
                                  'Makefile', 'a b.tar.gz'])
def test_the_temporary_name_pattern_is_the_one_atomic_path_uses(tmp_path: Path,
                                                               name: str) -> None:
    with atomic_path(tmp_path / name) as tmp:
        assert temporary_pattern(tmp_path / name).fullmatch(tmp.name)
        assert temporary_target(tmp) is not None
        assert find_temporaries(tmp_path) == [tmp]
    assert find_temporaries(tmp_path) == []


def test_cleanup_removes_only_stale_temporaries_of_ours(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle, ckpt = tmp_path / 'wts.h5.zip', tmp_path / 'last.ckpt'
    bundle.write_bytes(b'complete bundle')
    stale = [_leftover(bundle), _leftover(bundle), _leftover(ckpt)]
    fresh = _leftover(tmp_path / 'recon.npz', age_s=0.0)  # a writer may still be at it
    unrelated = ['.gitignore', '.config.yaml', '.wts.h5.zip', '.wts.h5.ABCDEFGH.h5.zip',
                 '.wts.h5.abcdefgh.zip', '.last.abcdefg.ckpt', 'last.abcdefgh.ckpt']
    for name in unrelated:
        (tmp_path / name).write_text('keep')
        os.utime(tmp_path / name, (0, 0))
    (tmp_path / '.last.abcdefgh.ckpt').mkdir()  # a folder is never ours

    with caplog.at_level(logging.INFO, logger='ptycho.atomic'):
        removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {'wts.h5.zip', fresh.name, '.last.abcdefgh.ckpt', *unrelated}
    assert bundle.read_bytes() == b'complete bundle'
    for path in stale:
        assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

    os.utime(fresh, (0, 0))
    assert remove_stale_temporaries(tmp_path, older_than=0.0) == [fresh]


def test_cleanup_of_a_target_leaves_other_targets_temporaries(tmp_path: Path) -> None:
    bundle, ckpt = tmp_path / 'wts.h5.zip', tmp_path / 'last.ckpt'
    mine, other = _leftover(bundle), _leftover(ckpt)
    assert remove_stale_temporaries(bundle) == [mine]  # the target need not exist
    assert not mine.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / 'missing-folder') == []


def test_write_bundle_clears_a_killed_save_first(tmp_path: Path) -> None:
    from ptycho.bundle import BUNDLE_NAME, read_bundle, write_bundle
    from ptycho.config.config import TrainingConfig, to_dict

    leftover = _leftover(tmp_path / BUNDLE_NAME)
    path = write_bundle(tmp_path, 'pytorch', {'weights.pt': b'w'},
                        config=to_dict(TrainingConfig(backend='pytorch')),
                        intensity_scale=1.0, model_names=['m'])
    assert not leftover.exists() and find_temporaries(tmp_path) == []
    assert read_bundle(path).files == {'weights.pt': b'w'}
