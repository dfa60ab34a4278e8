"""Tests for the scientific-ML data generators (lavasnn/data/sciml.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lavasnn.data.sciml import (
    GeneratorError,
    OperatorData,
    RegressionData,
    gaussian_random_field_1d,
    mexican_hat,
    poisson_1d,
    reaction_diffusion,
    solve_poisson_1d,
    solve_reaction_diffusion,
)
from lavasnn.errors import UserError


def _ricker(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    s = (x**2 + y**2) / (2 * sigma**2)
    return (1 - s) * np.exp(-s) / (math.pi * sigma**4)


# --- Mexican hat -------------------------------------------------------------------


def test_mexican_hat_reference_protocol_is_the_whole_grid():
    data = mexican_hat()
    assert isinstance(data, RegressionData)
    assert data.name == "mexican_hat"
    assert data.x_train.shape == (10_000, 2) and data.y_train.shape == (10_000, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_test, data.x_train)
    np.testing.assert_array_equal(data.y_test, data.y_train)
    assert data.x_train.min() == -1.0 and data.x_train.max() == 1.0
    x = data.x_train.astype(np.float64)
    expected = _ricker(x[:, 0], x[:, 1], 0.8)
    np.testing.assert_allclose(data.y_train[:, 0], expected, rtol=1e-6, atol=1e-7)


def test_mexican_hat_values_and_symmetry():
    n, sigma = 101, 0.8  # odd n puts the origin on the grid
    grid = mexican_hat(n=n, sigma=sigma).y_train[:, 0].reshape(n, n)
    assert grid[n // 2, n // 2] == pytest.approx(1 / (math.pi * sigma**4), rel=1e-6)
    assert grid.max() == grid[n // 2, n // 2]
    np.testing.assert_allclose(grid, grid[::-1, :], atol=1e-7)  # y -> -y
    np.testing.assert_allclose(grid, grid[:, ::-1], atol=1e-7)  # x -> -x
    np.testing.assert_allclose(grid, grid.T, atol=1e-7)  # x <-> y
    # Zero on the ring r = sqrt(2) sigma, negative outside it.
    ring = _ricker(np.array(math.sqrt(2) * sigma), np.array(0.0), sigma)
    assert ring == pytest.approx(0.0, abs=1e-15)
    assert grid[0, 0] < 0


def test_mexican_hat_held_out_split_is_seeded_and_disjoint():
    data = mexican_hat(n=50, test_fraction=0.2, seed=3)
    assert data.x_test.shape == (500, 2) and data.x_train.shape == (2000, 2)
    train = {tuple(p) for p in data.x_train.tolist()}
    test = {tuple(p) for p in data.x_test.tolist()}
    assert not train & test and len(train | test) == 2500
    again = mexican_hat(n=50, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(data.x_test, again.x_test)
    other = mexican_hat(n=50, test_fraction=0.2, seed=4)
    assert not np.array_equal(data.x_test, other.x_test)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n": 1}, "n"),
        ({"n": 10.0}, "n"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"n": 2, "test_fraction": 0.01}, "test_fraction"),
    ],
)
def test_mexican_hat_rejects_bad_arguments(kwargs, word):
    with pytest.raises(GeneratorError, match=word) as info:
        mexican_hat(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


# --- Gaussian random field ------------------------------------------------------------


def test_grf_sample_covariance_matches_kernel():
    x = np.linspace(0.0, 1.0, 12)
    samples = gaussian_random_field_1d(x, 40_000, 0.3, np.random.default_rng(0), variance=2.0)
    assert samples.shape == (40_000, 12)
    kernel = 2.0 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.3**2))
    np.testing.assert_allclose(samples.mean(axis=0), 0.0, atol=0.04)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), kernel, atol=0.06)


def test_grf_is_deterministic_for_a_seed_and_smooth():
    x = np.linspace(0.0, 1.0, 200)
    a = gaussian_random_field_1d(x, 5, 0.2, np.random.default_rng(7))
    b = gaussian_random_field_1d(x, 5, 0.2, np.random.default_rng(7))
    c = gaussian_random_field_1d(x, 5, 0.2, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Neighbouring values of a length-0.2 field at spacing 0.005 differ by ~ 0.025 std.
    assert np.abs(np.diff(a, axis=1)).max() < 0.2


@pytest.mark.parametrize(
    "args, word",
    [
        ((np.linspace(0, 1, 5), 0, 0.2), "n_samples"),
        ((np.linspace(0, 1, 5), 3, -1.0), "length_scale"),
        ((np.array([0.0, np.nan]), 3, 0.2), "finite"),
        ((np.zeros((2, 2)), 3, 0.2), "1-D"),
    ],
)
def test_grf_rejects_bad_arguments(args, word):
    with pytest.raises(GeneratorError, match=word):
        gaussian_random_field_1d(*args, rng=np.random.default_rng(0))
    with pytest.raises(GeneratorError, match="rng"):
        gaussian_random_field_1d(np.linspace(0, 1, 5), 3, 0.2, rng=0)


# --- Poisson -----------------------------------------------------------------------------


def test_poisson_quadratic_solution_is_exact():
    x = np.linspace(0.0, 1.0, 21)
    u = solve_poisson_1d(np.ones_like(x), x)
    np.testing.assert_allclose(u, x * (1 - x) / 2, atol=1e-14)


def test_poisson_sine_converges_at_second_order():
    errors = []
    for n in (17, 33, 65, 129):
        x = np.linspace(0.0, 1.0, n)
        u = solve_poisson_1d(np.pi**2 * np.sin(np.pi * x), x)
        errors.append(np.abs(u - np.sin(np.pi * x)).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.02)
    # Leading error term: (pi h)^2 / 12 at the peak.
    assert errors[-1] == pytest.approx((np.pi / 128) ** 2 / 12, rel=0.01)


def test_poisson_solves_a_batch_like_single_rows():
    x = np.linspace(0.0, 1.0, 33)
    f = np.stack([np.ones_like(x), np.pi**2 * np.sin(np.pi * x), np.cos(3 * x)])
    u = solve_poisson_1d(f, x)
    assert u.shape == f.shape
    for row in range(3):
        np.testing.assert_allclose(u[row], solve_poisson_1d(f[row], x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "f, x, word",
    [
        (np.ones(10), np.linspace(0, 1, 11), "f must have shape"),
        (np.ones(11), np.linspace(0, 2, 11), "uniform grid"),
        (np.ones(11), np.linspace(0, 1, 11) ** 2, "uniform grid"),
        (np.ones(2), np.linspace(0, 1, 2), "at least 3"),
        (np.full(11, np.inf), np.linspace(0, 1, 11), "finite"),
    ],
)
def test_poisson_rejects_bad_input(f, x, word):
    with pytest.raises(GeneratorError, match=word):
        solve_poisson_1d(f, x)


def test_poisson_dataset_satisfies_the_equation():
    data = poisson_1d(6, 3, seed=1)
    assert isinstance(data, OperatorData) and data.name == "poisson_1d"
    assert data.branch_train.shape == (6, 51) and data.branch_test.shape == (3, 51)
    assert data.trunk.shape == (51, 1)
    assert data.y_train.shape == (6, 51) and data.y_test.shape == (3, 51)
    assert data.sensors.shape == (51, 1) and data.grid_shape == (51,)
    arrays = (data.branch_train, data.branch_test, data.trunk, data.y_train, data.y_test)
    assert all(a.dtype == np.float32 for a in arrays)
    np.testing.assert_array_equal(data.trunk_axes[0], data.trunk)
    np.testing.assert_array_equal(data.y_train[:, [0, -1]], 0.0)
    # Sensors and query points coincide here: -u'' from the data must equal f.
    y = data.y_train.astype(np.float64)
    h = 1.0 / 50
    minus_uxx = -(y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]) / h**2
    f = data.branch_train[:, 1:-1].astype(np.float64)
    assert np.abs(minus_uxx - f).max() < 0.01 * np.abs(f).max()


def test_poisson_dataset_is_deterministic_and_splits_functions():
    a = poisson_1d(4, 2, m_sensors=30, n_points=40, seed=5)
    b = poisson_1d(4, 2, m_sensors=30, n_points=40, seed=5)
    np.testing.assert_array_equal(a.branch_train, b.branch_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.branch_train.shape == (4, 30) and a.y_train.shape == (4, 40)
    assert not np.allclose(a.branch_train[0], a.branch_test[0])
    assert not np.allclose(a.y_train, poisson_1d(4, 2, m_sensors=30, n_points=40, seed=6).y_train)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n_train": 0, "n_test": 1}, "n_train"),
        ({"n_train": 1, "n_test": -2}, "n_test"),
        ({"n_train": 1, "n_test": 1, "n_points": 2}, "n_points"),
        ({"n_train": 1, "n_test": 1, "length_scale": 0}, "length_scale"),
    ],
)
def test_poisson_dataset_rejects_bad_arguments(kwargs, word):
    with pytest.raises(GeneratorError, match=word):
        poisson_1d(**kwargs)


# --- Reaction-diffusion ------------------------------------------------------------------


def _linear_exact(n: int, D: float) -> np.ndarray:
    x, t = np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, n)
    return (1 - np.exp(-D * np.pi**2 * t))[:, None] * np.sin(np.pi * x)[None, :] / (D * np.pi**2)


def test_reaction_diffusion_linear_case_matches_series_solution_at_second_order():
    D = 0.01
    errors = []
    for n in (17, 33, 65):
        x = np.linspace(0.0, 1.0, n)
        u = solve_reaction_diffusion(np.sin(np.pi * x), nx=n, nt=n, D=D, k=0.0)
        assert u.shape == (1, n, n)
        errors.append(np.abs(u[0] - _linear_exact(n, D)).max())
    assert errors[-1] < 2e-5 * _linear_exact(65, D).max()
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.05)


def _nonlinear_source(x: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * x) + 4 * x * (1 - x) * np.cos(5 * x)


def test_reaction_diffusion_nonlinear_grid_refinement_is_second_order():
    D, k = 0.01, 0.5
    x_fine = np.linspace(0.0, 1.0, 257)
    solutions = {}
    for n in (33, 65, 129, 257):
        f = _nonlinear_source(x_fine[:: 256 // (n - 1)])
        solutions[n] = solve_reaction_diffusion(f, n, n, D, k)[0]
    # Nested grids: every second point of the 2n - 1 grid is a point of the n grid.
    differences = [
        np.abs(solutions[n] - solutions[2 * n - 1][::2, ::2]).max() for n in (33, 65, 129)
    ]
    ratios = np.array(differences[:-1]) / np.array(differences[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.05)
    # The reaction term matters at this k: the solution departs from the k = 0 one by > 10 %.
    linear = solve_reaction_diffusion(_nonlinear_source(x_fine[::2]), 129, 129, D, 0.0)[0]
    assert np.abs(solutions[129] - linear).max() > 0.1 * np.abs(linear).max()


def test_reaction_diffusion_satisfies_the_pde_with_the_stated_signs():
    D, k, n = 0.01, 0.5, 129
    x = np.linspace(0.0, 1.0, n)
    f = _nonlinear_source(x)
    u = solve_reaction_diffusion(f, n, n, D, k)[0]  # (nt, nx)
    h = dt = 1.0 / (n - 1)
    u_t = (u[2:, 1:-1] - u[:-2, 1:-1]) / (2 * dt)
    u_xx = (u[1:-1, :-2] - 2 * u[1:-1, 1:-1] + u[1:-1, 2:]) / h**2
    residual = u_t - (D * u_xx + k * u[1:-1, 1:-1] ** 2 + f[1:-1])
    reaction = k * u[1:-1, 1:-1] ** 2
    assert np.abs(residual).max() < 0.01 * np.abs(reaction).max()
    np.testing.assert_array_equal(u[0], 0.0)
    np.testing.assert_array_equal(u[:, [0, -1]], 0.0)


def test_reaction_diffusion_solves_a_batch_like_single_rows():
    x = np.linspace(0.0, 1.0, 16)
    f = np.stack([np.sin(np.pi * x), _nonlinear_source(x), -2 * x])
    u = solve_reaction_diffusion(f, nx=16, nt=9)
    assert u.shape == (3, 9, 16)
    for row in range(3):
        single = solve_reaction_diffusion(f[row], nx=16, nt=9)[0]
        np.testing.assert_allclose(u[row], single, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "f, kwargs, word",
    [
        (np.ones((2, 10)), {}, "f must have shape"),
        (np.ones((2, 2, 128)), {}, "f must have shape"),
        (np.full(128, np.nan), {}, "finite"),
        (np.ones(128), {"D": 0.0}, "D"),
        (np.ones(128), {"k": float("inf")}, "k"),
        (np.ones(2), {"nx": 2}, "nx"),
        (np.ones(128), {"nt": 1}, "nt"),
    ],
)
def test_reaction_diffusion_rejects_bad_input(f, kwargs, word):
    with pytest.raises(GeneratorError, match=word):
        solve_reaction_diffusion(f, **kwargs)


def test_reaction_diffusion_dataset_layout():
    data = reaction_diffusion(3, 2, seed=2)
    assert data.name == "reaction_diffusion" and data.grid_shape == (128, 128)
    assert data.branch_train.shape == (3, 128) and data.branch_test.shape == (2, 128)
    assert data.trunk.shape == (128 * 128, 2) and data.y_train.shape == (3, 128 * 128)
    x_axis, t_axis = data.trunk_axes
    assert x_axis.shape == (128, 1) and t_axis.shape == (128, 1)
    # trunk is the 'ij' product of (x, t); y reshapes to (n, nx, nt) on the same grid.
    xx, tt = np.meshgrid(x_axis[:, 0], t_axis[:, 0], indexing="ij")
    np.testing.assert_array_equal(data.trunk, np.stack([xx.ravel(), tt.ravel()], axis=1))
    # Sensors coincide with the solver grid here, so re-solving from the branch input
    # reproduces the targets (up to the 1e-5 GRF jitter noise and float32 rounding).
    u = solve_reaction_diffusion(data.branch_test.astype(np.float64))  # (n, nt, nx)
    expected = u.transpose(0, 2, 1).reshape(2, -1)
    np.testing.assert_allclose(data.y_test, expected, atol=1e-3 * np.abs(expected).max())
    grid = data.y_train.reshape(3, 128, 128)
    np.testing.assert_array_equal(grid[:, :, 0], 0.0)  # u(x, 0) = 0
    np.testing.assert_array_equal(grid[:, [0, -1], :], 0.0)  # u(0, t) = u(1, t) = 0


def test_reaction_diffusion_dataset_is_deterministic():
    a = reaction_diffusion(2, 1, m_sensors=20, seed=9, nx=17, nt=9)
    b = reaction_diffusion(2, 1, m_sensors=20, seed=9, nx=17, nt=9)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.branch_test, b.branch_test)
    assert a.branch_train.shape == (2, 20) and a.y_train.shape == (2, 17 * 9)
    other = reaction_diffusion(2, 1, m_sensors=20, seed=10, nx=17, nt=9)
    assert not np.allclose(a.y_train, other.y_train)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n_train": 0, "n_test": 1}, "n_train"),
        ({"n_train": 1, "n_test": 1, "m_sensors": 1}, "m_sensors"),
        ({"n_train": 1, "n_test": 1, "length_scale": -0.2}, "length_scale"),
        ({"n_train": 1, "n_test": 1, "seed": -1}, "seed"),
    ],
)
def test_reaction_diffusion_dataset_rejects_bad_arguments(kwargs, word):
    with pytest.raises(GeneratorError, match=word):
        reaction_diffusion(**kwargs)
