"""On-chip (fixed-point) forward-gradient learning on the Mexican hat: engine and Lava.

Writes ``bench/results/perturb_onchip.json`` with

* ``engine``: the fixed-point rule (:mod:`lavasnn.engine.perturb_fixed`) trained by the batched
  engine on the whole 100 x 100 grid, per mode (layer-wise, global, weight perturbation, and
  layer-wise with Stein's derivative, ``layerwise-stein``, activity perturbation, ``activity``, and
  layer-wise and activity with four draws per update, ``layerwise-k4`` and ``activity-k4``, and
  weight perturbation, layer-wise and global forward gradients with Lava's LearningDense,
  ``weight-loihi2``, ``layerwise-loihi2``, ``global-loihi2``, and layer-wise with Stein's
  derivative, ``layerwise-stein-loihi2``):
  relative L2 error, seconds per step, and the synaptic operations of one training step on an
  event-driven chip (spikes and non-zero tangents times fan-out, both runs of a sample for weight
  perturbation, plus one update per synapse) against backprop's dense MACs;
* ``lava``: the same rule trained as Lava processes in ``Loihi2SimCfg`` on a random subset of
  ``--lava-limit`` grid points for ``--lava-epochs`` epochs, and the engine on the same subset,
  seed and epochs: their final integer weights (``weight_mismatches`` must be 0), errors on the
  whole grid, Lava steps per second and samples per second of both; ``lava_stein`` the same
  with Stein's derivative (``--lava-grad stein``), ``lava_activity`` with activity perturbation
  (``--lava-mode activity``), ``lava_activity_k4`` with four draws per update (``--lava-directions 4``),
  ``lava_loihi2`` and ``lava_weight_loihi2`` layer-wise forward gradients and weight perturbation in
  Loihi 2's learning-engine form (``--lava-rule loihi2 [--lava-mode weight]``), ``lava_stein_loihi2``
  layer-wise with Stein's derivative in that form.

Usage: ``python bench/bench_perturb_onchip.py [--epochs 15] [--lava-limit 400] [--lava-epochs 10]
[--skip-full | --skip-lava] [--engine-runs NAME ..] [--lava-grad stein] [--lava-mode activity|weight]
[--lava-directions K] [--lava-rule loihi2]`` (a skipped part or
run keeps the figures already in the JSON).
Run Lava first in a fresh process (forking after torch has started threads can hang).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import torch

from lavasnn.engine import perturb_fixed as pf
from lavasnn.engine.perturb import step_cost
from lavasnn.train import runs
from lavasnn.train.perturb import SETTINGS, build_task, train_perturb
from lavasnn.train.perturb_fixed import FIXED_TRAIN


def _weights(run: Path) -> dict[str, np.ndarray]:
    with h5py.File(run / "checkpoint.h5") as f:
        return {f"{g}/{k}": f[g][k][()] for g in f for k in f[g]}


def lava_vs_engine(limit: int, epochs: int, seed: int, workdir: Path, mode: str, grad: str, draws: int = 1,
                   rule: str = "exact") -> dict:
    quiet = {"progress": False, "log": lambda s: None}
    t0 = time.perf_counter()
    lava = train_perturb("mexican-hat", mode, grad, "lava-sim", workdir / "lava", epochs, seed,
                         limit=limit, overrides={"directions": draws, "rule": rule}, **quiet)
    lava_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = train_perturb("mexican-hat", mode, grad, "engine", workdir / "engine", epochs, seed,
                           precision="fixed", limit=limit,
                           overrides={"batch": FIXED_TRAIN["batch"]["lava-sim"], "directions": draws, "rule": rule},
                           **quiet)
    engine_wall = time.perf_counter() - t0
    a, b = _weights(workdir / "lava"), _weights(workdir / "engine")
    mismatches = sum(int((a[k] != b[k]).sum()) for k in a)
    train_seconds_lava = lava["seconds_per_step"] * lava["steps"]
    train_seconds_engine = engine["seconds_per_step"] * engine["steps"]
    return {"mode": mode, "grad": grad, "directions": draws, "rule": rule, "train_samples": limit, "epochs": epochs, "seed": seed,
            "batch": FIXED_TRAIN["batch"]["lava-sim"], "updates": lava["steps"],
            "lava_rel_l2_per_epoch": runs_history(workdir / "lava"),
            "weight_mismatches": mismatches, "parameters": sum(v.size for v in a.values()),
            "lava_rel_l2": lava["rel_l2"], "engine_rel_l2": engine["rel_l2"],
            "lava_steps_per_epoch": lava["lava_steps_per_epoch"],
            "lava_steps_per_s": lava["lava_steps_per_epoch"] * epochs / train_seconds_lava,
            "lava_samples_per_s": limit * epochs / train_seconds_lava,
            "engine_samples_per_s": limit * epochs / train_seconds_engine,
            "lava_wall_seconds": lava_wall, "engine_wall_seconds": engine_wall}


# Full-grid engine runs: name -> (mode, spike derivative, draws per update, rule)
ENGINE_RUNS = {"layerwise": ("layerwise", "surrogate", 1, "exact"), "global": ("global", "surrogate", 1, "exact"),
               "weight": ("weight", "surrogate", 1, "exact"), "layerwise-stein": ("layerwise", "stein", 1, "exact"),
               "activity": ("activity", "surrogate", 1, "exact"), "layerwise-k4": ("layerwise", "surrogate", 4, "exact"),
               "activity-k4": ("activity", "surrogate", 4, "exact"), "weight-loihi2": ("weight", "surrogate", 1, "loihi2"),
               "layerwise-loihi2": ("layerwise", "surrogate", 1, "loihi2"),
               "global-loihi2": ("global", "surrogate", 1, "loihi2"),
               "layerwise-stein-loihi2": ("layerwise", "stein", 1, "loihi2")}


def engine_full(names: list[str], epochs: int, seed: int, workdir: Path) -> dict:
    out = {}
    for name in names:
        mode, grad, draws, rule = ENGINE_RUNS[name]
        m = train_perturb("mexican-hat", mode, grad, "engine", workdir / f"full-{name}", epochs, seed,
                          precision="fixed", progress=False, log=lambda s: None,
                          overrides={"directions": draws, "rule": rule})
        out[name] = {k: m[k] for k in ("rel_l2", "grad", "directions", "rule", "steps", "seconds_per_step", "macs_per_step",
                                       "n_params", "train_samples", "train_loss")}
        out[name]["history"] = runs_history(workdir / f"full-{name}")
        out[name]["events_per_step"] = synaptic_events(workdir / f"full-{name}")
        print(f"engine fixed {name}: rel L2 {m['rel_l2']:.4f}", flush=True)
    return out


def synaptic_events(run: Path) -> dict:
    """Synaptic operations of one training step (batch 100) on an event-driven chip, with the
    trained weights, against the dense multiply-accumulates of a backprop step. The update is one
    operation per synapse and draw (``sum_j d_j u_j``); activity mode adds one per synapse, sample
    and draw (``grad += d_b elig``); rule 'loihi2' two per synapse and sample in weight mode (``w += t``,
    ``w -= t``) and, in the forward-gradient modes, one per synapse of every tangent copy."""
    arrays, attrs = runs.load_checkpoint(run)
    c = attrs["config"]
    cfg = pf.FixedNetConfig(**{**c, "sizes": tuple(c["sizes"]), "fmt": pf.FixedFormat(**c["fmt"])})
    layers = [pf.LayerParams(*(torch.as_tensor(a) for a in arrays[f"layer{l}"])) for l in range(cfg.n_layers)]
    task = build_task("mexican-hat", replace(SETTINGS["mexican-hat"], hidden=tuple(c["sizes"][1:-1])), 0)
    events: dict = {"forward": 0, "tangent": 0}
    pf.FixedForwardGradEngine(cfg, layers, attrs["updates"]).step(task.train_inputs[:cfg.batch].double(),
                                                                  torch.as_tensor(task.y_train[:cfg.batch]), events)
    n_params = sum(int(np.prod(a.shape)) for layer in arrays.values() for a in layer)
    bp = step_cost("bp", task.ops(cfg.batch), n_params, cfg.n_layers).macs
    activity = cfg.mode == "activity"
    update = n_params * cfg.directions * (cfg.batch if activity else 1) + (n_params if activity else 0)
    if cfg.rule == "loihi2" and cfg.mode == "weight":  # the learning engine also adds and removes each sample's perturbation
        update += 2 * n_params * cfg.batch
    elif cfg.rule == "loihi2":  # the tangents' copies of layers 1.. learn too, one copy per direction
        update += cfg.n_dirs * sum(int(np.prod(a.shape)) for l in range(1, cfg.n_layers) for a in arrays[f"layer{l}"])
    total = events["forward"] + events["tangent"] + update
    return {**events, "update": update, "total": total, "bp_dense_macs": bp, "saving_vs_bp": 1 - total / bp}


def runs_history(run: Path) -> list[float]:
    return [h["rel_l2"] for h in json.loads((run / "loss_curve.json").read_text())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=FIXED_TRAIN["epochs"]["engine"])
    ap.add_argument("--lava-limit", type=int, default=400)
    ap.add_argument("--lava-epochs", type=int, default=FIXED_TRAIN["epochs"]["lava-sim"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-full", action="store_true", help="only the Lava-versus-engine run")
    ap.add_argument("--skip-lava", action="store_true", help="only the full-grid engine runs")
    ap.add_argument("--lava-grad", choices=["surrogate", "stein"], default="surrogate",
                    help="spike derivative of the Lava run (stein: written to `lava_stein`)")
    ap.add_argument("--lava-mode", choices=["layerwise", "activity", "weight"], default="layerwise",
                    help="mode of the Lava run (activity: written to `lava_activity`, weight: to `lava_weight`)")
    ap.add_argument("--lava-rule", choices=["exact", "loihi2"], default="exact",
                    help="rule of the Lava run (loihi2: written to `lava_loihi2`, `lava_weight_loihi2`, ...)")
    ap.add_argument("--lava-directions", type=int, default=1, help="draws per update in the Lava run")
    ap.add_argument("--engine-runs", nargs="+", choices=list(ENGINE_RUNS), default=list(ENGINE_RUNS),
                    help="full-grid engine runs to train (the others keep their figures)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "perturb_onchip.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}  # a skipped part keeps its figures
    report.update({"task": "mexican-hat", "precision": "fixed", "device": "cpu", "threads": args.threads,
                   "defaults": {k: v for k, v in FIXED_TRAIN.items()}})
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_lava:
            key = ("lava" + f"_{args.lava_mode}" * (args.lava_mode != "layerwise") + "_stein" * (args.lava_grad == "stein")
                   + f"_k{args.lava_directions}" * (args.lava_directions > 1) + "_loihi2" * (args.lava_rule == "loihi2"))
            report[key] = lava_vs_engine(args.lava_limit, args.lava_epochs, args.seed, Path(tmp), args.lava_mode,
                                         args.lava_grad, args.lava_directions, args.lava_rule)
            print(report[key], flush=True)
        if not args.skip_full:
            report["engine"] = {**report.get("engine", {}), **engine_full(args.engine_runs, args.epochs, args.seed, Path(tmp))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
