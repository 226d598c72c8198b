"""Follow one scan whose HDF5 file grows while it is acquired (``ptychopinn follow``).

A detector pipeline appends each pattern and its position to one HDF5 file; this module
reads what is new every ``interval_s`` and hands it to a
:class:`ptycho.workflows.streaming.ScanStream`, so the image forms while the scan runs.

The growing file (keys as the NPZ contract of ``specs/data_contracts.md``):

- ``diffraction`` (n, N, N), growing along axis 0: amplitudes, or detector counts (told
  from the first patterns as for an NPZ file: an integer dtype or whole-number floats; a
  root attribute ``diffraction_units`` = ``'amplitude'``/``'counts'`` says it outright);
  counts become their square root, said once in the log;
- ``xcoords``, ``ycoords`` (n,), growing with it: patch centres in object pixels; a pattern
  counts as arrived once its frame and both coordinates are in the file;
- ``probeGuess`` (N, N) complex, or the probe passed separately;
- the end of the scan: a root attribute ``n_positions`` (the planned count, reached), or
  ``complete`` (a root attribute, or a one-element dataset, set true by the writer), or no
  growth for ``idle_s``.

The writer should use HDF5's single-writer/multiple-reader mode (``swmr_mode = True``, the
mode detector file writers offer): the reader then sees a consistent file at every moment.
SWMR forbids new attributes once it is on, so a writer announces the end through a
``complete`` dataset created up front, or through ``n_positions``. A writer that opens,
appends and closes the file each time also works. A read that fails half-way (a writer
without SWMR caught mid-write) is retried at the next poll, never fatal.

This module imports no deep-learning framework; the stream's backend does the work.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

DIFFRACTION_KEY = 'diffraction'
X_KEY, Y_KEY = 'xcoords', 'ycoords'
PROBE_KEY = 'probeGuess'
TOTAL_KEY = 'n_positions'
COMPLETE_KEY = 'complete'
UNITS_KEY = 'diffraction_units'


@dataclass(frozen=True)
class FollowOptions:
    """How often to look at the file, when to call the scan over, how often to show it."""

    interval_s: float = 0.5
    """Seconds between looks at the file."""
    idle_s: float = 60.0
    """The scan is over when the file has not grown for this long (no end marker seen)."""
    preview_s: float = 5.0
    """Seconds between previews handed to the caller while the scan runs."""
    max_chunk: int = 256
    """At most this many new patterns are read and reconstructed in one step."""
    settle_s: float = 0.2
    """A pattern is read once the file has shown it for this long. Under SWMR the new
    length of a dataset can reach a reader before the data written into it (the reader then
    finds the fill value, zeros, where the last coordinates belong: seen in this project's
    tests); the writer's flush lands well within this. A ``complete`` marker lifts the
    wait: the writer sets it after its last flush."""

    def __post_init__(self) -> None:
        for name in ('interval_s', 'idle_s', 'preview_s'):
            if not getattr(self, name) > 0:
                raise ValueError(f'follow: {name} must be > 0, found {getattr(self, name)}')
        if not self.settle_s >= 0:
            raise ValueError(f'follow: settle_s must be >= 0, found {self.settle_s}')
        if self.max_chunk < 1:
            raise ValueError(f'follow: max_chunk must be >= 1, found {self.max_chunk}')


@dataclass(frozen=True)
class Frames:
    """Patterns new since the last read: amplitudes (n, N, N) and centres (n, 2)."""

    diffraction: NDArray[np.float32]
    positions_xy: NDArray[np.float64]
    first: int
    """Index of the first of them in the scan."""


class GrowingScanFile:
    """Reads the patterns of a growing HDF5 scan file that it has not read before."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.read_count = 0
        self.counts: bool | None = None
        self._file: Any = None
        self._looks: list[tuple[float, int]] = []
        """(time, patterns available) of recent looks, oldest first (see :meth:`settled`)."""

    # -- file handling -----------------------------------------------------------------
    def _open(self) -> Any:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, 'r', swmr=True)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> 'GrowingScanFile':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dataset(self, f: Any, key: str) -> Any:
        if key not in f:
            return None
        dset = f[key]
        if getattr(dset, 'refresh', None) is not None:
            dset.refresh()  # SWMR: see what the writer has flushed since the last look
        return dset

    # -- reading -----------------------------------------------------------------------
    def probe(self) -> NDArray[np.complex64] | None:
        """The file's ``probeGuess``, or None when it has none (yet)."""
        f = self._open()
        dset = self._dataset(f, PROBE_KEY)
        return None if dset is None else np.asarray(dset[()], np.complex64)

    def available(self) -> int:
        """Patterns in the file whose frame and both coordinates are there."""
        f = self._open()
        sets = [self._dataset(f, k) for k in (DIFFRACTION_KEY, X_KEY, Y_KEY)]
        if any(d is None for d in sets):
            return 0
        diffraction = sets[0]
        if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2]:
            raise ValueError(f'{self.path}: key "{DIFFRACTION_KEY}": expected (n, N, N) '
                             f'patterns, found shape {diffraction.shape}')
        return int(min(len(d) for d in sets))

    def settled(self, now: float, settle_s: float) -> int:
        """Patterns the file already showed whole at a look ``settle_s`` or more before
        ``now`` (:attr:`FollowOptions.settle_s` says why a new pattern waits)."""
        self._looks.append((now, self.available()))
        while len(self._looks) > 1 and now - self._looks[1][0] >= settle_s:
            self._looks.pop(0)
        when, count = self._looks[0]
        return count if now - when >= settle_s else 0

    def expected(self) -> int | None:
        """The planned number of patterns (root attribute ``n_positions``), if given."""
        value = self._open().attrs.get(TOTAL_KEY)
        return None if value is None else int(value)

    def complete(self) -> bool:
        """True when the writer has marked the scan complete."""
        f = self._open()
        if COMPLETE_KEY in f.attrs:
            return bool(np.asarray(f.attrs[COMPLETE_KEY]).any())
        dset = self._dataset(f, COMPLETE_KEY)
        return dset is not None and dset.size > 0 and bool(np.asarray(dset[()]).any())

    def _are_counts(self, f: Any, first: NDArray) -> bool:
        """Counts or amplitudes, decided once from the first patterns as the NPZ contract
        decides (``looks_like_counts``), unless the root attribute ``diffraction_units``
        says which."""
        from ptycho.raw_data import DIFFRACTION_UNITS, looks_like_counts

        units = f.attrs.get(UNITS_KEY, 'auto')
        units = units.decode() if isinstance(units, bytes) else str(units)
        if units not in DIFFRACTION_UNITS:
            raise ValueError(f'{self.path}: attribute "{UNITS_KEY}": expected one of '
                             f'{list(DIFFRACTION_UNITS)}, found {units!r}')
        counts = units == 'counts' or (units == 'auto' and looks_like_counts(first))
        if counts:
            logger.info('%s: "%s" holds detector counts (%s, units %s): reconstructing their '
                        'square root (amplitudes)', self.path, DIFFRACTION_KEY, first.dtype,
                        units)
        return counts

    def read_new(self, limit: int, upto: int | None = None) -> Frames | None:
        """Up to ``limit`` patterns not read before (among the first ``upto``, default all
        the file has), or None when there are none yet."""
        f = self._open()
        n = self.available() if upto is None else min(upto, self.available())
        if n <= self.read_count:
            return None
        first, stop = self.read_count, min(n, self.read_count + limit)
        raw = f[DIFFRACTION_KEY][first:stop]
        x = np.asarray(f[X_KEY][first:stop], np.float64)
        y = np.asarray(f[Y_KEY][first:stop], np.float64)
        if self.counts is None:
            self.counts = self._are_counts(f, np.asarray(raw))
        frames = np.asarray(raw, np.float32)
        if np.any(frames < 0):
            raise ValueError(f'{self.path}: key "{DIFFRACTION_KEY}": patterns {first}..{stop - 1} '
                             f'hold negative values (expected amplitudes or counts >= 0)')
        if self.counts:
            frames = np.sqrt(frames)
        self.read_count = stop
        return Frames(frames, np.stack([x, y], axis=1), first)


