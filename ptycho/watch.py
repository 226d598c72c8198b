"""Follow a folder and reconstruct each scan that lands in it (``ptychopinn watch``).

A scan is an NPZ file (``specs/data_contracts.md``) or a folder holding Ptychodus'
``diffraction.h5`` and ``product.h5``, anywhere below the watched folder. A detector or a
transfer tool writes it over seconds, so a scan counts as complete only when its files
have stopped changing for ``settle_s`` (and no writer holds an HDF5 file open); it is then
handed, once, to the caller's handler (the command line: a model loaded once,
reconstructing each scan). A file that still fails to read is reported in one log line
naming it and what was wrong, and the watcher carries on; it is tried again only if the
file changes. Each scan's outputs go to ``<output root>/<scan name>/``, built in a hidden
temporary folder that is renamed into place, so a reader sees a complete folder or none.

This module imports no deep-learning framework: it knows files, not models. File events
come from ``watchdog`` (OS notifications, or stat polling for network file systems, where
writes from other hosts raise no local notifications).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptycho.ptychodus_io import DIFFRACTION_NAME, PRODUCT_NAME

logger = logging.getLogger(__name__)

NPZ_SUFFIX = '.npz'
DEFAULT_OUTPUT_NAME = 'ptychopinn_recon'
"""Output root inside the watched folder when the caller names none (never watched)."""
_PAIR = (DIFFRACTION_NAME, PRODUCT_NAME)
#: Hidden folders :func:`_atomic_folder` leaves if the process is killed mid-write.
_DEBRIS = re.compile(r'\..+\.[a-z0-9_]{8}\.(partial|old)')

Signature = tuple[tuple[int, int] | None, ...]
"""``(size, mtime_ns)`` of each file of a scan, ``None`` where the file is missing."""
Handler = Callable[['Scan', Path], object]
"""``handler(scan, output_dir)`` writes the scan's outputs into ``output_dir``; what it
returns (e.g. ``'100 patterns'``) is shown after the scan's name when it succeeds."""


@dataclass(frozen=True)
class Scan:
    """One scan: an NPZ file, or a folder with a Ptychodus pair."""

    source: Path
    """The NPZ file, or the folder holding ``diffraction.h5`` + ``product.h5``."""
    files: tuple[Path, ...]
    """What must be complete before it is read."""
    name: str
    """Its output folder, relative to the output root (its path below the watched folder)."""


