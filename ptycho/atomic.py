"""Atomic file output: write beside the target, then rename into place.

Every file this package writes goes through :func:`atomic_path`, so a crash or Ctrl-C
never leaves a half-written NPZ, PNG, HDF5 or model bundle where a user would find it,
and finished files get the usual permissions (``0o666 & ~umask``, not mkstemp's 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    The temporary name keeps the target's suffixes, so writers that infer the format from
    the extension (``savefig``, ``np.savez``) behave as they would on the target. On any
    exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = ''.join(target.suffixes) or '.tmp'
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f'.{target.stem}.', suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    return write_bytes(target, text.encode('utf-8'))


def copy_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Atomically copy ``source`` to ``target`` (a model bundle, a product file)."""
    import shutil

    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)
