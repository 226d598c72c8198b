"""Atomic output: a failure leaves the old file and no temporary behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ptycho.atomic import atomic_path, write_text


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
