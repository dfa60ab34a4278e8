"""Perturbation learning versus backprop: accuracy, compute per step, growth with the weights.

Writes ``bench/results/perturb_<task>.json`` with

* ``runs``: one training run per mode (global, layerwise, activity, weight, bp) with the task's default
  settings (:data:`lavasnn.train.perturb.SETTINGS`): relative L2 error, forward passes, MACs,
  activation bytes and seconds per step;
* ``cost_vs_bp``: each perturbation mode's MACs, activation memory and seconds per step
  relative to backprop (``saving = 1 - mode / bp``);
* ``scaling``: for hidden widths ``--widths``, the number of weights, the mean cosine between
  one forward-gradient estimate and the backprop gradient at initialisation (the estimator's
  variance grows with the number of weights sharing a scalar: cosine ~ 1/sqrt(n)), the error
  after ``--scaling-epochs`` epochs and the MACs per step.

Each run also records its full training configuration (``settings``).

Usage: ``python bench/bench_perturb.py --task mexican-hat [--epochs N] [--skip-scaling] [--jobs 2]
[--modes layerwise bp] [--hidden 64 64] [--set layerwise:lr=0.02 ..]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lavasnn.engine.perturb import PerturbEngine
from lavasnn.learning import perturb as pt
from lavasnn.train import runs
from lavasnn.train.perturb import (SETTINGS, Task, build_task, predict, rel_l2, settings_key, target_scale,
                                   train_perturb)

COSINE_DIRECTIONS = 32


def run_mode(task: str, mode: str, grad: str, epochs: int | None, seed: int, workdir: Path, threads: int,
             hidden: tuple[int, ...] | None = None, overrides: dict | None = None) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    grad = "surrogate" if mode == "weight" else grad  # weight perturbation uses no spike derivative
    m = train_perturb(task, mode, grad, "engine", workdir / mode, epochs, seed, progress=False, log=lambda s: None,
                      overrides=overrides, hidden=hidden)
    m["wall_seconds"] = time.perf_counter() - t0
    m["settings"] = runs.load_checkpoint(workdir / mode)[1]["config"]  # as trained, overrides included
    print(f"{task} {mode}: rel L2 {m['rel_l2']:.4f}, {m['macs_per_step']:.3g} MACs/step, "
          f"{m['seconds_per_step'] * 1e3:.1f} ms/step, {m['activation_bytes_per_step']} B held", flush=True)
    return m


def run_modes(task: str, grad: str, epochs: int | None, seed: int, workdir: Path, threads: int, jobs: int,
              modes: list[str], hidden: tuple[int, ...] | None, overrides: dict[str, dict]) -> dict:
    """One training run per mode, ``jobs`` at a time (separate processes, ``threads`` each)."""
    args = [(task, mode, grad, epochs, seed, workdir, threads, hidden, overrides.get(mode)) for mode in modes]
    if jobs == 1:
        return {mode: run_mode(*a) for mode, a in zip(modes, args)}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(modes, pool.map(run_mode, *zip(*args))))


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``MODE:KEY=VALUE`` items (VALUE a JSON number) -> {mode: {key: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        try:
            mode, assignment = item.split(":", 1)
            key, value = assignment.split("=", 1)
            out.setdefault(mode, {})[key] = json.loads(value)
        except ValueError:
            raise SystemExit(f"--set {item!r}: expected MODE:KEY=VALUE, e.g. layerwise:lr=0.02") from None
    return out


def cost_vs_bp(results: dict) -> dict:
    bp = results["bp"]
    return {mode: {"macs_ratio": r["macs_per_step"] / bp["macs_per_step"],
                   "macs_saving": 1 - r["macs_per_step"] / bp["macs_per_step"],
                   "seconds_saving": 1 - r["seconds_per_step"] / bp["seconds_per_step"],
                   "activation_bytes": r["activation_bytes_per_step"],
                   "bp_activation_bytes": bp["activation_bytes_per_step"]}
            for mode, r in results.items() if mode != "bp"}


def gradient_cosine(engine: PerturbEngine, inputs, targets: torch.Tensor, mode: str) -> float:
    """Mean cosine between single-direction estimates d v and the backprop gradient."""
    flat = lambda g: torch.cat([x.flatten() for layer in g for x in layer])  # noqa: E731
    exact = flat(pt.backprop_gradient(engine.loss_fn(inputs, targets, pt.SpikeGrad()), engine.params)[1])
    cosines = []
    for k in range(COSINE_DIRECTIONS):
        v = pt.directions(engine.cfg.seed, k, engine.params)
        tangents = pt.global_tangents(v) if mode == "global" else pt.layerwise_tangents(v)
        with torch.no_grad():
            y, y_dot = engine.model.forward_dual(engine.params, tangents, inputs, pt.SpikeGrad().derivative)
        est = flat(pt.forward_gradient(pt.mse_derivative(y, y_dot, targets)[1], v))
        cosines.append(float(est @ exact / (est.norm() * exact.norm())))
    return float(np.mean(cosines))


def train_epochs(engine: PerturbEngine, t: Task, y: torch.Tensor, epochs: int, rng: np.random.Generator) -> float:
    """Train ``engine`` for ``epochs`` epochs of shuffled batches; return the seconds spent in steps."""
    seconds = 0.0
    for _ in range(epochs):
        order = rng.permutation(t.n_train)
        for start in range(0, t.n_train, engine.cfg.batch):
            b = order[start:start + engine.cfg.batch]
            t0 = time.perf_counter()
            engine.step(t.take(t.train_inputs, b), y[b])
            seconds += time.perf_counter() - t0
    return seconds


def scaling(task: str, widths: list[int], epochs: int, seed: int) -> list[dict]:
    out = []
    base = SETTINGS[settings_key(task)]
    for width in widths:
        s = replace(base, hidden=(width,) * len(base.hidden))
        t = build_task(task, s, seed)
        y_scale = target_scale(s, t)
        y = torch.as_tensor(t.y_train / y_scale, dtype=torch.float32)
        row = {"width": width}
        for mode in ("global", "layerwise", "bp"):
            cfg = s.config(mode, epochs=epochs, seed=seed)
            rng = np.random.default_rng(seed)
            steps = -(-t.n_train // cfg.batch)
            engine = PerturbEngine(t.model, t.model.init(rng), cfg, steps)
            idx = rng.permutation(t.n_train)[:cfg.batch]
            if mode != "bp":
                row[f"{mode}_cosine"] = gradient_cosine(engine, t.take(t.train_inputs, idx), y[idx], mode)
            seconds = train_epochs(engine, t, y, epochs, rng)
            row["n_params"] = engine.n_params
            row[f"{mode}_rel_l2"] = rel_l2(predict(engine, t, t.test_inputs, len(t.y_test), y_scale), t.y_test)
            row[f"{mode}_macs_per_step"] = engine.cost(t.ops(cfg.batch)).macs
            row[f"{mode}_seconds_per_step"] = seconds / engine.updates
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mexican-hat")
    ap.add_argument("--grad", default="surrogate", choices=pt.GRADS)
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the task's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--scaling-epochs", type=int, default=30)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    ap.add_argument("--jobs", type=int, default=1, help="training runs at a time (processes)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--modes", nargs="+", choices=pt.MODES, default=list(pt.MODES))
    ap.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden widths (default: the task's)")
    ap.add_argument("--set", action="append", default=[], metavar="MODE:KEY=VALUE",
                    help="replace one training setting of one mode, e.g. layerwise:lr=0.02 (repeatable)")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = run_modes(args.task, args.grad, args.epochs, args.seed, Path(tmp), args.threads, args.jobs,
                            args.modes, tuple(args.hidden) if args.hidden else None, overrides)
    report = {"task": args.task, "grad": args.grad, "seed": args.seed, "threads": args.threads, "jobs": args.jobs,
              "device": "cpu", "settings": {k: str(v) for k, v in SETTINGS[settings_key(args.task)].__dict__.items()},
              "hidden": args.hidden, "overrides": overrides, "runs": results}
    if "bp" in results:
        report["cost_vs_bp"] = cost_vs_bp(results)
    if not args.skip_scaling:
        report["scaling"] = scaling(args.task, args.widths, args.scaling_epochs, args.seed)
    write_report(args.out, "perturb", args.task, report)


def write_report(out: Path, prefix: str, task: str, report: dict) -> None:
    """Write ``report`` to ``out/<prefix>_<task>.json`` (the task's ':' and '/' made '_')."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{prefix}_{task.replace(':', '_').replace('/', '_')}.json"
    runs.write_json(path, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