@dataclass
class FollowSummary:
    patterns: int = 0
    seconds: float = 0.0
    ended_by: str = ''
    """``'complete'``, ``'n_positions'``, ``'idle'`` or ``'stopped'``."""


Preview = Callable[[Any, int], None]
"""``preview(reconstruction, patterns)``: shows the image so far."""


def follow(reader: GrowingScanFile, stream_for: Callable[[NDArray[np.complex64] | None], Any],
           options: FollowOptions = FollowOptions(), *, preview: Preview | None = None,
           stop: threading.Event | None = None,
           clock: Callable[[], float] = time.monotonic) -> tuple[Any, FollowSummary]:
    """Feed ``reader``'s patterns to a stream until the scan ends; its final image.

    ``stream_for(probe)`` makes the :class:`~ptycho.workflows.streaming.ScanStream` once
    the file shows its first patterns (with the file's probe, or None). ``stop`` set from
    another thread (or Ctrl-C in this one) ends the scan with what has arrived.
    """
    stop = stop or threading.Event()
    summary = FollowSummary()
    tic = last_growth = clock()
    last_preview = tic - options.preview_s  # the first patterns are shown at once
    stream: Any = None
    try:
        while True:
            now = clock()
            try:
                # The marker first: what a writer marked complete it had flushed before.
                complete = reader.complete()
                total = reader.expected()
                whole = None if complete else reader.settled(now, options.settle_s)
                frames = reader.read_new(options.max_chunk, upto=whole)
            except (OSError, KeyError) as exc:  # a writer without SWMR caught mid-write
                logger.debug('%s: not readable yet (%s); trying again', reader.path, exc)
                reader.close()
                frames, total, complete = None, None, False
            if frames is not None:
                last_growth = now
                if stream is None:
                    stream = stream_for(reader.probe())
                stream.add(frames.diffraction, frames.positions_xy)
                summary.patterns = stream.patterns
                if preview is not None and now - last_preview >= options.preview_s:
                    preview(stream.image(), stream.patterns)
                    last_preview = now
                if frames.diffraction.shape[0] == options.max_chunk:
                    continue  # more may be waiting: read on before sleeping
            if complete or (total is not None and reader.read_count >= total):
                if reader.available() <= reader.read_count:
                    summary.ended_by = 'complete' if complete else TOTAL_KEY
                    break
                continue
            if now - last_growth >= options.idle_s:
                summary.ended_by = 'idle'
                break
            if stop.wait(options.interval_s):
                summary.ended_by = 'stopped'
                break
    except KeyboardInterrupt:
        summary.ended_by = 'stopped'
    if stream is None:
        raise ValueError(f'{reader.path}: no complete pattern arrived (keys "{DIFFRACTION_KEY}", '
                         f'"{X_KEY}", "{Y_KEY}" are needed) before the scan ended '
                         f'({summary.ended_by})')
    result = stream.close()
    summary.patterns = stream.patterns
    summary.seconds = clock() - tic
    return result, summary
