"""N-MNIST reader (Orchard et al. 2015, "Converting static image datasets to spiking
neuromorphic datasets using saccades", Front. Neurosci. 9:437).

Layout: ``DIR/Train/<digit>/<id>.bin`` and ``DIR/Test/<digit>/<id>.bin`` (``train``/``test``
also accepted). Each event is 40 bits, big-endian::

    byte 0        x address (0..33)
    byte 1        y address (0..33)
    byte 2 bit 7  polarity p (1 = ON, 0 = OFF)
    bits 22..0    timestamp t in microseconds (bytes 2..4)

As in the dataset author's reader (gorchard/event-Python ``read_dataset``), an event with
``y == 240`` is a timestamp-overflow marker: it adds 2**13 us to every later timestamp of
its file and is dropped. Any other address above 33 makes the file corrupt.

Files are read with ``np.fromfile`` and decoded in chunks with vectorised bit operations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lavasnn.data.encoding import DataError, Events

SIZE = 34
OVERFLOW_Y = 240
OVERFLOW_US = 2**13
CHUNK = 2000


def list_split(directory: Path, split: str) -> tuple[list[Path], np.ndarray]:
    """The .bin files of ``split`` ("train" or "test") sorted by digit then id, and labels."""
    for name in (split.capitalize(), split):
        split_dir = directory / name
        if split_dir.is_dir():
            break
    else:
        raise DataError(f"N-MNIST directory {directory} has no {split.capitalize()}/ folder; "
                        "expected DIR/Train/<digit>/<id>.bin and DIR/Test/<digit>/<id>.bin")
    files: list[Path] = []
    labels: list[int] = []
    for digit in range(10):
        found = sorted((split_dir / str(digit)).glob("*.bin"),
                       key=lambda p: (len(p.stem), p.stem))
        files += found
        labels += [digit] * len(found)
    if not files:
        raise DataError(f"N-MNIST folder {split_dir} has no <digit>/<id>.bin files (digits 0-9)")
    return files, np.array(labels, dtype=np.int64)


def read_bin(path: Path) -> np.ndarray:
    """Events of one N-MNIST file as a structured array with fields x, y, p, t."""
    x, y, p, t, _ = _decode([_read(path)], [path])
    out = np.empty(len(x), dtype=[("x", "u1"), ("y", "u1"), ("p", "u1"), ("t", "u4")])
    out["x"], out["y"], out["p"], out["t"] = x, y, p, t
    return out


def load_events(files: list[Path]) -> Events:
    """All ``files`` packed into one :class:`Events`; a sample lasts until its last event.

    Sample duration :math:`D_n = \\max_e t_e + 1` (1 us for an empty file).
    """
    features: list[np.ndarray] = []
    times: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start:start + CHUNK]
        x, y, p, t, n = _decode([_read(f) for f in chunk], chunk)
        f = p.astype(np.uint16) * (SIZE * SIZE)
        f += y.astype(np.uint16) * SIZE
        f += x
        features.append(f)
        times.append(t)
        counts.append(n)
    n = np.concatenate(counts)
    offsets = np.zeros(len(files) + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    t = np.concatenate(times)
    duration = np.ones(len(files), dtype=np.int64)
    full = n > 0
    duration[full] = np.maximum.reduceat(t, offsets[:-1][full]).astype(np.int64) + 1
    return Events(np.concatenate(features), t, offsets, duration, SIZE, SIZE)


def _read(path: Path) -> np.ndarray:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"cannot read N-MNIST file {path}: {err}") from None
    if len(raw) % 5:
        raise DataError(f"N-MNIST file {path} is corrupt: {len(raw)} bytes is not a multiple "
                        "of 5 (each event is 5 bytes)")
    return raw


def _decode(raws: list[np.ndarray], paths: list[Path]) -> tuple[np.ndarray, ...]:
    """x, y, p, t of the events of several files, concatenated, and events per file."""
    counts = np.array([len(r) // 5 for r in raws], dtype=np.int64)
    ev = np.concatenate(raws).reshape(-1, 5)
    x, y, p = ev[:, 0], ev[:, 1], ev[:, 2] >> 7
    t = (ev[:, 2] & 0x7F).astype(np.uint32) << 16
    t |= ev[:, 3].astype(np.uint32) << 8
    t |= ev[:, 4]
    overflow = y == OVERFLOW_Y
    if overflow.any():
        file_of = np.repeat(np.arange(len(raws)), counts)
        seen = np.cumsum(overflow)
        before = np.concatenate(([0], seen))[np.cumsum(counts) - counts]
        t += OVERFLOW_US * (seen - before[file_of]).astype(np.uint32)
        keep = ~overflow
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
        counts = np.bincount(file_of[keep], minlength=len(raws)).astype(np.int64)
    bad = np.flatnonzero((x >= SIZE) | (y >= SIZE))
    if len(bad):
        i = bad[0]
        path = paths[np.searchsorted(np.cumsum(counts), i, side="right")]
        raise DataError(f"N-MNIST file {path} is corrupt: an event has address x={x[i]}, "
                        f"y={y[i]}, outside the {SIZE}x{SIZE} sensor (0..{SIZE - 1})")
    return x, y, p, t, counts
