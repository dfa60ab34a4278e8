"""Time of one perturbation-learning training step, per mode: median of repeated steps.

Writes ``bench/results/perturb_step_<task>.json``: for each mode the median, minimum and
maximum seconds of ``--repeats`` steps on one training batch of the task's default size and
network (after ``--warmup`` untimed steps), one torch thread, and each median relative to
backprop's. The training benchmark (``bench_perturb.py``) times whole runs, two at a time; this
one isolates the step, for comparing engine changes.

Usage: ``python bench/bench_perturb_step.py --task mexican-hat [--repeats 15] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lavasnn.engine.perturb import PerturbEngine
from lavasnn.learning import perturb as pt
from lavasnn.train.perturb import SETTINGS, build_task, settings_key, target_scale

from bench_perturb import write_report  # bench/ is on sys.path when a script here runs


def step_seconds(task: str, mode: str, repeats: int, warmup: int, seed: int) -> list[float]:
    s = SETTINGS[settings_key(task)]
    t = build_task(task, s, seed)
    cfg = s.config(mode, seed=seed)
    rng = np.random.default_rng(seed)
    engine = PerturbEngine(t.model, t.model.init(rng), cfg, -(-t.n_train // cfg.batch))
    y_scale = target_scale(s, t)
    idx = rng.permutation(t.n_train)[:cfg.batch]
    inputs, targets = t.take(t.train_inputs, idx), torch.as_tensor(t.y_train[idx] / y_scale, dtype=torch.float32)
    seconds = []
    for k in range(warmup + repeats):
        t0 = time.perf_counter()
        engine.step(inputs, targets)
        if k >= warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mexican-hat")
    ap.add_argument("--modes", nargs="+", choices=pt.MODES, default=list(pt.MODES))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    report: dict = {"task": args.task, "threads": 1, "repeats": args.repeats, "warmup": args.warmup,
                    "hidden": list(SETTINGS[settings_key(args.task)].hidden), "modes": {}}
    for mode in args.modes:
        sec = step_seconds(args.task, mode, args.repeats, args.warmup, args.seed)
        report["modes"][mode] = {"median_s": float(np.median(sec)), "min_s": min(sec), "max_s": max(sec)}
        print(f"{args.task} {mode}: median {1000 * np.median(sec):.1f} ms per step", flush=True)
    if "bp" in report["modes"]:
        bp = report["modes"]["bp"]["median_s"]
        for row in report["modes"].values():
            row["vs_bp"] = row["median_s"] / bp
    write_report(args.out, "perturb_step", args.task, report)


if __name__ == "__main__":
    main()
