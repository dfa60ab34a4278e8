"""On-chip perturbation learning: the fixed-point forward-gradient rule, in the engine or in Lava.

``lavasnn train perturb --precision fixed`` (engine) and ``--backend lava-sim`` train a spiking
MLP with :mod:`lavasnn.engine.perturb_fixed`: integer weights, one tangent compartment per
direction (or, for weight perturbation, two runs per sample), SGD with the third factor d. Both
backends draw the same sample orders from the seed and end with the same integer weights.
Tasks: ``mexican-hat`` and ``npz:FILE`` (inputs in [-1, 1]); modes ``global``, ``layerwise``,
``activity`` (the neurons perturbed instead of the weights) and ``weight``; the spike's
derivative from the surrogate table or Stein's estimate (``--grad stein``, K = 16 noisy
threshold tests per neuron and step; weight perturbation needs neither).

Lava runs about a hundred steps per second here, so ``lava-sim`` trains on a random subset of
``limit`` training samples (default :data:`LAVA_LIMIT`); evaluation runs the same integer
arithmetic in the engine on the weights read back from the processes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from lavasnn.engine import perturb_fixed as pf
from lavasnn.engine.perturb import step_cost
from lavasnn.errors import UserError
from lavasnn.train import runs
from lavasnn.train.perturb import SETTINGS, build_task, plot_curve, plot_prediction, rel_l2, settings_key

FIXED_MODES = pf.MODES
LAVA_LIMIT = 400
# Defaults of the fixed-point rule, chosen with bench/bench_perturb_onchip.py (see its JSON).
# On chip the Mexican hat network stays 2-32-32-1 (the float default is 128 wide), the network
# these settings were chosen for; --hidden changes it.
# lava-sim trains on LAVA_LIMIT samples, so it takes smaller batches to make as many updates.
# weight: 0.03 of 0.003 / 0.01 / 0.03 / 0.05 (full grid: 0.63 / 0.59 / 0.41 / - after 5 epochs,
# 0.356 / 0.365 for 0.03 / 0.05 after 15); rule 'loihi2' keeps each mode's lr (exploratory, full grid,
# 15 epochs, seed 0: weight perturbation 0.478 / 0.185 / 0.366 at lr 0.01 / 0.03 / 0.1, layer-wise 0.062 at
# 0.03). The surrogate's width (FixedNetConfig.surrogate_width,
# 0.05 vth) was chosen over 0.3 / 0.15 / 0.1 by 15-epoch layer-wise runs: rel L2 0.068 / 0.071 /
# 0.069 / 0.061 and 2.34 / 2.23 / 1.94 / 1.49 M synaptic events per step (a narrower window
# leaves fewer non-zero graded tangents to send); global 0.126 / 0.118 at 0.3 / 0.05.
# input_lr_scale stays 1 on chip: the float runs' larger first-layer step does not carry over to
# this short, fast-decaying schedule (15 epochs, full grid): layer-wise x3 / x10 0.063 / 0.074
# (0.061 without), global x3 / x10 0.111 / 0.259 (0.118 without).
# activity: lr 0.1 of 0.03 / 0.1 / 0.3 (15 epochs, full grid, seed 0: 0.0563 / 0.0501 / 0.0493, the
# last level with 0.1); a larger step on layer 0 (x3 / x10: 0.0473 / 0.0526 at lr 0.1, x3 0.0496
# at lr 0.3) did not hold on seed 1 (x1 0.0453, x3 0.0517), so it stays 1 here too. Batch 1 (an update at every sample's end, what
# Loihi 2 could run without a second per-synapse accumulator; 400 points, 10 epochs, as lava-sim):
# lr 0.003 / 0.01 / 0.03 gave 0.166 / 0.111 / 0.489, against 0.087 with batches of 20 at lr 0.1.
# Four draws per update keep the one-draw lr: activity K = 4 at lr 0.3 0.0482 (0.1: 0.0506),
# layer-wise K = 4 at lr 0.1 0.177 (0.03: 0.0586). 60 epochs with the decay stretched to the same
# end (0.96 per epoch) did worse than 15: layer-wise 0.072, activity 0.055. The float engine at
# the same network, lr, batch and 1,500 updates (SGD, width 0.05) ends level with the integers:
# layer-wise 0.065 (K = 4: 0.056), activity 0.048. Weight formats: w_frac 7 (range +-2, coarser)
# 0.073, w_frac 9 (range +-0.5, 3 % of layer 0's biases clipped) 0.066, against 0.061 at 8 with
# no weight clipped (layer-wise, 15 epochs).
FIXED_TRAIN = {"hidden": (32, 32), "lr": {"global": 0.012, "layerwise": 0.03, "activity": 0.1, "weight": 0.03},
               "lr_decay": 0.85,
               "batch": {"engine": 100, "lava-sim": 20}, "epochs": {"engine": 15, "lava-sim": 10}}


def _layers_np(layers: list[pf.LayerParams]) -> dict[str, list[np.ndarray]]:
    return {f"layer{l}": [p.weights.numpy(), p.bias.numpy()] for l, p in enumerate(layers)}


def _layers_torch(arrays: dict) -> list[pf.LayerParams]:
    n = sum(k.startswith("layer") for k in arrays)
    return [pf.LayerParams(*(torch.as_tensor(a, dtype=torch.int64) for a in arrays[f"layer{l}"])) for l in range(n)]


def predict(cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: torch.Tensor, chunk: int = 2048) -> np.ndarray:
    engine = pf.FixedForwardGradEngine(cfg, layers)
    return np.concatenate([engine.predict(x[i:i + chunk]).numpy() for i in range(0, len(x), chunk)])


def train_perturb_fixed(task: str, mode: str, grad: str, backend: str, out: str | Path | None, epochs: int | None,
                        seed: int, resume: str | Path | None = None, progress: bool = True,
                        log: Callable[[str], None] = print, limit: int | None = None,
                        overrides: dict | None = None, hidden: tuple[int, ...] | None = None) -> dict:
    """Train with the fixed-point rule; return ``metrics.json``'s dict (``overrides``: fields of
    :class:`~lavasnn.engine.perturb_fixed.FixedNetConfig`, for benchmarks and tests)."""
    if resume is not None:
        arrays, attrs = runs.load_checkpoint(resume)
        if attrs.get("algorithm") != "perturb-fixed":
            raise UserError(f"{resume} holds a {attrs.get('algorithm')!r} run, not an on-chip perturbation run")
        task, seed, backend, limit, run_dir = attrs["task"], attrs["seed"], attrs["backend"], attrs["limit"], Path(resume)
        c = attrs["config"]
        cfg = pf.FixedNetConfig(**{**c, "sizes": tuple(c["sizes"]), "fmt": pf.FixedFormat(**c["fmt"])})
        n_epochs = epochs or attrs["epochs"]
        layers, updates, history, start_epoch = _layers_torch(arrays), attrs["updates"], attrs["history"], attrs["epoch"]
        rng = np.random.default_rng()
        rng.bit_generator.state = attrs["rng_state"]
        train_seconds = attrs["train_seconds"]
        log(runs.resume_message(run_dir, start_epoch, n_epochs))
        if cfg.rule == "loihi2":
            log("rule loihi2: the resumed run starts Lava's rounding streams afresh (a new Lava run does), so it "
                "ends close to, not equal to, an uninterrupted run")
    else:
        if out is None:
            raise UserError("--out DIR is required for a new run")
        if mode not in FIXED_MODES:
            raise UserError(f"fixed-point (on-chip) perturbation learning supports --mode {', '.join(FIXED_MODES)}, "
                            f"not {mode!r}")
        if grad not in pf.GRADS:
            raise UserError(f"fixed-point (on-chip) perturbation learning supports --grad {', '.join(pf.GRADS)}, "
                            f"not {grad!r}")
        if limit is not None and limit < 1:
            raise UserError(f"limit must be >= 1, got {limit}")
        n_epochs = epochs or FIXED_TRAIN["epochs"][backend]
        limit = limit if limit is not None else (LAVA_LIMIT if backend == "lava-sim" else None)
        run_dir, layers, updates, history, start_epoch, train_seconds = None, None, 0, [], 0, 0.0
        rng = np.random.default_rng(seed)
    key = settings_key(task)
    if key not in ("mexican-hat", "npz"):
        raise UserError(f"fixed-point (on-chip) perturbation learning trains spiking MLPs (mexican-hat, npz:FILE); "
                        f"task {task!r} needs --precision float --backend engine")
    s = SETTINGS[key]
    if resume is not None:
        hidden = cfg.sizes[1:-1]
    s = replace(s, hidden=tuple(hidden or FIXED_TRAIN["hidden"]))
    t = build_task(task, s, seed)
    x_train, y_train = t.train_inputs.double(), np.asarray(t.y_train, dtype=np.float64)
    if float(np.abs(x_train).max()) > 1 or float(np.abs(t.test_inputs).max()) > 1:
        raise UserError("fixed-point perturbation learning needs inputs in [-1, 1]; rescale x_train and x_test")
    if float(np.abs(y_train).max()) > 1 or float(np.abs(t.y_test).max()) > 1:
        raise UserError("fixed-point perturbation learning needs targets in [-1, 1] (the readout's 8-bit weights "
                        "are below 1 in size); rescale y_train and y_test")
    if resume is None:
        init_rng = np.random.default_rng(seed)
        params = t.model.init(init_rng)
        subset = np.sort(init_rng.choice(len(x_train), size=limit, replace=False)) if limit and limit < len(x_train) \
            else np.arange(len(x_train))
        settings = {"batch": FIXED_TRAIN["batch"][backend], "lr_decay": FIXED_TRAIN["lr_decay"], "lr": FIXED_TRAIN["lr"][mode],
                    **(overrides or {})}
        cfg = pf.FixedNetConfig(t.model.sizes, steps=s.neuron.steps, dv=round(s.neuron.dv * pf.DECAY_UNITY),
                                vth=round(s.neuron.vth * 2 ** pf.FixedFormat().v_frac), mode=mode, seed=seed,
                                grad="surrogate" if mode == "weight" else grad,
                                updates_per_epoch=-(-len(subset) // settings["batch"]), **settings)
        layers = pf.quantize_params(params, cfg.fmt)
        run_dir = runs.new_run_dir(out)
    else:
        subset = np.asarray(attrs["subset"])
    x_train, y_train = x_train[subset], y_train[subset]
    steps_per_epoch = -(-len(subset) // cfg.batch)
    cost = step_cost(cfg.mode, t.ops(cfg.batch), sum(p.numel() for l in layers for p in l), len(layers), cfg.directions,
                     shared_primal=True)
    orders, states = [], []
    for _ in range(start_epoch, n_epochs):
        orders.append(rng.permutation(len(subset)))
        states.append(rng.bit_generator.state)
    metrics: dict = {}

    def finish_epoch(epoch: int, new_layers: list[pf.LayerParams], loss: float, n_updates: int, seconds: float) -> None:
        nonlocal layers, train_seconds, metrics
        layers, train_seconds = new_layers, train_seconds + seconds
        pred = predict(cfg, layers, t.test_inputs.double())
        err = rel_l2(pred, t.y_test)
        history.append({"epoch": epoch + 1, "train_loss": loss, "rel_l2": err, "seconds": seconds})
        runs.save_checkpoint(run_dir, _layers_np(layers), {
            "algorithm": "perturb-fixed", "task": task, "seed": seed, "backend": backend, "limit": limit,
            "config": {**cfg.__dict__, "sizes": list(cfg.sizes), "fmt": cfg.fmt.to_dict()}, "epochs": n_epochs,
            "epoch": epoch + 1, "updates": n_updates, "rng_state": states[epoch - start_epoch], "history": history,
            "subset": subset.tolist(), "train_seconds": train_seconds})
        metrics = {"rel_l2": err, "task": task, "mode": cfg.mode, "grad": "none" if cfg.mode == "weight" else cfg.grad,
                   "backend": backend, "directions": cfg.directions, "rule": cfg.rule,
                   "precision": "fixed", "steps": n_updates, "forward_passes_per_step": cost.forward_passes,
                   "macs_per_step": cost.macs, "seconds_per_step": train_seconds / n_updates,
                   "n_params": sum(p.numel() for l in layers for p in l), "train_samples": len(subset),
                   "epochs": epoch + 1, "seed": seed, "train_loss": loss}
        if backend == "lava-sim":
            from lavasnn.backends.perturb_lava import steps_per_epoch as lava_steps
            metrics["lava_steps_per_epoch"] = lava_steps(cfg, len(subset))
        runs.write_json(run_dir / "loss_curve.json", history)
        runs.write_json(run_dir / "metrics.json", metrics)
        log(f"epoch {epoch + 1}/{n_epochs}: loss {loss:.4g}, rel L2 {err:.4f}, {seconds:.1f} s")

    if start_epoch >= n_epochs:
        return runs.load_metrics(run_dir)
    if backend == "lava-sim":
        from lavasnn.backends.perturb_lava import lava_trainer, steps_per_epoch as lava_steps
        log(f"training in Loihi2SimCfg: {lava_steps(cfg, len(subset))} Lava steps per epoch")
        lava = lava_trainer(cfg, layers, x_train.numpy(), y_train, orders, updates)
        clock = [time.perf_counter()]

        def on_epoch(i, new_layers, loss, n_updates):
            finish_epoch(start_epoch + i, new_layers, loss, n_updates, time.perf_counter() - clock[0])
            clock[0] = time.perf_counter()

        lava.run(on_epoch)
    else:
        engine = pf.FixedForwardGradEngine(cfg, layers, updates)
        y_t = torch.as_tensor(y_train)
        for i, order in enumerate(orders):
            losses, t0 = [], time.perf_counter()
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {start_epoch + i + 1}/{n_epochs}", disable=not progress,
                       leave=False)
            for start in range(0, len(order), cfg.batch):
                idx = order[start:start + cfg.batch]
                losses.append(engine.step(x_train[idx], y_t[idx]) * len(idx))
                bar.update(1)
            bar.close()
            finish_epoch(start_epoch + i, engine.layers, sum(losses) / len(order), engine.updates,
                         time.perf_counter() - t0)
    plot_curve(run_dir / "loss_curve.png", history)
    plot_prediction(run_dir / "prediction.png", t, predict(cfg, layers, t.test_inputs.double()))
    return metrics
