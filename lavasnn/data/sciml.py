"""Offline generators for the scientific-ML tasks of Wan, Zhang & Karniadakis (2024).

Everything here is computed from a seed with numpy/scipy, without downloads:

* ``mexican_hat``: 2-D function regression (Ricker wavelet) on a grid of [-1, 1]^2.
* ``poisson_1d``: operator f -> u for -u'' = f on [0, 1], u(0) = u(1) = 0 (DeepONet).
* ``reaction_diffusion``: operator f -> u for u_t = D u_xx + k u^2 + f(x) on
  [0, 1] x [0, 1] (DeepONet / SepONet), as in Lu et al. (2021) and Yu et al. (SepONet).

Set-up details follow the group's public code (GitHub ``ruyinw/From-LIF-to-QIF``):
``ricker/regression.py`` (100 x 100 grid on [-1, 1]^2, sigma = 0.8, training and
evaluation on the whole grid) and ``deeponet_poisson/deeponetrpy.py`` /
``deeponet/dt/dt_deeponet.py`` (51 sensors, 51 query points, 800 training functions).
The reference code encodes inputs as spike times and min-max normalises targets inside
its training scripts; that belongs to the encoders and trainers, so data here are raw.

Array conventions: computation in float64, results in float32. An operator data set
stores its query points twice, as a Cartesian product ``trunk`` (DeepONet) and as
per-axis coordinates ``trunk_axes`` (SepONet); ``y.reshape(n_funcs, *grid_shape)[i, a, b]``
is the value at ``(trunk_axes[0][a], trunk_axes[1][b])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded

from lavasnn.errors import UserError

# Relative diagonal jitter that makes the RBF covariance numerically positive definite;
# it adds white noise of standard deviation sqrt(1e-10) = 1e-5 of the field's own.
_GRF_JITTER = 1e-10
# Poisson reference solutions are computed on a grid with at least this many intervals
# and restricted to the query points (finite-difference error ~ 1e-7 of max |f''|).
_POISSON_MIN_INTERVALS = 1000
# Reaction-diffusion solutions are computed this many functions at a time.
_RD_CHUNK = 256


class GeneratorError(UserError):
    """A generator received an argument outside its allowed range (a ValueError, via UserError)."""


@dataclass(frozen=True)
class RegressionData:
    """Function regression samples: x of shape (N, d_in), y of shape (N, d_out)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str


