from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def chips_dir() -> Path:
    return REPO / "chips"


@pytest.fixture
def small_npz(tmp_path) -> Path:
    """A small regression data set in [-1, 1] (40 training, 20 test points), as ``--task npz:FILE`` reads it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 2))
    y = np.sin(2 * x[:, :1]) * x[:, 1:]
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    return path
