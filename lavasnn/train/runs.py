"""Run folders and checkpoints, written so that nothing the user has is lost or half-written.

A run folder holds ``metrics.json``, ``history.json`` and ``checkpoint.h5``. Every file is
written to a temporary file in the same folder and renamed over the old one (atomic on POSIX),
so an interrupted run leaves the previous epoch's files intact. A folder that already holds a
checkpoint is never overwritten: pass it to ``--resume`` instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from lavasnn.errors import UserError

CHECKPOINT = "checkpoint.h5"


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it; mkstemp makes it private
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    _atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def new_run_dir(out: str | Path) -> Path:
    """Check that ``out`` can take a new run: not a file, no run in it yet, and a folder we may
    create or write to. The folder itself is made by the first checkpoint
    (:func:`save_checkpoint`), so a run that fails or is stopped before its first epoch
    leaves nothing behind."""
    if not str(out).strip():
        raise UserError("--out is empty; give the folder the run should be written to")
    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise UserError(f"{out} already holds a run ({CHECKPOINT}); continue it with --resume {out} "
                        "or choose another --out")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot use --out {out}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot use --out {out}: {existing} is not writable")
    return out


def resume_message(run_dir: Path, done: int, total: int) -> str:
    if done >= total:
        return f"{run_dir} has finished {done} epochs; pass --epochs above {done} to train it further"
    return f"resuming {run_dir} at epoch {done + 1} of {total}"


def load_metrics(run_dir: str | Path) -> dict:
    """``metrics.json`` of a run that finished its epochs."""
    path = Path(run_dir) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e.__class__.__name__}); the run has finished all its "
                        "epochs, so there is nothing to resume: pass more --epochs to continue it") from None


def save_checkpoint(run_dir: Path, arrays: dict[str, list[np.ndarray]], attrs: dict) -> None:
    """Write groups of arrays (e.g. weights/0, weights/1) and JSON-encoded attributes, creating
    ``run_dir`` if needed."""
    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for group, items in arrays.items():
                g = f.create_group(group)
                for i, a in enumerate(items):
                    g.create_dataset(str(i), data=np.asarray(a))
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value)
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {run_dir}: {e.strerror}") from None
    _atomic(Path(run_dir) / CHECKPOINT, write)


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, list[np.ndarray]], dict]:
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise UserError(f"{run_dir} holds no {CHECKPOINT} to resume from")
    try:
        with h5py.File(path, "r") as f:
            arrays = {g: [f[g][str(i)][()] for i in range(len(f[g]))] for g in f.keys()}
            attrs = {k: json.loads(v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a readable lavasnn checkpoint: {e}") from None
    if "algorithm" not in attrs:
        raise UserError(f"{path} is an HDF5 file but not a lavasnn checkpoint (it names no training algorithm)")
    return arrays, attrs


def absolute_data_path(spec: str) -> str:
    """``KIND:PATH`` (mnist:, nmnist:, npz:) with PATH made absolute, so that a checkpoint that
    stores the spec can be resumed from any folder; other specs unchanged."""
    kind, sep, path = spec.partition(":")
    return f"{kind}:{Path(path).expanduser().resolve()}" if sep and kind in ("mnist", "nmnist", "npz") and path else spec
