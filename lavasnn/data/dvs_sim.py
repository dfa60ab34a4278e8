"""A DVS (dynamic vision sensor) simulator that turns static digits into N-MNIST-like events.

N-MNIST was recorded by moving an ATIS camera in three saccades in front of a screen showing
each MNIST digit (Orchard et al. 2015). Here the camera is simulated:

Scene. The digit image :math:`I(u, v) \\in [0, 1]` (28x28, zero outside) sits in a 34x34
field at offset :math:`o(t) = (o_x, o_y)`, which moves linearly along the three legs of a
triangle :math:`V_0 \\to V_1 \\to V_2 \\to V_0`, each lasting ``saccade_us``. Pixel
:math:`(r, c)` sees, with bilinear interpolation for sub-pixel offsets,

.. math:: E_{rc}(t) = I(r - o_y(t),\\; c - o_x(t)), \\qquad
          L_{rc}(t) = \\ln\\bigl(E_{rc}(t) + b\\bigr)

where the background level :math:`b` keeps the log finite on black.

Pixels. Each pixel holds a reference :math:`R_{rc}` (initially :math:`L_{rc}(0)`). At every
step :math:`t_k = k \\Delta t`, :math:`k = 1..K`, :math:`K = 3\\,T_s / \\Delta t`:

.. math:: L_{rc}(t_k) - R_{rc} \\ge \\theta^{on}_{rc}  \\Rightarrow \\text{ON event } (p=1)
.. math:: L_{rc}(t_k) - R_{rc} \\le -\\theta^{off}_{rc} \\Rightarrow \\text{OFF event } (p=0)

and a pixel that fired resets its reference, :math:`R_{rc} \\leftarrow L_{rc}(t_k)` (so at
most one event per pixel per step: a refractory period of :math:`\\Delta t`). The event is
stamped in the middle of its step, :math:`t_k - \\Delta t / 2` microseconds, so a sample lasts
:math:`D = K \\Delta t` and every event falls inside it. Threshold mismatch is a fixed
pattern per pixel and polarity, :math:`\\theta_{rc} = \\theta\\,\\max(0.1, 1 + \\sigma z_{rc})`,
:math:`z \\sim N(0, 1)` drawn from the seed: the same seed gives the same events.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lavasnn.data.encoding import Events

SIZE = 34
VERSION = 1
BATCH = 250


@dataclass(frozen=True)
class DVSParams:
    """Simulator parameters; all of them (and the seed and input) key the cache.

    The defaults give about 4,500 events per mnist5k digit (measured), a few thousand like
    the N-MNIST recordings.
    """

    theta: float = 0.3                    # contrast threshold on ln intensity
    sigma: float = 0.03                   # relative threshold mismatch (std)
    background: float = 0.2               # b, intensity of the black background
    saccade_us: int = 100_000             # T_s, duration of one saccade leg
    dt_us: int = 1_000                    # simulation step
    vertices: tuple[tuple[float, float], ...] = ((3.0, 0.0), (6.0, 6.0), (0.0, 6.0))  # (o_x, o_y)

    def __post_init__(self) -> None:
        room = SIZE - 28
        if len(self.vertices) != 3 or not all(
                0 <= v <= room for vertex in self.vertices for v in vertex):
            raise ValueError(f"vertices must be three (o_x, o_y) offsets in [0, {room}]")
        if self.saccade_us % self.dt_us:
            raise ValueError("saccade_us must be a multiple of dt_us")

    @property
    def steps(self) -> int:
        """Simulation steps K over the three saccades."""
        return 3 * self.saccade_us // self.dt_us

    def offset(self, t_us: float) -> tuple[float, float]:
        """Position :math:`o(t)` of the digit on the saccade triangle at time ``t_us``."""
        leg, frac = divmod(t_us / self.saccade_us, 1.0)
        leg = min(int(leg), 2)
        frac = 1.0 if t_us >= 3 * self.saccade_us else frac
        (x0, y0), (x1, y1) = self.vertices[leg], self.vertices[(leg + 1) % 3]
        return x0 + frac * (x1 - x0), y0 + frac * (y1 - y0)


def simulate(images: np.ndarray, params: DVSParams = DVSParams(), seed: int = 0) -> Events:
    """Events of a simulated DVS saccading over ``images`` (N, 28, 28) or (N, 784) in [0, 1]."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), 28, 28)
    z = np.random.default_rng(seed).standard_normal((2, SIZE * SIZE, 1))
    theta_on, theta_off = params.theta * np.maximum(0.1, 1.0 + params.sigma * z)
    gain_on, gain_off = np.exp(theta_on).astype(np.float32), np.exp(-theta_off).astype(np.float32)
    features, times = [np.zeros(0, np.uint16)], [np.zeros(0, np.uint32)]
    counts = [np.zeros(0, np.int64)]
    for start in range(0, len(images), BATCH):
        f, t, n = _simulate_batch(images[start:start + BATCH], params, gain_on, gain_off)
        features.append(f)
        times.append(t)
        counts.append(n)
    offsets = np.zeros(len(images) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=offsets[1:])
    duration = np.full(len(images), params.steps * params.dt_us, dtype=np.int64)
    return Events(np.concatenate(features), np.concatenate(times), offsets, duration, SIZE, SIZE)