@dataclass(frozen=True)
class OperatorData:
    """Operator-learning samples G: f -> u, with f seen at sensors and u at query points.

    branch_*: f at the sensors, (n_funcs, m_sensors); sensors: (m_sensors, 1).
    trunk: shared query points, (n_points, d_coord), the 'ij' product of trunk_axes.
    trunk_axes: per-axis coordinates for SepONet, one (grid_shape[i], 1) array per axis.
    y_*: u at the query points, (n_funcs, n_points) with n_points = prod(grid_shape).
    """

    branch_train: np.ndarray
    trunk: np.ndarray
    y_train: np.ndarray
    branch_test: np.ndarray
    y_test: np.ndarray
    sensors: np.ndarray
    trunk_axes: tuple[np.ndarray, ...]
    grid_shape: tuple[int, ...]
    name: str


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GeneratorError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _is_real(value: object) -> bool:
    """True for a finite int or float (numpy scalars included), False for bool and others."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value)


def _check_positive(name: str, value: object) -> float:
    if not (_is_real(value) and value > 0):
        raise GeneratorError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def _check_finite_array(name: str, value: object) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeneratorError(f"{name} must be an array of real numbers.") from None
    if not np.all(np.isfinite(array)):
        raise GeneratorError(f"{name} must contain only finite values (no NaN or inf).")
    return array


def _uniform_unit_grid_step(x: np.ndarray) -> float:
    """Return h of a uniform grid x_i = i h on [0, 1], or raise GeneratorError."""
    if x.ndim != 1 or x.size < 3:
        raise GeneratorError(f"x must be a 1-D grid with at least 3 points, got shape {x.shape}.")
    h = 1.0 / (x.size - 1)
    uniform = np.allclose(np.diff(x), h, rtol=1e-6, atol=0.0)
    if not uniform or abs(x[0]) > 1e-12 or abs(x[-1] - 1.0) > 1e-12:
        raise GeneratorError("x must be the uniform grid linspace(0, 1, n), end points included.")
    return h


def mexican_hat(
    n: int = 100, sigma: float = 0.8, test_fraction: float = 0.0, seed: int = 0
) -> RegressionData:
    """Mexican hat (Ricker) regression on an n x n grid of [-1, 1]^2.

    f(x, y) = 1 / (pi sigma^4) * (1 - r^2 / (2 sigma^2)) * exp(-r^2 / (2 sigma^2)),
    r^2 = x^2 + y^2. Points are in the order of ``np.meshgrid(x, y)`` flattened.

    test_fraction = 0 is the reference protocol (ricker/regression.py): training and
    test sets are both the whole grid. test_fraction in (0, 1) holds out that fraction
    of the grid points, chosen at random from ``seed``, as the test set.
    """
    n = _check_int("n", n, 2)
    sigma = _check_positive("sigma", sigma)
    if not (_is_real(test_fraction) and 0.0 <= test_fraction < 1.0):
        raise GeneratorError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}.")
    seed = _check_int("seed", seed, 0)

    axis = np.linspace(-1.0, 1.0, n)
    x1, x2 = np.meshgrid(axis, axis)
    s = (x1**2 + x2**2) / (2.0 * sigma**2)
    f = (1.0 - s) * np.exp(-s) / (math.pi * sigma**4)
    x = np.stack([x1.ravel(), x2.ravel()], axis=1).astype(np.float32)
    y = f.reshape(-1, 1).astype(np.float32)
    if test_fraction == 0.0:
        return RegressionData(x, y, x.copy(), y.copy(), "mexican_hat")

    n_test = round(test_fraction * n * n)
    if not 1 <= n_test < n * n:
        raise GeneratorError(
            f"test_fraction={test_fraction} leaves no test or no training point on a {n} x {n} grid."
        )
    order = np.random.default_rng(seed).permutation(n * n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return RegressionData(x[train], y[train], x[test], y[test], "mexican_hat")


def gaussian_random_field_1d(
    x: np.ndarray,
    n_samples: int,
    length_scale: float,
    rng: np.random.Generator,
    variance: float = 1.0,
) -> np.ndarray:
    """Samples of a zero-mean Gaussian random field at the points x, shape (n_samples, len(x)).

    Covariance (RBF kernel): k(x, x') = variance * exp(-(x - x')^2 / (2 length_scale^2)).
    Samples are L z with z ~ N(0, I) and L the Cholesky factor of K + 1e-10 variance I
    (the jitter keeps K, which is numerically singular for smooth kernels, factorable).
    """
    points = _check_finite_array("x", x)
    if points.ndim != 1 or points.size < 1:
        raise GeneratorError(f"x must be a non-empty 1-D array of points, got shape {points.shape}.")
    n_samples = _check_int("n_samples", n_samples, 1)
    length_scale = _check_positive("length_scale", length_scale)
    variance = _check_positive("variance", variance)
    if not isinstance(rng, np.random.Generator):
        raise GeneratorError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}.")

    diff = points[:, None] - points[None, :]
    cov = variance * np.exp(-(diff**2) / (2.0 * length_scale**2))
    cov[np.diag_indices_from(cov)] += _GRF_JITTER * variance
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((n_samples, points.size))
    return z @ chol.T


def solve_poisson_1d(f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Solve -u'' = f on [0, 1], u(0) = u(1) = 0, for every row of f.

    Second-order central differences on the uniform grid x = linspace(0, 1, n):
    (-u_{i-1} + 2 u_i - u_{i+1}) / h^2 = f_i, i = 1..n-2, error O(h^2).
    f has shape (..., n) (values at x); u has the same shape.
    """
    grid = _check_finite_array("x", x)
    h = _uniform_unit_grid_step(grid)
    values = _check_finite_array("f", f)
    if values.ndim < 1 or values.shape[-1] != grid.size:
        raise GeneratorError(
            f"f must have shape (..., {grid.size}) to match x, got shape {values.shape}."
        )
    n = grid.size
    rhs = values.reshape(-1, n)[:, 1:-1].T * h**2
    bands = np.empty((3, n - 2))
    bands[0], bands[1], bands[2] = -1.0, 2.0, -1.0
    u = np.zeros((rhs.shape[1], n))
    u[:, 1:-1] = solve_banded((1, 1), bands, rhs, check_finite=False).T
    return u.reshape(values.shape)