def watched_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` resolved, or the error a user needs when it is not a folder."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise (NotADirectoryError if root.exists() else FileNotFoundError)(
            f'{root}: the folder to watch does not exist or is not a folder')
    return root


def scan_at(root: Path, path: Path, *, exclude: Sequence[Path] = ()) -> Scan | None:
    """The scan a changed ``path`` belongs to, or None (another file, hidden, excluded).

    Hidden names (``.x``) are the temporaries of atomic writers, ours included.
    """
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    if any(part.startswith('.') for part in relative.parts):
        return None
    if any(path == folder or folder in path.parents for folder in exclude):
        return None
    if path.suffix.lower() == NPZ_SUFFIX:
        return Scan(path, (path,), relative.with_suffix('').as_posix())
    if path.name in _PAIR:
        folder = path.parent
        name = folder.relative_to(root).as_posix()
        return Scan(folder, tuple(folder / n for n in _PAIR),
                    root.name if name == '.' else name)
    return None


def find_scans(root: Path, *, exclude: Sequence[Path] = ()) -> list[Scan]:
    """Every scan below ``root`` now (one per NPZ, one per folder with a pair file)."""
    found: dict[Path, Scan] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(files):
            scan = scan_at(root, Path(folder) / name, exclude=exclude)
            if scan is not None:
                found.setdefault(scan.source, scan)
    return list(found.values())


def signature(scan: Scan) -> Signature:
    """What changes when any file of ``scan`` is written to."""
    out: list[tuple[int, int] | None] = []
    for path in scan.files:
        try:
            stat = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def h5_busy(path: Path) -> bool:
    """True while another process holds ``path`` open for writing (HDF5's file lock).

    Only the lock counts: a file HDF5 cannot read for any other reason is left to the
    reader, whose error names the problem.
    """
    if path.suffix.lower() not in ('.h5', '.hdf5'):
        return False
    import h5py

    try:
        with h5py.File(path, 'r'):
            return False
    except OSError as exc:
        text = str(exc).lower()
        return 'lock' in text or getattr(exc, 'errno', None) == errno.EAGAIN


def _output_is_current(output: Path, scan: Scan) -> bool:
    """``output`` exists and was written after every file of ``scan`` (make's rule)."""
    try:
        written = output.stat().st_mtime_ns
        return all(written >= path.stat().st_mtime_ns for path in scan.files)
    except OSError:
        return False


@contextmanager
def _atomic_folder(target: Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``target`` that replaces it on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.', suffix='.partial'))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.',
                                        suffix='.old'))
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_debris(output_root: Path) -> list[Path]:
    """Delete the temporary folders a killed watcher left below ``output_root``."""
    removed = []
    if output_root.is_dir():
        for path in sorted(output_root.rglob('.*')):
            if path.is_dir() and _DEBRIS.fullmatch(path.name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    for path in removed:
        logger.info('Removed %s, left by an interrupted run', path)
    return removed


@dataclass(frozen=True)
class WatchOptions:
    """How the watcher decides a scan is complete, and what it does at start."""

    settle_s: float = 1.0
    """A scan whose files have not changed for this long is read."""
    tick_s: float = 0.2
    """How often waiting scans are looked at."""
    process_existing: bool = True
    """Reconstruct the scans already in the folder at start (not those whose outputs are
    newer than their files); else leave them unless they change."""
    polling: bool = False
    """Stat the folder every ``poll_s`` instead of OS notifications."""
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        for key in ('settle_s', 'tick_s', 'poll_s'):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and 0 <= value < float('inf')):
                raise ValueError(f'WatchOptions: key {key!r}: expected a number of seconds '
                                 f'>= 0, found {value!r}')


@dataclass
class WatchSummary:
    """What a watcher did so far (readable after Ctrl-C too)."""

    reconstructed: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    kept: list[Path] = field(default_factory=list)
    """Scans found at start whose outputs were already newer than their files."""

    def line(self) -> str:
        parts = [f'{len(self.reconstructed)} scan(s) reconstructed']
        if self.failed:
            parts.append(f'{len(self.failed)} skipped')
        if self.kept:
            parts.append(f'{len(self.kept)} already done at start')
        return ', '.join(parts)


@dataclass
class _Waiting:
    scan: Scan
    signature: Signature | None = None
    since: float = 0.0
    told_incomplete: bool = False


def _watchdog() -> tuple[Any, Any, Any]:
    """(Observer, PollingObserver, FileSystemEventHandler), or an ImportError saying how."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except ImportError as exc:
        raise ImportError(f'watching a folder needs the watchdog package ({exc}); install it '
                          f'with: pip install watchdog') from exc
    return Observer, PollingObserver, FileSystemEventHandler


class FolderWatcher:
    """Calls ``handler`` once for each complete scan below ``root``, until stopped."""

    def __init__(self, root: str | os.PathLike[str], handler: Handler, *,
                 output_root: str | os.PathLike[str] | None = None,
                 options: WatchOptions | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.root = watched_folder(root)
        self.output_root = (Path(output_root).resolve() if output_root is not None
                            else self.root / DEFAULT_OUTPUT_NAME)
        self.handler = handler
        self.options = options or WatchOptions()
        self.notify = notify or logger.info
        self.summary = WatchSummary()
        self._events: queue.Queue[Path] = queue.Queue()
        self._waiting: dict[Path, _Waiting] = {}
        self._handled: dict[Path, Signature] = {}

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> WatchSummary:
        """Watch until ``stop`` is set (or Ctrl-C, which propagates after cleaning up)."""
        stop = stop or threading.Event()
        observer = self._start_observer()
        try:
            self.notify(f'Watching {self.root} for scans (NPZ files, folders with '
                        f'{DIFFRACTION_NAME} + {PRODUCT_NAME}); outputs in {self.output_root}')
            remove_debris(self.output_root)
            self._take_existing()
            while not stop.is_set():
                self._drain_events(self.options.tick_s)
                self._handle_ready()
        finally:
            observer.stop()
            observer.join(5.0)
        return self.summary

    def _start_observer(self) -> Any:
        observer_cls, polling_cls, handler_cls = _watchdog()
        events = self._events

        class _Forward(handler_cls):  # type: ignore[misc, valid-type]
            def on_any_event(self, event: Any) -> None:
                if event.is_directory or event.event_type in ('opened', 'closed_no_write'):
                    return
                for path in (event.src_path, getattr(event, 'dest_path', '')):
                    if path:
                        events.put(Path(os.fsdecode(path)))

        observer = (polling_cls(timeout=self.options.poll_s) if self.options.polling
                    else observer_cls())
        observer.schedule(_Forward(), str(self.root), recursive=True)
        observer.start()  # before listing the folder: nothing lands unseen in between
        return observer

    def _take_existing(self) -> None:
        exclude = (self.output_root,)
        scans = find_scans(self.root, exclude=exclude)
        if not self.options.process_existing:
            for scan in scans:
                self._handled[scan.source] = signature(scan)
            if scans:
                self.notify(f'Leaving the {len(scans)} scan(s) already in {self.root} '
                            f'(reconstructed only if they change)')
            return
        todo = []
        for scan in scans:
            if _output_is_current(self.output_root / scan.name, scan):
                self._handled[scan.source] = signature(scan)
                self.summary.kept.append(scan.source)
            else:
                todo.append(scan)
                self._waiting[scan.source] = _Waiting(scan)
        if todo:
            self.notify(f'{len(todo)} scan(s) already in {self.root}: reconstructing them '
                        f'first')
        if self.summary.kept:
            self.notify(f'{len(self.summary.kept)} scan(s) already reconstructed in '
                        f'{self.output_root} (newer than their files): left as they are')

    def _drain_events(self, timeout: float) -> None:
        try:
            path = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            scan = scan_at(self.root, path, exclude=(self.output_root,))
            if scan is not None and scan.source not in self._waiting:
                self._waiting[scan.source] = _Waiting(scan)
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                return

    def _handle_ready(self) -> None:
        now = time.monotonic()
        for source, waiting in list(self._waiting.items()):
            current = signature(waiting.scan)
            if all(entry is None for entry in current):
                del self._waiting[source]  # deleted (or moved away) before it settled
                continue
            if current != waiting.signature:
                waiting.signature, waiting.since = current, now
                continue
            if now - waiting.since < self.options.settle_s:
                continue
            if None in current:
                if not waiting.told_incomplete:
                    missing = [p.name for p, s in zip(waiting.scan.files, current) if s is None]
                    self.notify(f'{source}: waiting for {", ".join(missing)}')
                    waiting.told_incomplete = True
                continue
            if self._handled.get(source) == current:
                del self._waiting[source]  # an event without new content
                continue
            if any(h5_busy(path) for path in waiting.scan.files):
                waiting.since = now  # a writer still has it open
                continue
            del self._waiting[source]
            self._handle(waiting.scan, current)

    def _handle(self, scan: Scan, current: Signature) -> None:
        """Run the handler into a temporary folder; one log line if it fails."""
        self._handled[scan.source] = current  # retried only when the files change again
        target = self.output_root / scan.name
        tic = time.perf_counter()
        try:
            with _atomic_folder(target) as tmp:
                detail = self.handler(scan, tmp)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the watcher
            message = ' '.join(str(exc).split()) or type(exc).__name__
            message = message.removeprefix(f'{scan.source}: ')  # named once is enough
            logger.debug('Handler failed for %s', scan.source, exc_info=True)
            logger.error('%s: skipped: %s', scan.source, message)
            self.summary.failed[scan.source] = message
            return
        self.summary.failed.pop(scan.source, None)
        self.summary.reconstructed.append(scan.source)
        extra = f'{detail}, ' if detail else ''
        self.notify(f'{scan.source.relative_to(self.root)} -> {target} '
                    f'({extra}{time.perf_counter() - tic:.1f} s)')
