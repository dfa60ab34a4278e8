"""The accuracy cost of training BioGrad with the Loihi-2-expressible rule (issue #4).

Same data (mnist5k: 4,000 train / 1,000 test), network (784-100-10), fixed point, epochs and
seed for both rules:

- ``exact``: BioGrad's per-synapse reset-aware traces, batch-mean update, 13-bit biases;
- ``loihi2``: the update Loihi 2's learning engine runs (:mod:`lavasnn.engine.learning_engine`):
  one decaying x1 per pre neuron, 9-bit tag, 7-bit factors, per-sample updates with stochastic
  rounding, biases as synapses from an always-on neuron (``BioGradConfig(rule="loihi2")``).

Suites: ``compare`` (both rules, ``--epochs``), ``tune`` (the loihi2 rule with each parameter
set of ``--tune``, ``--tune-epochs`` epochs), ``extra`` (one run per JSON object of ``--extra``,
which names its ``rule``, ``--epochs`` epochs: e.g. without sleep, or another fixed format). Each finished run is appended to the JSON file at
once, so a stopped benchmark keeps what it measured. One torch thread (shared machines).

    .venv/bin/python bench/bench_biograd_loihi2.py --suite compare --epochs 10 \\
        --loihi2 '{"l2_tag_exp": -7}'

writes bench/results/biograd_loihi2.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from lavasnn.learning.biograd import BioGradConfig
from lavasnn.train import runs
from lavasnn.train.biograd import train_biograd

STEPS = 50
DATA = "mnist5k"
HIDDEN = (100,)
BATCH = 128  # both rules, as in its recorded figures (BioGradConfig's default: 32 exact, 128 loihi2)
L2_KEYS = ("l2_lr_exp", "l2_tag_exp", "l2_x1_impulse", "l2_x1_tau", "l2_grad_amp", "l2_err_shift")


def run(rule: str, epochs: int, seed: int = 0, batch: int = BATCH, **kw) -> dict:
    """One training run; ``kw``: BioGradConfig fields (the l2_* parameters, v_frac_bits, sleep)."""
    cfg = BioGradConfig(hidden=HIDDEN, steps=STEPS, error_start=round(0.32 * STEPS), epochs=epochs,
                        batch=batch, precision="fixed", rule=rule, seed=seed, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = train_biograd(cfg, DATA, Path(tmp) / "run", progress=False, log=lambda s: print("   ", s, flush=True))
        history = json.loads((Path(tmp) / "run" / "history.json").read_text())
    return {"rule": rule, "data": DATA, "hidden": list(HIDDEN), "precision": "fixed", "epochs": epochs,
            "seed": seed, "lr": cfg.lr, "batch": cfg.batch, "sleep": cfg.sleep, "v_frac_bits": cfg.v_frac_bits,
            "loihi2_params": {k: getattr(cfg, k) for k in L2_KEYS} if rule == "loihi2" else None,
            "test_accuracy": m["test_accuracy"], "best_test_accuracy": max(h["test_accuracy"] for h in history),
            "train_accuracy": m["train_accuracy"], "test_history": [h["test_accuracy"] for h in history],
            "feedback_angle_deg": m["feedback_angle_deg"], "samples_per_s": m["samples_per_s"],
            "seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="compare", help="compare, tune, extra (comma-separated)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--loihi2", default="{}",
                        help="JSON: BioGradConfig fields of the compared loihi2 run (l2_*, v_frac_bits)")
    parser.add_argument("--tune", nargs="*", default=[], help="JSON parameter sets for the tune suite")
    parser.add_argument("--tune-epochs", type=int, default=1)
    parser.add_argument("--extra", nargs="*", default=[], help="JSON: BioGradConfig fields, with rule")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "biograd_loihi2.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {
        "benchmark": "biograd_loihi2", "steps": STEPS, "runs": []}
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    jobs = []
    for name in args.suite.split(","):
        if name == "compare":
            jobs += [("compare", "exact", args.epochs, {}), ("compare", "loihi2", args.epochs, json.loads(args.loihi2))]
        elif name == "tune":
            jobs += [("tune", "loihi2", args.tune_epochs, json.loads(t)) for t in args.tune]
        elif name == "extra":
            for e in map(json.loads, args.extra):
                jobs.append(("extra", e.pop("rule"), args.epochs, e))
        else:
            raise SystemExit(f"unknown suite {name!r}: compare, tune, extra")
    for suite, rule, epochs, l2 in jobs:
        print(f"== {suite}: {rule} {l2} {epochs} epochs", flush=True)
        result = {"suite": suite, **run(rule, epochs, **l2)}
        print(f"   test accuracy {result['test_accuracy']:.4f}, {result['samples_per_s']:.1f} samples/s", flush=True)
        report["runs"].append(result)
        out.parent.mkdir(parents=True, exist_ok=True)
        runs.write_json(out, report)  # atomic: a stopped run keeps what it measured
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
