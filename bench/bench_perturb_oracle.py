"""Which layers' estimates hold layer-wise forward gradients back: exact gradients on some layers.

Trains the task's layer-wise configuration (:data:`lavasnn.train.perturb.SETTINGS`) several
times. Each run gives one set of layer groups the backprop gradient (same surrogate, same
optimizer) and keeps the layer-wise estimate ``d_l v_l`` on every other group:

* ``none``: plain layer-wise forward gradients;
* ``readouts``: the linear readouts of the rates (the last layer of the MLP, of the branch and of
  every trunk) and an operator's combination bias b_0;
* ``inputs``: the layers fed by the data (``model.input_groups``);
* ``hidden``: every spiking layer (all groups but the readouts and b_0);
* ``all``: every group, i.e. backprop under layer-wise's optimizer and learning rate.

If a set's run comes close to ``all``, the estimates of the other groups cost little; the error
that remains in ``none`` comes from the groups the set holds. Diagnostic only: the exact gradient
needs a backward pass, which the on-chip rule does not have.

Writes ``bench/results/perturb_oracle_<task>.json``. Usage:
``python bench/bench_perturb_oracle.py --task poisson [--epochs N] [--jobs 2] [--sets none hidden]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench_perturb import train_epochs, write_report
from lavasnn.engine.perturb import PerturbEngine
from lavasnn.learning import perturb as pt
from lavasnn.train.perturb import SETTINGS, Task, build_task, predict, rel_l2, settings_key, target_scale

SETS = ("none", "readouts", "inputs", "hidden", "all")


class PartlyExactEngine(PerturbEngine):
    """Layer-wise forward gradients, except the groups ``exact``, which take the backprop gradient."""

    def __init__(self, *args, exact: frozenset[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.exact = exact

    def gradient(self, inputs, targets: torch.Tensor) -> tuple[float, pt.Params]:
        if not self.exact:
            return super().gradient(inputs, targets)
        loss, exact = pt.backprop_gradient(self.loss_fn(inputs, targets, self.spike_grad()), self.params)
        if len(self.exact) == len(self.params):
            return float(loss), exact
        _, estimate = super().gradient(inputs, targets)
        return float(loss), [exact[k] if k in self.exact else g for k, g in enumerate(estimate)]


def group_sets(t: Task) -> dict[str, frozenset[int]]:
    """The layer groups of each set in :data:`SETS` for the task's model."""
    n = t.model.n_groups
    starts = list(t.model.input_groups)
    last = n - 2 if t.operator else n - 1  # an operator's last group is its combination bias b_0
    readouts = {s - 1 for s in starts[1:]} | {last} | ({n - 1} if t.operator else set())
    return {"none": frozenset(), "readouts": frozenset(readouts), "inputs": frozenset(starts),
            "hidden": frozenset(range(n)) - readouts, "all": frozenset(range(n))}


def run_set(task: str, name: str, epochs: int | None, seed: int) -> dict:
    torch.set_num_threads(1)
    s = SETTINGS[settings_key(task)]
    cfg = s.config("layerwise", seed=seed, **({"epochs": epochs} if epochs else {}))
    t = build_task(task, s, seed)
    exact = group_sets(t)[name]
    rng = np.random.default_rng(seed)
    y_scale = target_scale(s, t)
    engine = PartlyExactEngine(t.model, t.model.init(rng), cfg, -(-t.n_train // cfg.batch), exact=exact)
    t0 = time.perf_counter()
    train_epochs(engine, t, torch.as_tensor(t.y_train / y_scale, dtype=torch.float32), cfg.epochs, rng)
    err = rel_l2(predict(engine, t, t.test_inputs, len(t.y_test), y_scale), t.y_test)
    n_exact = sum(p.numel() for k in exact for p in engine.params[k])
    row = {"set": name, "exact_groups": sorted(exact), "exact_weights": n_exact, "n_params": engine.n_params,
           "rel_l2": err, "epochs": cfg.epochs, "steps": engine.updates, "wall_seconds": time.perf_counter() - t0}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="poisson")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the task's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--jobs", type=int, default=1, help="training runs at a time (processes, one thread each)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    jobs = [(args.task, name, args.epochs, args.seed) for name in args.sets]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(run_set, *zip(*jobs)))
    s = SETTINGS[settings_key(args.task)]
    report = {"task": args.task, "seed": args.seed, "device": "cpu", "threads_per_run": 1,
              "settings": s.config("layerwise", seed=args.seed).to_dict(), "runs": {r["set"]: r for r in rows}}
    write_report(args.out, "perturb_oracle", args.task, report)


if __name__ == "__main__":
    main()
