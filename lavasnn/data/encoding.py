"""Spike encodings, the compact event container, and the data layer's error type.

Two ways data becomes binary spikes ``s[t, n, d]`` (step ``t``, sample ``n``, input ``d``):

* static intensities ``x[n, d]`` in [0, 1] by Bernoulli rate coding (:func:`rate_encode`);
* recorded or simulated events by binning their timestamps (:meth:`Events.bin`).

:class:`DataError` lives here, in the module every loader already imports, so that the
readers (``mnist``, ``nmnist``, ``dvs_sim``) and ``classification`` share it without an
import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavasnn.errors import UserError


class DataError(UserError):
    """Bad input data: one sentence naming the file or thing and what is allowed."""


def rate_encode(x: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli rate code of intensities ``x`` (N, D) over ``steps`` time steps.

    .. math:: s[t, n, d] = [u_{t,n,d} < x_{n,d}],\\quad u_{t,n,d} \\sim U[0, 1)

    so each input spikes independently with probability ``x[n, d]`` per step and its mean
    rate over ``steps`` estimates the intensity (values >= 1 spike every step, <= 0 never).
    Returns uint8 0/1 of shape (steps, N, D).
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"rate_encode expects intensities of shape (N, D), got {x.shape}")
    u = rng.random((steps, *x.shape), dtype=np.float32)
    return (u < x).view(np.uint8)


@dataclass(frozen=True, eq=False)
class Events:
    """Address events of many samples, packed like a CSR matrix.

    Sample ``i`` owns events ``offsets[i]:offsets[i+1]`` of ``feature`` (uint16) and ``t``
    (uint32, microseconds from the sample's start) and lasts ``duration[i]`` microseconds
    (every ``t < duration[i]``). An event at pixel ``(x, y)`` with polarity ``p``
    (1 = ON, 0 = OFF) on a ``width`` x ``height`` sensor has

    .. math:: \\text{feature} = p \\cdot H W + y \\cdot W + x
    """

    feature: np.ndarray
    t: np.ndarray
    offsets: np.ndarray
    duration: np.ndarray
    height: int = 34
    width: int = 34

    @property
    def n_features(self) -> int:
        """Inputs per time step: 2 polarities x height x width."""
        return 2 * self.height * self.width

    def __len__(self) -> int:
        return len(self.duration)

    def sample(self, i: int) -> np.ndarray:
        """Events of sample ``i`` as a structured array with fields x, y, p, t."""
        f = self.feature[self.offsets[i]:self.offsets[i + 1]].astype(np.int64)
        out = np.empty(len(f), dtype=[("x", "u1"), ("y", "u1"), ("p", "u1"), ("t", "u4")])
        out["p"], rest = np.divmod(f, self.height * self.width)
        out["y"], out["x"] = np.divmod(rest, self.width)
        out["t"] = self.t[self.offsets[i]:self.offsets[i + 1]]
        return out

    def take(self, indices: np.ndarray) -> Events:
        """The samples ``indices`` (in that order) as a new container."""
        idx = np.asarray(indices, dtype=np.intp)
        ev, counts = self._gather(idx)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Events(self.feature[ev], self.t[ev], offsets, self.duration[idx],
                      self.height, self.width)

    def bin(self, indices: np.ndarray, steps: int) -> np.ndarray:
        """Binary spikes of samples ``indices``: events in ``steps`` equal time bins.

        .. math:: s[k, n, f] = \\min\\bigl(1, \\#\\{e \\in n : f_e = f,\\;
                  \\lfloor t_e \\cdot \\text{steps} / D_n \\rfloor = k\\}\\bigr)

        with ``D_n`` the sample's duration. Returns uint8 of shape (steps, len(indices),
        n_features).
        """
        if steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps}")
        idx = np.asarray(indices, dtype=np.intp)
        ev, counts = self._gather(idx)
        col = np.repeat(np.arange(len(idx)), counts)
        k = self.t[ev].astype(np.int64) * steps // self.duration[idx][col]
        out = np.zeros((steps, len(idx), self.n_features), dtype=np.uint8)
        out[np.minimum(k, steps - 1), col, self.feature[ev]] = 1
        return out

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat event indices of samples ``idx`` (concatenated in order) and their counts."""
        starts = self.offsets[idx]
        counts = self.offsets[idx + 1] - starts
        first = np.cumsum(counts) - counts
        ev = np.arange(counts.sum()) + np.repeat(starts - first, counts)
        return ev, counts
