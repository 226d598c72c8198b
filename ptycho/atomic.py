"""Atomic, durable file output: write beside the target, flush to disk, rename into place.

Every file this package writes goes through :func:`atomic_path`, so a crash or Ctrl-C
never leaves a half-written NPZ, PNG, HDF5 or model bundle where a user would find it,
and finished files get the usual permissions (``0o666 & ~umask``, not mkstemp's 0600).
The data are fsynced before the rename and the folder after it, so a file reported as
written survives a power cut. A ``kill -9`` mid-write leaves only the temporary
(``.<stem>.<8 random chars><suffixes>``); :func:`remove_stale_temporaries` clears those
at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

logger = logging.getLogger(__name__)

#: A temporary whose last write is newer than this may belong to a live writer: kept.
STALE_AFTER_S = 5.0
#: The random part ``tempfile.mkstemp`` puts in a name: 8 of these characters.
_RANDOM = '[a-z0-9_]{8}'
_RANDOM_PART = re.compile(_RANDOM)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_affixes(target: Path) -> tuple[str, str]:
    """The (prefix, suffix) :func:`atomic_path` gives the temporaries of ``target``."""
    return f'.{target.stem}.', ''.join(target.suffixes) or '.tmp'


def temporary_pattern(target: str | os.PathLike[str]) -> re.Pattern[str]:
    """The exact name pattern of ``target``'s temporaries (without the folder)."""
    prefix, suffix = _temp_affixes(Path(target))
    return re.compile(re.escape(prefix) + _RANDOM + re.escape(suffix))


def temporary_target(path: str | os.PathLike[str]) -> Path | None:
    """The target a temporary named like ``path`` would replace, or None if it is not one.

    A name counts only if :func:`atomic_path` would produce it for that target, so ordinary
    dotfiles (``.gitignore``, ``.config.yaml``) never match.
    """
    path = Path(path)
    name = path.name
    for stem, suffix in _iter_candidates(name):
        targets = [stem + suffix[suffix.rfind('.'):]]
        if suffix == '.tmp':
            targets.append(stem)  # a target without suffix also gets '.tmp'
        for candidate in targets:
            if temporary_pattern(candidate).fullmatch(name):
                return path.with_name(candidate)
    return None


def _iter_candidates(name: str) -> Iterator[tuple[str, str]]:
    """Every (stem, suffix) split of ``.<stem>.<random><suffix>`` that ``name`` allows."""
    if not name.startswith('.'):
        return
    for dot in range(2, len(name) - 9):
        if name[dot] == '.' and _RANDOM_PART.fullmatch(name[dot + 1:dot + 9]) \
                and name[dot + 9] == '.':
            yield name[1:dot], name[dot + 9:]


def find_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Temporaries of :func:`atomic_path` directly inside ``directory`` (any age)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and temporary_target(entry.path) is not None:
                found.append(Path(entry.path))
    return sorted(found)


def remove_stale_temporaries(*locations: str | os.PathLike[str],
                             older_than: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporaries a killed writer left; return the paths removed.

    Each location is a folder (every temporary of ours directly inside it) or a target
    file (only its own temporaries). A temporary written to within ``older_than`` seconds
    may belong to a writer still running, so it is kept. Failures to delete are logged,
    never raised: stale debris must not stop a run.
    """
    removed: list[Path] = []
    now = time.time()
    for location in locations:
        location = Path(location)
        if location.is_dir():
            candidates: Iterable[Path] = find_temporaries(location)
        else:
            pattern = temporary_pattern(location)
            candidates = [path for path in find_temporaries(location.parent)
                          if pattern.fullmatch(path.name)]
        for path in candidates:
            try:
                if now - path.stat(follow_symlinks=False).st_mtime < older_than:
                    logger.debug('Keeping %s: written to in the last %.0f s', path, older_than)
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning('Could not remove the stale temporary %s: %s', path, exc)
                continue
            logger.info('Removed %s, left by an interrupted write of %s', path,
                        temporary_target(path))
            removed.append(path)
    return removed


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` to disk (a file's data, or a folder's entries after a rename)."""
    if directory and os.name == 'nt':
        return  # Windows cannot open folders for fsync; NTFS journals renames itself
    flags = os.O_RDONLY if os.name != 'nt' else os.O_RDWR
    if directory:
        flags |= getattr(os, 'O_DIRECTORY', 0)
    try:
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if directory and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            # Some file systems cannot sync folders; the file's own data are already synced.
            logger.debug('fsync of folder %s not supported: %s', path, exc)
            return
        raise OSError(exc.errno, f'could not flush to disk: {exc.strerror}', str(path)) from exc


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    The temporary name keeps the target's suffixes, so writers that infer the format from
    the extension (``savefig``, ``np.savez``) behave as they would on the target. After the
    body the temporary is fsynced, renamed over ``target`` and the folder fsynced. On any
    exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_path(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_path(target.parent, directory=True)


def write_bytes(target: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
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