def poisson_1d(
    n_train: int,
    n_test: int,
    m_sensors: int = 51,
    n_points: int = 51,
    length_scale: float = 0.2,
    seed: int = 0,
) -> OperatorData:
    """DeepONet data for G: f -> u with -u'' = f on [0, 1], u(0) = u(1) = 0.

    f ~ GRF(0, exp(-(x - x')^2 / (2 length_scale^2))); branch input f at m_sensors
    uniform points of [0, 1]; target u at n_points uniform query points of [0, 1].
    Each f is sampled once, jointly at the sensors and on a refinement of the query grid
    with >= 1000 intervals; u is solved on that refinement and restricted to the queries.
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    m_sensors = _check_int("m_sensors", m_sensors, 2)
    n_points = _check_int("n_points", n_points, 3)
    length_scale = _check_positive("length_scale", length_scale)
    seed = _check_int("seed", seed, 0)

    refine = math.ceil(_POISSON_MIN_INTERVALS / (n_points - 1))
    x_fine = np.linspace(0.0, 1.0, (n_points - 1) * refine + 1)
    sensors = np.linspace(0.0, 1.0, m_sensors)
    rng = np.random.default_rng(seed)
    field = gaussian_random_field_1d(
        np.concatenate([x_fine, sensors]), n_train + n_test, length_scale, rng
    )
    u = solve_poisson_1d(field[:, : x_fine.size], x_fine)[:, ::refine]
    branch = field[:, x_fine.size :].astype(np.float32)
    y = u.astype(np.float32)
    x_query = np.linspace(0.0, 1.0, n_points, dtype=np.float32)[:, None]
    return OperatorData(
        branch_train=branch[:n_train],
        trunk=x_query,
        y_train=y[:n_train],
        branch_test=branch[n_train:],
        y_test=y[n_train:],
        sensors=sensors.astype(np.float32)[:, None],
        trunk_axes=(x_query.copy(),),
        grid_shape=(n_points,),
        name="poisson_1d",
    )


def solve_reaction_diffusion(
    f: np.ndarray, nx: int = 128, nt: int = 128, D: float = 0.01, k: float = 0.01
) -> np.ndarray:
    """Solve u_t = D u_xx + k u^2 + f(x) on x, t in [0, 1], u(x, 0) = 0, u(0, t) = u(1, t) = 0.

    Grid x = linspace(0, 1, nx), t = linspace(0, 1, nt); f has shape (batch, nx) or (nx,)
    (values at x). Crank-Nicolson for D u_xx, second-order Adams-Bashforth (explicit) for
    k u^2 + f, started with u^{-1} = u^0, so the scheme is O(h^2 + dt^2):
    (I - dt D L / 2) u^{n+1} = (I + dt D L / 2) u^n + dt (f + k (3 (u^n)^2 - (u^{n-1})^2) / 2),
    with L the 3-point Laplacian. Returns u of shape (batch, nt, nx).
    """
    nx = _check_int("nx", nx, 3)
    nt = _check_int("nt", nt, 2)
    D = _check_positive("D", D)
    if not _is_real(k):
        raise GeneratorError(f"k must be a finite number, got {k!r}.")
    source = _check_finite_array("f", f)
    if source.ndim == 1:
        source = source[None, :]
    if source.ndim != 2 or source.shape[1] != nx:
        raise GeneratorError(
            f"f must have shape (batch, {nx}) or ({nx},), got shape {np.shape(f)}."
        )

    h, dt = 1.0 / (nx - 1), 1.0 / (nt - 1)
    r = D * dt / (2.0 * h**2)
    bands = np.empty((3, nx - 2))
    bands[0], bands[1], bands[2] = -r, 1.0 + 2.0 * r, -r
    forcing = source[:, 1:-1].T  # interior points, (nx - 2, batch)
    u = np.zeros((nt, nx, source.shape[0]))
    prev_sq = np.zeros_like(forcing)
    for n in range(nt - 1):
        cur = u[n]
        cur_sq = cur[1:-1] ** 2
        rhs = cur[1:-1] + r * (cur[:-2] - 2.0 * cur[1:-1] + cur[2:])
        rhs += dt * (forcing + k * (1.5 * cur_sq - 0.5 * prev_sq))
        u[n + 1, 1:-1] = solve_banded((1, 1), bands, rhs, check_finite=False)
        prev_sq = cur_sq
    return u.transpose(2, 0, 1)


def reaction_diffusion(
    n_train: int,
    n_test: int,
    m_sensors: int = 128,
    length_scale: float = 0.2,
    seed: int = 0,
    nx: int = 128,
    nt: int = 128,
) -> OperatorData:
    """DeepONet / SepONet data for G: f -> u, u_t = 0.01 u_xx + 0.01 u^2 + f(x).

    f ~ GRF(0, exp(-(x - x')^2 / (2 length_scale^2))), seen at m_sensors uniform points
    of [0, 1]; u is the finite-difference solution on the nx x nt grid of [0, 1]^2
    (``solve_reaction_diffusion``). Coordinates are ordered (x, t): trunk rows are
    (x_a, t_b) with b fastest, trunk_axes = (x, t), grid_shape = (nx, nt).
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    m_sensors = _check_int("m_sensors", m_sensors, 2)
    length_scale = _check_positive("length_scale", length_scale)
    seed = _check_int("seed", seed, 0)
    nx = _check_int("nx", nx, 3)
    nt = _check_int("nt", nt, 2)

    x = np.linspace(0.0, 1.0, nx)
    t = np.linspace(0.0, 1.0, nt)
    sensors = np.linspace(0.0, 1.0, m_sensors)
    rng = np.random.default_rng(seed)
    field = gaussian_random_field_1d(
        np.concatenate([x, sensors]), n_train + n_test, length_scale, rng
    )
    y = np.empty((n_train + n_test, nx * nt), dtype=np.float32)
    for start in range(0, n_train + n_test, _RD_CHUNK):  # chunks bound the float64 memory
        u = solve_reaction_diffusion(field[start : start + _RD_CHUNK, :nx], nx=nx, nt=nt)
        y[start : start + u.shape[0]] = u.transpose(0, 2, 1).reshape(u.shape[0], nx * nt)
    branch = field[:, nx:].astype(np.float32)
    xx, tt = np.meshgrid(x, t, indexing="ij")
    trunk = np.stack([xx.ravel(), tt.ravel()], axis=1).astype(np.float32)
    return OperatorData(
        branch_train=branch[:n_train],
        trunk=trunk,
        y_train=y[:n_train],
        branch_test=branch[n_train:],
        y_test=y[n_train:],
        sensors=sensors.astype(np.float32)[:, None],
        trunk_axes=(x.astype(np.float32)[:, None], t.astype(np.float32)[:, None]),
        grid_shape=(nx, nt),
        name="reaction_diffusion",
    )