def _simulate_batch(images: np.ndarray, params: DVSParams, gain_on: np.ndarray,
                    gain_off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Features, timestamps (grouped by sample, time-ordered) and event counts of a batch.

    The threshold test runs in the linear domain, :math:`E + b \ge e^{R + \theta^{on}}`
    (``gain_on`` :math:`= e^{\theta^{on}}`, ``gain_off`` :math:`= e^{-\theta^{off}}`),
    the same test as on ln intensity without a log per step. Arrays are laid out
    (pixel, sample) so that shifting the view slices contiguous memory.
    """
    batch = len(images)
    pad = SIZE - 28 + 1  # room for offsets 0..6 plus one pixel for the bilinear neighbour
    canvas = np.zeros((28 + 2 * pad, 28 + 2 * pad, batch), dtype=np.float32)
    canvas[pad:pad + 28, pad:pad + 28] = images.transpose(1, 2, 0)
    rows = np.empty((SIZE, 28 + 2 * pad, batch), dtype=np.float32)
    rows_tmp = np.empty_like(rows)
    view = np.empty((SIZE, SIZE, batch), dtype=np.float32)
    view_tmp = np.empty_like(view)
    level = view.reshape(SIZE * SIZE, batch)
    bound = np.empty_like(level)
    on, off = np.empty(level.shape, dtype=bool), np.empty(level.shape, dtype=bool)

    def update_level(t_us: float) -> None:
        """level <- E(t) + b, E the bilinearly shifted view at time t_us."""
        ox, oy = params.offset(t_us)
        ix, iy = int(ox), int(oy)
        fx, fy = np.float32(ox - ix), np.float32(oy - iy)
        np.multiply(canvas[pad - iy:pad - iy + SIZE], 1 - fy, out=rows)
        np.multiply(canvas[pad - iy - 1:pad - iy - 1 + SIZE], fy, out=rows_tmp)
        np.add(rows, rows_tmp, out=rows)
        np.multiply(rows[:, pad - ix:pad - ix + SIZE], 1 - fx, out=view)
        np.multiply(rows[:, pad - ix - 1:pad - ix - 1 + SIZE], fx, out=view_tmp)
        np.add(view, view_tmp, out=view)
        np.add(view, np.float32(params.background), out=view)

    update_level(0.0)
    ref = level.copy()  # e^R: the intensity at each pixel's last event
    sample_ids, features, times = [], [], []
    for k in range(1, params.steps + 1):
        update_level(k * params.dt_us)
        np.greater_equal(level, np.multiply(ref, gain_on, out=bound), out=on)
        np.less_equal(level, np.multiply(ref, gain_off, out=bound), out=off)
        np.logical_or(on, off, out=off)
        np.copyto(ref, level, where=off)
        pixel, n = np.divmod(np.flatnonzero(off), batch)
        sample_ids.append(n)
        features.append(on[pixel, n] * (SIZE * SIZE) + pixel)
        times.append(np.full(len(n), k * params.dt_us - params.dt_us // 2, dtype=np.uint32))
    sample_ids = np.concatenate(sample_ids)
    order = np.argsort(sample_ids, kind="stable")
    return (np.concatenate(features)[order].astype(np.uint16), np.concatenate(times)[order],
            np.bincount(sample_ids, minlength=batch).astype(np.int64))


def cache_dir() -> Path:
    """``$LAVASNN_CACHE_DIR``, or ``~/.cache/lavasnn``."""
    return Path(os.environ.get("LAVASNN_CACHE_DIR") or Path.home() / ".cache" / "lavasnn")


def simulate_cached(images: np.ndarray, params: DVSParams = DVSParams(), seed: int = 0) -> Events:
    """:func:`simulate`, cached in :func:`cache_dir` under a hash of input, parameters, seed.

    The cache file is written to a temporary name and renamed, so a crash never leaves a
    half-written file; an unreadable cache file is regenerated; an unwritable cache folder
    only costs a warning.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    key = hashlib.sha256(json.dumps([VERSION, asdict(params), seed]).encode())
    key.update(str(images.shape).encode())
    key.update(images.tobytes())
    path = cache_dir() / f"dvs-sim-{key.hexdigest()[:20]}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            events = Events(f["feature"], f["t"], f["offsets"], f["duration"], SIZE, SIZE)
        if len(events) == len(images) and events.offsets[-1] == len(events.t):
            return events
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    events = simulate(images, params, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    except OSError as err:
        warnings.warn(f"cannot cache simulated events in {path.parent}: {err}", stacklevel=2)
        return events
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, feature=events.feature, t=events.t, offsets=events.offsets,
                     duration=events.duration)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return events
