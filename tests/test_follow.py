"""Following a growing HDF5 scan file (:mod:`ptycho.follow`), with a real SWMR writer.

The stream here is a recorder: what reaches it must be exactly the file's patterns, in
order, each once, however the writer cut them; the end markers end the scan.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptycho.follow import FollowOptions, GrowingScanFile, follow

N = 8


class Recorder:
    """Stands in for a ScanStream: keeps every chunk it is given."""

    def __init__(self, probe: np.ndarray | None) -> None:
        self.probe = probe
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.closed = False

    @property
    def patterns(self) -> int:
        return sum(len(d) for d, _ in self.chunks)

    def add(self, diffraction: np.ndarray, positions: np.ndarray) -> None:
        self.chunks.append((diffraction.copy(), positions.copy()))

    def image(self) -> str:
        return f'{self.patterns} patterns'

    def close(self) -> str:
        self.closed = True
        return 'final'


def _frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(50.0, size=(n, N, N)).astype(np.uint16)
    positions = rng.uniform(0, 100, size=(n, 2))
    return counts, positions


class SwmrWriter:
    """A detector pipeline: appends frames in pieces under SWMR, then marks the end."""

    def __init__(self, path: Path, counts: np.ndarray, positions: np.ndarray, *,
                 piece: int, pause: float, end: str = 'dataset', dtype: str | None = None,
                 attrs: dict[str, str] | None = None):
        self.path, self.counts, self.positions = path, counts, positions
        self.piece, self.pause, self.end = piece, pause, end
        self.dtype = dtype or counts.dtype
        f = h5py.File(path, 'w', libver='latest')
        f.create_dataset('diffraction', shape=(0, N, N), maxshape=(None, N, N),
                         dtype=self.dtype, chunks=(4, N, N))
        for key in ('xcoords', 'ycoords'):
            f.create_dataset(key, shape=(0,), maxshape=(None,), dtype='f8', chunks=(64,))
        f.create_dataset('probeGuess', data=np.ones((N, N), np.complex64))
        if end == 'dataset':
            f.create_dataset('complete', data=np.zeros(1, np.int8))
        if end == 'n_positions':
            f.attrs['n_positions'] = len(counts)
        f.attrs.update(attrs or {})  # SWMR takes no new attributes: set them first
        f.swmr_mode = True
        self.file = f

    def run(self) -> None:
        f = self.file
        for start in range(0, len(self.counts), self.piece):
            stop = min(start + self.piece, len(self.counts))
            # Frames first, coordinates after: a pattern is whole only with both.
            f['diffraction'].resize((stop, N, N))
            f['diffraction'][start:stop] = self.counts[start:stop].astype(self.dtype)
            f['diffraction'].flush()
            for axis, key in enumerate(('xcoords', 'ycoords')):
                f[key].resize((stop,))
                f[key][start:stop] = self.positions[start:stop, axis]
                f[key].flush()
            time.sleep(self.pause)
        if self.end == 'dataset':
            f['complete'][0] = 1
            f['complete'].flush()
        f.close()


@pytest.mark.parametrize('end', ['dataset', 'n_positions'])
def test_every_pattern_reaches_the_stream_once_in_order(tmp_path: Path, end: str) -> None:
    counts, positions = _frames(37)
    path = tmp_path / 'scan.h5'
    writer = SwmrWriter(path, counts, positions, piece=5, pause=0.02, end=end)
    thread = threading.Thread(target=writer.run)
    streams: list[Recorder] = []

    def stream_for(probe: np.ndarray | None) -> Recorder:
        streams.append(Recorder(probe))
        return streams[-1]

    previews: list[int] = []
    thread.start()
    with GrowingScanFile(path) as reader:
        result, summary = follow(reader, stream_for,
                                 FollowOptions(interval_s=0.01, idle_s=30, preview_s=1e-3,
                                               max_chunk=8),
                                 preview=lambda image, n: previews.append(n))
    thread.join()
    (stream,) = streams
    assert result == 'final' and stream.closed
    assert summary.ended_by == ('complete' if end == 'dataset' else 'n_positions')
    assert summary.patterns == 37
    got = np.concatenate([d for d, _ in stream.chunks])
    got_positions = np.concatenate([p for _, p in stream.chunks])
    # Integer counts become amplitudes.
    np.testing.assert_allclose(got, np.sqrt(counts.astype(np.float32)), rtol=1e-6)
    np.testing.assert_array_equal(got_positions, positions)
    assert all(len(d) <= 8 for d, _ in stream.chunks)
    assert previews and previews == sorted(previews) and previews[-1] <= 37
    np.testing.assert_array_equal(stream.probe, np.ones((N, N), np.complex64))


def test_float_patterns_are_amplitudes_and_idle_ends_the_scan(tmp_path: Path) -> None:
    counts, positions = _frames(12, seed=1)
    amplitudes = np.sqrt(counts.astype(np.float32))
    path = tmp_path / 'scan.h5'
    SwmrWriter(path, amplitudes, positions, piece=12, pause=0.0, end='none').run()
    streams: list[Recorder] = []
    with GrowingScanFile(path) as reader:
        _, summary = follow(reader, lambda p: streams.append(Recorder(p)) or streams[-1],
                            FollowOptions(interval_s=0.01, idle_s=0.2))
        assert reader.counts is False
    assert summary.ended_by == 'idle'
    np.testing.assert_array_equal(np.concatenate([d for d, _ in streams[0].chunks]),
                                  amplitudes)


def test_stop_ends_the_scan_with_what_arrived(tmp_path: Path) -> None:
    counts, positions = _frames(10, seed=2)
    path = tmp_path / 'scan.h5'
    SwmrWriter(path, counts, positions, piece=10, pause=0.0, end='none').run()
    stop = threading.Event()
    streams: list[Recorder] = []

    def stream_for(probe: np.ndarray | None) -> Recorder:
        streams.append(Recorder(probe))
        stop.set()  # the user presses Ctrl-C as the first patterns arrive
        return streams[-1]

    with GrowingScanFile(path) as reader:
        _, summary = follow(reader, stream_for, FollowOptions(interval_s=0.01, idle_s=60),
                            stop=stop)
    assert summary.ended_by == 'stopped' and summary.patterns == 10 and streams[0].closed


def test_a_file_without_patterns_is_reported(tmp_path: Path) -> None:
    path = tmp_path / 'empty.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('diffraction', shape=(0, N, N), maxshape=(None, N, N), dtype='f4')
    with GrowingScanFile(path) as reader, pytest.raises(ValueError, match='no complete pattern'):
        follow(reader, Recorder, FollowOptions(interval_s=0.01, idle_s=0.05))


def test_negative_values_and_bad_shapes_are_named(tmp_path: Path) -> None:
    path = tmp_path / 'bad.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('diffraction', data=-np.ones((2, N, N), np.float32))
        f.create_dataset('xcoords', data=np.zeros(2))
        f.create_dataset('ycoords', data=np.zeros(2))
    with GrowingScanFile(path) as reader, pytest.raises(ValueError, match='negative'):
        reader.read_new(10)
    with h5py.File(path, 'w') as f:
        f.create_dataset('diffraction', data=np.ones((2, N, N + 1), np.float32))
        f.create_dataset('xcoords', data=np.zeros(2))
        f.create_dataset('ycoords', data=np.zeros(2))
    with GrowingScanFile(path) as reader, pytest.raises(ValueError, match=r'\(n, N, N\)'):
        reader.read_new(10)


def test_a_pattern_waits_until_the_file_has_shown_it_for_settle_s(tmp_path: Path) -> None:
    """SWMR can show a dataset's new length before the data written into it (this file's
    first test once read zeros for the last two y coordinates): a pattern is taken only
    after the file has shown it for settle_s."""
    counts, positions = _frames(8)
    path = tmp_path / 'scan.h5'
    writer = SwmrWriter(path, counts[:5], positions[:5], piece=5, pause=0.0, end='none')
    writer.run()
    with GrowingScanFile(path) as reader:
        assert reader.settled(now=0.0, settle_s=0.2) == 0
        assert reader.settled(now=0.1, settle_s=0.2) == 0
        reader.close()  # not SWMR here: the writer needs the file to itself
        with h5py.File(path, 'a') as f:  # three more arrive
            for key, column in (('xcoords', 0), ('ycoords', 1)):
                f[key].resize((8,))
                f[key][5:] = positions[5:, column]
            f['diffraction'].resize((8, N, N))
            f['diffraction'][5:] = counts[5:]
        assert reader.settled(now=0.25, settle_s=0.2) == 5
        assert reader.settled(now=0.3, settle_s=0.2) == 5
        assert reader.settled(now=0.46, settle_s=0.2) == 8
        frames = reader.read_new(100, upto=5)
        assert frames is not None and len(frames.diffraction) == 5
        assert reader.settled(now=10.0, settle_s=0.0) == 8


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match='interval_s'):
        FollowOptions(interval_s=0)
    with pytest.raises(ValueError, match='max_chunk'):
        FollowOptions(max_chunk=0)
    with pytest.raises(ValueError, match='settle_s'):
        FollowOptions(settle_s=-1)


@pytest.mark.parametrize('units, as_counts', [(None, True), ('amplitude', False),
                                              ('counts', True)])
def test_whole_number_floats_are_counts_unless_the_file_says(tmp_path: Path, units: str | None,
                                                             as_counts: bool) -> None:
    counts, positions = _frames(6, seed=3)
    path = tmp_path / 'scan.h5'
    attrs = {} if units is None else {'diffraction_units': units}
    SwmrWriter(path, counts, positions, piece=6, pause=0.0, end='none', dtype='f4',
               attrs=attrs).run()
    with GrowingScanFile(path) as reader:
        frames = reader.read_new(100)
    assert frames is not None and reader.counts is as_counts
    expected = np.sqrt(counts.astype(np.float32)) if as_counts else counts.astype(np.float32)
    np.testing.assert_allclose(frames.diffraction, expected, rtol=1e-6)


def test_unknown_units_are_named(tmp_path: Path) -> None:
    path = tmp_path / 'scan.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('diffraction', data=np.ones((2, N, N), np.float32))
        f.create_dataset('xcoords', data=np.zeros(2))
        f.create_dataset('ycoords', data=np.zeros(2))
        f.attrs['diffraction_units'] = 'photons'
    with GrowingScanFile(path) as reader, pytest.raises(ValueError, match='diffraction_units'):
        reader.read_new(10)
