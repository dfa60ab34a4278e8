"""The perturbation-learning workflow: task in, run folder out, resumable epoch by epoch.

Tasks (Wan, Zhang, Karniadakis 2024, arXiv 2411.07057; data from :mod:`lavasnn.data.sciml`):

* ``mexican-hat``: 2-D Mexican hat on the 100 x 100 grid of [-1, 1]^2, spiking MLP, trained
  and tested on the whole grid (the reference protocol);
* ``poisson``: -u'' = f on [0, 1], f -> u with a spiking DeepONet;
* ``reaction-diffusion``: u_t = 0.01 u_xx + 0.01 u^2 + f(x), f -> u on the 128 x 128 grid
  with a spiking SepONet (one trunk for x, one for t);
* ``npz:FILE``: the user's regression data (x_train, y_train, x_test, y_test), spiking MLP.

Operator targets are divided by the training targets' standard deviation for training; the
relative L2 error ``||pred - y|| / ||y||`` is on the original scale, over the whole test set.

Per epoch: shuffle, train batch by batch, evaluate, then write ``checkpoint.h5`` (parameters,
Adam moments, configuration, shuffling RNG state, update counter, history),
``loss_curve.json`` and ``metrics.json`` atomically; at the end ``loss_curve.png`` and
``prediction.png``. An epoch whose mean loss is not finite stops the run with a
:class:`~lavasnn.errors.UserError` before it is written (the checkpoint keeps the last finite epoch). Directions
and Stein noise are keyed by the update counter, so ``resume`` ends with the same weights as
a run that was never interrupted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from lavasnn.data import sciml
from lavasnn.data.classification import read_npz_arrays
from lavasnn.engine.perturb import PerturbConfig, PerturbEngine
from lavasnn.errors import UserError
from lavasnn.learning import perturb as pt
from lavasnn.models.operator import NeuronConfig, SpikingDeepONet, SpikingMLP, SpikingSepONet
from lavasnn.train import runs

TASKS = ("mexican-hat", "poisson", "reaction-diffusion", "npz:FILE")
BACKENDS = ("engine", "lava-sim")
PRECISIONS = ("float", "fixed")
EVAL_CHUNK = 2048  # samples (regression) or functions (operators) per evaluation batch


@dataclass(frozen=True)
class TaskSettings:
    """Network and data sizes of a task, and its training defaults (per mode where they differ)."""

    hidden: tuple[int, ...]
    latent: int  # DeepONet / SepONet: width p of the branch and trunk outputs
    neuron: NeuronConfig
    n_train: int  # operator tasks: training functions
    n_test: int
    normalize: bool  # train on targets / std(y_train) (operators: u is small)
    train: PerturbConfig
    per_mode: dict[str, dict]  # PerturbConfig fields that differ by mode (lr, optimizer, width, ...)

    def config(self, mode: str, **fields) -> PerturbConfig:
        """The training configuration of ``mode``, with ``fields`` replaced."""
        return replace(self.train, **{"mode": mode, **self.per_mode[mode], **fields})


# Defaults chosen in bench/bench_perturb.py (see its JSON results).
# Mexican hat: forward gradients train with plain SGD on a Gaussian surrogate of width 0.05 and
# batches of 500 (exploratory runs, seed 0, rel L2 error; Adam 1e-3, width 0.3, batch 100,
# 150 epochs gave global / layer-wise 0.0556 / 0.0602, 3e-3 gave 0.0538 / 0.0540):
# * SGD instead of Adam: Adam divides each weight's step by the RMS of its noisy estimates d v_i,
#   so every weight moves about lr per step whatever its share of the gradient; SGD keeps the
#   estimate's scale. Layer-wise SGD reached 0.0627 in 15 epochs, Adam 0.0602 in 150;
# * width 0.05: 0.0569 against 0.0627 (15 epochs), and on chip fewer graded tangents;
# * batch 500: the estimate's variance grows with the batch gradient's norm times the number of
#   weights sharing a scalar, so a larger batch helps more than more steps: 0.0516 after 150
#   epochs (3,000 steps) against 0.0525 with batch 100 (15,000 steps), in half the time;
# * SGD lr: layer-wise 0.03 (the on-chip rule's), global 0.005 (0.01 and, at batch 100, 0.012
#   diverged; global's one scalar varies more); 600 epochs, decay to 0.087 of lr at the end.
# Backprop and weight perturbation keep Adam 1e-3 and width 0.3 (weight perturbation with SGD
# and sigma 0.03: lr 0.03 diverged, 0.003 reached only 0.55 after 100 epochs).
# Tried for layer-wise without closing the gap to the paper (150 epochs, decay to 0.087, against
# 0.0516 / 0.0498 for the defaults before / after the compact tangents): momentum 0.9 at lr 3e-3
# / 6e-3 / 1.2e-2 (0.0521 / 0.0528 / diverged); a per-layer normalised step, lr * g_l / RMS(g_l)
# (lr 1e-3 / 3e-3 / 1e-2 / 3e-2: 0.082 / 0.065 / 0.072 / 0.146); an average of the weights
# (EMA 0.999: 0.070); Stein's derivative (0.0520). Longer: a 2,400-epoch schedule reached 0.0443
# at epoch 1,600 (stopped); 64-wide hidden layers 0.0410 after 600 epochs, 128-wide 0.0386 (lr 1e-2;
# 3e-2 diverged); global 64-wide 0.080 at epoch 150 (32-wide: 0.056). Global with lr 3e-3
# (600 epochs): 0.0535 / 0.0594 for seeds 0 / 1, against 5e-3's 0.0505 / 0.0592.
# What holds them back is the largest stable lr, not the estimate's noise at a given lr: exact
# gradients with the same SGD lr 3e-2 and width 0.05 reach 0.0486 after 150 epochs, level with
# layer-wise's 0.0498, and 0.0409 / 0.0395 with lr 0.1 / 0.3, where forward gradients diverge.
# A larger lr for the first layer only (input_lr_scale, the layer fed by the data: 96 of 1,185
# weights, so it adds little to the estimate's variance) is stable and closes much of the gap:
# 150 epochs, layer-wise x3 / x5 / x10: 0.0432 / 0.0485 / 0.0460 (x3 on the last layer, or x30
# on the first, diverges); global x3 / x10 / x20 / x30: 0.0632 / 0.0477 / 0.0558 / 0.0653 against
# 0.0834 unscaled. 600 epochs: layer-wise x3 0.0397, global x10 0.0425 (the bench unscaled: 0.0451 / 0.0505).
# Scaling every layer's lr by (n_max / n_l)^a diverged (a = 1, 0.5 at lr 3e-2) or lost (a = 0.5
# at 1.5e-2: 0.0594); clipping the scalar d at 2x its running RMS lost (0.0531 / 0.0527 at lr 3e-2
# / 6e-2); global lr 7e-3 with x10 was behind 5e-3 at epoch 200 (0.0470 / 0.0449). Layer-wise x3
# decaying to 0.02 / 0.3 of lr instead of 0.087: 0.0420 / 0.0473 at epoch 400 (0.0408).
# Wider, with the first-layer step: 64 wide, lr 2e-2, x4.5 0.0344 (bench/results/hidden64; seed 1:
# 0.0418; x6: 0.0446 at epoch 200); 128 wide, lr 1e-2, x10 0.0302 (seed 1: 0.0302). Global at 128
# wide, x10, 150 epochs: lr 2e-3 0.0433, 4e-3 diverged. So the defaults are 128 wide, where every
# mode does better than at 32 (bench/results/hidden32: global 0.0425, layer-wise 0.0397, weight
# 0.0816, backprop 0.0246). At 32 wide, 1,200 epochs (decay to 0.087 over the run) did not help
# layer-wise x3 (0.0420) and helped global x10 a little (0.0395); a 2,400-epoch layer-wise run
# diverged by epoch 200.
# Operator tasks: global / layer-wise forward gradients under Adam take steps ~ lr * (gradient .
# v) / rms, i.e. the per-weight step shrinks with the estimate's low signal-to-noise ratio, so
# they need a larger lr than backprop. Short runs (25 epochs Poisson, 10 reaction-diffusion)
# picked lr 1e-2 over 1e-3 / 3e-3 (3e-2 diverged) for both, and 3e-3 over 1e-3 for bp; weight is
# left untuned. SGD did not help there (Poisson layer-wise: 1e-2 diverged, 1e-3 / 3e-3 gave
# 0.49 / 0.51 against Adam's 0.23), nor did width 0.05 (0.25). Larger batches did, as for the
# Mexican hat: Poisson layer-wise 0.183 with batch 200 for 400 epochs against 0.230 with batch
# 50 for 100 (both 1,600 steps; batch 10 was worse, 0.51 after 53 epochs). More steps help
# every mode once the forward modes' lr is lowered to 3e-3 (1e-2 without the fast decay of a
# short run diverged to 0.70 by epoch 200): Poisson 2,000 epochs, layer-wise 0.112, backprop
# 0.041 (400 epochs: 0.183 / 0.061); the same lr for reaction-diffusion's 400 epochs. Layer-wise
# for 10,000 epochs (decay 0.999696, to the same 0.048 of lr) ended at 0.095.
# A larger step on the input layers (input_lr_scale, branch and trunk) hurt Poisson under Adam:
# layer-wise x3 / x10 0.163 / 0.212 at epoch 1,000 against 0.138 without.
# What limits layer-wise here is the estimate on the spiking layers (bench/bench_perturb_oracle.py:
# exact gradients on the spiking layers and forward gradients on the readouts give Poisson 0.045,
# reaction-diffusion 0.110; backprop 0.041 / 0.103). Exploratory Poisson layer-wise runs of 500
# epochs (lr 1e-2, decay to 0.048; plain 0.171, exact spiking layers 0.053) that did not close the
# gap: one direction per function and per query point instead of one per batch (cosine with the
# batch gradient 0.102 instead of 0.022 at initialisation; error 0.151; SGD with it diverged at lr
# 0.1), Adam beta_1 0.99 (0.236), hidden and latent widths 16 / 64 (0.195 / 0.535), surrogate
# width 0.05 (0.177), SGD with width 0.05 (lr 3e-3 / 1e-2: 0.462 / 0.335; 3e-2 diverged). A
# smaller step on the input layers with the defaults (2,000 epochs): input_lr_scale 0.3 / 0.1
# gave 0.114 / 0.139; decaying to 0.01 of lr instead of 0.048 gave 0.131 (lr 3e-3) / 0.113 (5e-3).
# Activity perturbation (exploratory, seed 0; the first runs computed the same estimate through
# autograd, d_l,b = grad_a L_b . u_l,b): at initialisation one estimate's cosine with the batch
# gradient is 0.38-0.76 per Poisson layer, against 0.02-0.10 for layer-wise. Poisson, 500 epochs
# as above: 0.110 (layer-wise 0.171); exact gradients on the branch's first layer 0.081, on the
# trunk's 0.111, so the branch input layer's estimate limits it. A smaller step on the input layers
# helps here, unlike for layer-wise: input_lr_scale 0.3 / 0.1 / 0.03 gave 0.100 / 0.094 / 0.104.
# Full defaults (2,000 epochs): x1 0.090, x0.1 0.076 (lr 5e-3: 0.077; batch 400: 0.092, batch 100
# behind at epoch 1,250). Reaction-diffusion (400 epochs): x1 0.252, x0.1 0.165 (x0.03 level
# with x0.1 at epoch 150; batch 50 level at epoch 200).
# More directions per step (``directions`` K; exploratory, Poisson activity, 500 epochs, lr 3e-3
# decaying to 0.048 of it; backprop 0.0547 on that schedule, 0.081 at epoch 100): K = 1 0.138,
# K = 4 0.0995 with the 0.1x input step and 0.0815 with none (K averages the input layers' noise
# too); at epoch 150 K = 1 (x0.1) 0.158, K = 4 (x1) 0.108, K = 16 (x1) 0.098: returns fall after 4.
# Averaged over 1,000 draws at initialisation the estimate converges to backprop's gradient as
# 1/sqrt(draws) in every group (0.03-0.10 relative error), so what K buys is variance, not bias.
# Full Poisson run, K = 4, x1, from an earlier version of the draws: 0.0575. One hidden layer in
# branch and trunk (500 epochs, 32 / 64 wide) does not narrow the gap: backprop 0.077 / 0.042,
# layer-wise 0.437 / 0.362, activity 0.179 / 0.094.
# Mexican hat, activity with the layer-wise SGD settings, 30 epochs: lr 1e-2 0.0398 (layer-wise
# 0.043), 3e-2 0.0330, 0.1 0.0272, 0.3 diverged; Adam 1e-3 with width 0.3 0.0491. lr 0.1 for 150
# epochs: 0.0226 at epoch 125.
# Poisson layer-wise, what else did not narrow the gap (exploratory, seed 0). The 500-epoch
# schedule (lr 1e-2, decay to 0.048; plain 0.162, backprop 0.055): a per-group step on the hidden
# spiking layers x0.3 / x3 0.180 / 0.250, on the readouts x0.3 / x3 0.181 / 0.693, on all spiking
# layers x0.3 0.195; an exponential average of the weights (0.99 / 0.995 / 0.999 per step) trails
# the raw weights at every checkpoint (epoch 1,000: 0.139 / 0.140 / 0.156 against 0.138). Smaller
# batches, at lr 3e-3: batch 50 / 25 / 10 0.145 / 0.131 / 0.188 (lr 1e-3 at batch 10: 0.137), but
# backprop gains more (batch 25: 0.035); over the full 2,000 epochs batch 25 gave layer-wise 0.153
# and backprop 0.036 (batch 200: 0.112 / 0.041), a wider gap, so batch 200 stays.
# Fewer branch sensors (500-epoch schedule): 11 instead of 51 gave layer-wise 0.144 (51: 0.173)
# and backprop 0.060 (0.056), 2.4x instead of 3.1x; reaction-diffusion layer-wise, 100 epochs,
# 32 sensors instead of 128: 0.695 / 0.717. Full Poisson defaults with 11 sensors: backprop 0.043,
# layer-wise with four draws 0.088 (2.05x; 51 sensors: 0.096, 2.3x). One Adam second moment per layer group instead of
# per weight (Adam-mini; the chip could hold it in the loss neuron, one per third factor) matches
# Adam for layer-wise: 0.177 with beta_1 0.9 (Adam 0.173), 0.196 without momentum, so Adam's gain
# over SGD here is a per-layer step normalisation (g = d v: every weight's second moment is d^2).
# On the Mexican hat it does not pay (32 wide, batch 100, 15 epochs, the on-chip budget):
# per-layer normalised steps without momentum 0.087 at lr 3e-3 and 1e-2, SGD at lr 0.03 0.065.
# Backprop with Adam-mini (full Poisson defaults) ends at 0.052 against Adam's 0.041, so per-weight
# second moments explain little of the 2.7x gap. Also tried for Poisson layer-wise (seed 0):
# * one direction per training function (branch) and per query point (trunk), now ``per_sample``
#   (exploratory version, another random stream), over the full 2,000 epochs: lr 1e-3 / 3e-3 /
#   6e-3 0.157 / 0.100 / 0.128 (one per batch: 0.112), so the task's lr stays; reaction-diffusion
#   (one per function and per coordinate of each trunk, lr 3e-3, 400 epochs): 0.246 against
#   0.358. With the repository's streams (bench/results/per_sample): Poisson 0.110 / 0.103 (seeds
#   0 / 1), reaction-diffusion 0.275 / 0.280 (lr 1.5e-3 / 6e-3: 0.305 / 0.340), Mexican hat 0.0295.
#   With input_lr_scale 0.3: Poisson 0.105, reaction-diffusion 0.254; with it and four draws
#   (--directions 4, 4.2x / 4.0x the MACs): 0.092 / 0.212 (2.2x / 2.1x backprop; one direction per
#   batch with four draws: Poisson 0.096; activity with four draws at the same cost: 0.053 / 0.129).
#   Reaction-diffusion with input_lr_scale 0.3 and batch 100 instead of 25 (more samples per
#   estimate, a quarter of the steps): 0.451. JSON in bench/results/per_sample/{input03,
#   input03_k4,batch100};
# * the previous estimate m as a control variate, g = m + (d - m.v) v, m <- m + (c / n_l)(d - m.v) v
#   (unbiased; Silver et al. 2022, "Learning by directional gradient descent", track the gradient
#   so): 500-epoch schedule c = 1 / 0.2 0.205 / 0.177 (plain 0.171), and stepping along m itself
#   diverged (it lags the gradient by about n_l steps).
_SGD = {"optimizer": "sgd", "width": 0.05}
SETTINGS = {
    "mexican-hat": TaskSettings((128, 128), 0, NeuronConfig(steps=16), 0, 0, False,
                                PerturbConfig(batch=500, epochs=600, lr_decay=0.99594),
                                {"global": {**_SGD, "lr": 2e-3, "input_lr_scale": 10.0},
                                 "layerwise": {**_SGD, "lr": 1e-2, "input_lr_scale": 10.0},
                                 "activity": {**_SGD, "lr": 0.1, "input_lr_scale": 10.0},
                                 "weight": {"lr": 1e-3},
                                 "bp": {"lr": 1e-3}}),
    "poisson": TaskSettings((32, 32), 32, NeuronConfig(steps=16), 800, 200, True,
                            PerturbConfig(batch=200, epochs=2000, lr_decay=0.99848),
                            {"global": {"lr": 3e-3}, "layerwise": {"lr": 3e-3}, "activity": {"lr": 3e-3, "input_lr_scale": 0.1},
                             "weight": {"lr": 1e-3}, "bp": {"lr": 3e-3}}),
    "reaction-diffusion": TaskSettings((32, 32), 32, NeuronConfig(steps=16), 500, 100, True,
                                       PerturbConfig(batch=25, epochs=400, lr_decay=0.99241),
                                       {"global": {"lr": 3e-3}, "layerwise": {"lr": 3e-3}, "activity": {"lr": 3e-3, "input_lr_scale": 0.1},
                             "weight": {"lr": 1e-3}, "bp": {"lr": 3e-3}}),
}
# The user's data (npz) keeps the earlier Mexican hat settings: Adam does not diverge where SGD's
# lr was tuned for another task, and batches of 100 still give several steps per epoch on small files.
SETTINGS["npz"] = TaskSettings((32, 32), 0, NeuronConfig(steps=16), 0, 0, False,
                               PerturbConfig(batch=100, epochs=150, lr_decay=0.98),
                               {m: {"lr": 1e-3} for m in pt.MODES})


@dataclass
class Task:
    """A model with its training and test inputs; ``take`` makes a training batch."""

    name: str
    model: object
    train_inputs: object
    y_train: np.ndarray
    test_inputs: object
    y_test: np.ndarray
    operator: bool  # inputs are (branch rows, shared trunk); batches pick functions
    plot_shape: tuple[int, ...]  # shape of one test sample (or of the test set) for plotting

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def take(self, inputs, idx: np.ndarray):
        return (inputs[0][idx], inputs[1]) if self.operator else inputs[idx]

    def group_samples(self, batch: int) -> list[int]:
        """Per layer group, the samples a training batch gives it: inputs (MLP), functions
        (branch) or points (trunk); 0 for a group without neurons (b_0)."""
        shapes = self.model.node_shapes(self.take(self.train_inputs, np.arange(min(batch, self.n_train))))
        return [shape[-2] if shape else 0 for shape in shapes]

    def ops(self, batch: int):
        if isinstance(self.model, SpikingDeepONet):
            return self.model.ops(batch, len(self.train_inputs[1]))
        if isinstance(self.model, SpikingSepONet):
            return self.model.ops(batch, tuple(len(a) for a in self.train_inputs[1]))
        return self.model.ops(batch)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def load_npz(path: str) -> sciml.RegressionData:
    """Regression data from an .npz with x_train, y_train, x_test, y_test (2-D, real, finite in
    float32, at least one column; y_test not all zero, since errors are relative to it)."""
    arrays = read_npz_arrays(path, ("x_train", "y_train", "x_test", "y_test"))
    for k, a in arrays.items():
        if a.dtype.kind not in "buif":  # bool, unsigned, int, float (as the classification reader)
            raise UserError(f"{path}: {k} has dtype {a.dtype}; arrays must be real numbers")
        if a.ndim == 1:
            arrays[k] = a = a[:, None]
        if a.ndim != 2 or a.size == 0:
            raise UserError(f"{path}: {k} must be a non-empty (samples, features) array, got shape {a.shape}")
        with np.errstate(over="ignore"):
            if not np.all(np.isfinite(a.astype(np.float32))):
                raise UserError(f"{path}: {k} contains NaN, infinity or values beyond float32's range (3.4e38); "
                                "all values must be finite")
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise UserError(f"{path}: x_{split} has {len(arrays[f'x_{split}'])} rows but y_{split} has "
                            f"{len(arrays[f'y_{split}'])}; they must match")
    if arrays["x_train"].shape[1] != arrays["x_test"].shape[1] or arrays["y_train"].shape[1] != arrays["y_test"].shape[1]:
        raise UserError(f"{path}: train and test arrays must have the same number of columns")
    if not np.any(arrays["y_test"]):
        raise UserError(f"{path}: y_test is all zeros; the relative L2 error needs a non-zero reference")
    f32 = {k: a.astype(np.float32) for k, a in arrays.items()}
    return sciml.RegressionData(f32["x_train"], f32["y_train"], f32["x_test"], f32["y_test"], Path(path).name)


def settings_key(task: str) -> str:
    if task.startswith("npz:"):
        return "npz"
    if task not in SETTINGS:
        raise UserError(f"task {task!r} is not one of: {', '.join(TASKS)}")
    return task


def build_task(task: str, s: TaskSettings, seed: int) -> Task:
    """Data and model of ``task`` with the sizes of ``s``."""
    if task == "mexican-hat" or task.startswith("npz:"):
        d = sciml.mexican_hat() if task == "mexican-hat" else load_npz(task[4:])
        model = SpikingMLP((d.x_train.shape[1], *s.hidden, d.y_train.shape[1]), s.neuron)
        n = int(round(np.sqrt(len(d.y_test))))
        shape = (n, n) if task == "mexican-hat" else (len(d.y_test),)
        return Task(task, model, _tensor(d.x_train), d.y_train, _tensor(d.x_test), d.y_test, False, shape)
    if task == "poisson":
        d = sciml.poisson_1d(s.n_train, s.n_test, seed=seed)
        model = SpikingDeepONet(SpikingMLP((d.branch_train.shape[1], *s.hidden, s.latent), s.neuron),
                                SpikingMLP((d.trunk.shape[1], *s.hidden, s.latent), s.neuron))
        trunk = _tensor(d.trunk)
    else:
        d = sciml.reaction_diffusion(s.n_train, s.n_test, seed=seed)
        model = SpikingSepONet(SpikingMLP((d.branch_train.shape[1], *s.hidden, s.latent), s.neuron),
                               tuple(SpikingMLP((1, *s.hidden, s.latent), s.neuron) for _ in d.trunk_axes))
        trunk = tuple(_tensor(a) for a in d.trunk_axes)
    return Task(task, model, (_tensor(d.branch_train), trunk), d.y_train, (_tensor(d.branch_test), trunk),
                d.y_test, True, d.grid_shape)


def target_scale(s: TaskSettings, t: Task) -> float:
    """The factor the targets are divided by for training: std(y_train) when ``s.normalize``
    (1 if that is 0), else 1."""
    return (float(np.std(t.y_train)) or 1.0) if s.normalize else 1.0


def predict(engine: PerturbEngine, task: Task, inputs, n: int, y_scale: float) -> np.ndarray:
    out = [engine.predict(task.take(inputs, np.arange(i, min(i + EVAL_CHUNK, n)))).numpy()
           for i in range(0, n, EVAL_CHUNK)]
    return np.concatenate(out) * y_scale


def rel_l2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(pred - y) / np.linalg.norm(y))


def rel_l2_per_function(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean and median over test functions (rows) of ``||pred_i - y_i|| / ||y_i||``, the
    per-sample form operator-learning papers often report (rel_l2 is over the whole test set)."""
    errs = np.linalg.norm(pred - y, axis=1) / np.linalg.norm(y, axis=1)
    return {"mean": float(np.mean(errs)), "median": float(np.median(errs))}


def plot_curve(path: Path, history: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = [h["epoch"] for h in history]
    ax[0].semilogy(epochs, [h["train_loss"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="training loss (MSE, scaled)")
    ax[1].semilogy(epochs, [h["rel_l2"] for h in history])
    ax[1].set(xlabel="epoch", ylabel="test relative L2 error")
    fig.tight_layout()
    _save_fig(fig, path)


def plot_prediction(path: Path, task: Task, pred: np.ndarray) -> None:
    """Reference, prediction and |error| of the first test sample (a 2-D grid), the first
    three test functions (1-D), or prediction against reference (anything else)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = task.y_test
    if len(task.plot_shape) == 2:
        ref = (y[0] if task.operator else y[:, 0]).reshape(task.plot_shape)
        est = (pred[0] if task.operator else pred[:, 0]).reshape(task.plot_shape)
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.5))
        for a, img, title in zip(ax, (ref, est, np.abs(est - ref)), ("reference", "prediction", "|error|")):
            a.set_title(title)
            fig.colorbar(a.imshow(img, origin="lower"), ax=a)
    elif task.operator:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for i in range(min(3, len(y))):
            ax.plot(y[i], color=f"C{i}", label=f"reference {i}")
            ax.plot(pred[i], "--", color=f"C{i}", label=f"prediction {i}")
        ax.set(xlabel="query point", ylabel="u")
        ax.legend(fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(y.ravel(), pred.ravel(), ".", ms=2)
        ax.plot([y.min(), y.max()], [y.min(), y.max()], "k-", lw=0.5)
        ax.set(xlabel="reference", ylabel="prediction")
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _params_np(params: pt.Params) -> list[list[np.ndarray]]:
    return [[p.numpy() for p in layer] for layer in params]


def _params_torch(arrays: dict, prefix: str, n: int) -> pt.Params:
    return [[torch.as_tensor(a) for a in arrays[f"{prefix}{l}"]] for l in range(n)]


def _arrays(engine: PerturbEngine) -> dict[str, list[np.ndarray]]:
    out = {f"layer{l}": layer for l, layer in enumerate(_params_np(engine.params))}
    for name, moment in zip(("adam_m", "adam_v"), engine.moments):
        out.update({f"{name}{l}": layer for l, layer in enumerate(_params_np(moment))})
    return out


def check_direction_memory(numbers: int, batch: int) -> None:
    """Per-sample directions hold one batch's directions (float32) at once: refuse a batch whose
    directions would take more than half of this machine's memory."""
    need = 4 * numbers
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > memory / 2:
        raise UserError(f"--per-sample with batch {batch} needs {need / 2**30:.1f} GiB for one batch's directions, "
                        f"more than half of this machine's {memory / 2**30:.1f} GiB; use a smaller --batch")


def train_perturb(task: str, mode: str, grad: str, backend: str, out: str | Path | None, epochs: int | None,
                  seed: int, resume: str | Path | None = None, progress: bool = True,
                  log: Callable[[str], None] = print, overrides: dict | None = None, precision: str | None = None,
                  limit: int | None = None, hidden: tuple[int, ...] | None = None) -> dict:
    """Train by perturbation learning (or its backprop baseline); return ``metrics.json``'s dict.

    ``hidden`` replaces the task's hidden layer widths (of the MLP, or of every branch and trunk)
    for a new run.

    ``overrides`` replaces fields of the task's :class:`PerturbConfig` (benchmarks and tests;
    fixed point: of :class:`~lavasnn.engine.perturb_fixed.FixedNetConfig`). ``precision`` 'fixed' (default for lava-sim) or ``backend`` 'lava-sim' train with the on-chip
    fixed-point rule of :mod:`lavasnn.train.perturb_fixed` (``limit``: training subset size).
    """
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if mode == "weight" and grad != "surrogate" and resume is None:
        raise UserError("weight perturbation needs no spike derivative; leave --grad at surrogate")
    task = runs.absolute_data_path(task)  # the checkpoint keeps it: --resume works from any folder
    if precision not in (None, *PRECISIONS):
        raise UserError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if backend == "lava-sim" and precision == "float":
        raise UserError("backend 'lava-sim' trains in fixed point only; use --precision fixed or --backend engine")
    if hidden is not None and (resume is not None or not hidden or min(hidden) < 1):
        raise UserError("--hidden takes positive layer widths, for a new run (a resumed run keeps its own)")
    fixed_resume = resume is not None and runs.load_checkpoint(resume)[1].get("algorithm") == "perturb-fixed"
    if backend == "lava-sim" or precision == "fixed" or fixed_resume:
        if (overrides or {}).get("per_sample"):
            raise UserError("--per-sample applies to float engine runs; the on-chip rule draws one direction per batch")
        from lavasnn.train.perturb_fixed import train_perturb_fixed
        return train_perturb_fixed(task, mode, grad, backend, out, epochs, seed, resume, progress, log, limit,
                                   overrides, hidden)
    if limit is not None:
        raise UserError("--limit applies to fixed-point runs (--precision fixed or --backend lava-sim)")
    if (overrides or {}).get("rule") is not None:
        raise UserError("--rule applies to fixed-point runs (--precision fixed or --backend lava-sim)")
    if epochs is not None and epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    if resume is not None:
        arrays, attrs = runs.load_checkpoint(resume)
        if attrs.get("algorithm") != "perturb":
            raise UserError(f"{resume} holds a {attrs.get('algorithm')!r} run, not a perturbation run")
        task, seed, run_dir = attrs["task"], attrs["seed"], Path(resume)
        cfg = PerturbConfig(**{**attrs["config"], **({"epochs": epochs} if epochs else {})})
        s = replace(SETTINGS[settings_key(task)], hidden=tuple(attrs["hidden"]), neuron=NeuronConfig(**attrs["neuron"]))
        history, start_epoch, y_scale = attrs["history"], attrs["epoch"], attrs["y_scale"]
        rng = np.random.default_rng()
        rng.bit_generator.state = attrs["rng_state"]
        t = build_task(task, s, seed)
        n_groups = sum(k.startswith("layer") for k in arrays)
        params = _params_torch(arrays, "layer", n_groups)
        moments = ([_params_torch(arrays, "adam_m", n_groups), _params_torch(arrays, "adam_v", n_groups)]
                   if cfg.optimizer == "adam" else None)
        updates, total_seconds = attrs["updates"], attrs["train_seconds"]
        log(runs.resume_message(run_dir, start_epoch, cfg.epochs))
    else:
        if out is None:
            raise UserError("--out DIR is required for a new run")
        if mode not in pt.MODES:
            raise UserError(f"mode {mode!r} is not one of: {', '.join(pt.MODES)}")
        s = SETTINGS[settings_key(task)]
        s = replace(s, hidden=tuple(hidden)) if hidden else s
        cfg = s.config(mode, **{"grad": grad, "seed": seed, **({"epochs": epochs} if epochs else {}),
                                **(overrides or {})})
        t = build_task(task, s, seed)
        run_dir = runs.new_run_dir(out)
        rng = np.random.default_rng(seed)
        params, moments = t.model.init(rng), None
        y_scale = target_scale(s, t)
        history, start_epoch, updates, total_seconds = [], 0, 0, 0.0
    steps_per_epoch = -(-t.n_train // cfg.batch)
    engine = PerturbEngine(t.model, params, cfg, steps_per_epoch, moments, updates)
    y_train = _tensor(t.y_train / y_scale)
    group_samples = t.group_samples(cfg.batch)
    cost = engine.cost(t.ops(cfg.batch), group_samples)
    if cfg.per_sample:
        check_direction_memory(engine.sample_direction_count(group_samples), cfg.batch)
    grad_name = "none" if cfg.mode == "weight" else cfg.grad
    metrics = runs.load_metrics(run_dir) if start_epoch >= cfg.epochs else {}
    for epoch in range(start_epoch, cfg.epochs):
        order = rng.permutation(t.n_train)
        losses, seconds = [], 0.0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for start in range(0, t.n_train, cfg.batch):
            idx = order[start:start + cfg.batch]
            t0 = time.perf_counter()
            losses.append(engine.step(t.take(t.train_inputs, idx), y_train[idx]))
            seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3g}")
        bar.close()
        total_seconds += seconds
        train_loss = float(np.mean(losses))
        if not np.isfinite(train_loss):
            kept = f"{run_dir} keeps epoch {epoch}" if epoch else f"nothing was written to {run_dir}"
            scale = f" or --input-lr-scale (this run's: {cfg.input_lr_scale:g})" if cfg.input_lr_scale != 1 else ""
            raise UserError(f"training diverged in epoch {epoch + 1} (loss {train_loss:.3g}); {kept}; "
                            f"start again with a smaller --lr (this run's: {cfg.lr:g}){scale}")
        pred = predict(engine, t, t.test_inputs, len(t.y_test), y_scale)
        err = rel_l2(pred, t.y_test)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "rel_l2": err,
                        "seconds": seconds})
        runs.save_checkpoint(run_dir, _arrays(engine), {
            "algorithm": "perturb", "task": task, "seed": seed, "backend": backend, "config": cfg.to_dict(),
            "hidden": list(s.hidden), "neuron": s.neuron.__dict__, "epoch": epoch + 1, "updates": engine.updates,
            "rng_state": rng.bit_generator.state, "history": history, "y_scale": y_scale,
            "train_seconds": total_seconds})
        metrics = {"rel_l2": err, "task": task, "mode": cfg.mode, "grad": grad_name, "backend": backend,
                   "directions": cfg.directions, "per_sample": cfg.per_sample, "steps": engine.updates, "forward_passes_per_step": cost.forward_passes,
                   "macs_per_step": cost.macs, "seconds_per_step": total_seconds / engine.updates,
                   "activation_bytes_per_step": engine.last_activation_bytes, "n_params": engine.n_params,
                   "epochs": epoch + 1, "seed": seed, "train_loss": history[-1]["train_loss"]}
        if t.operator:
            metrics["rel_l2_per_function"] = rel_l2_per_function(pred, t.y_test)
        runs.write_json(run_dir / "loss_curve.json", history)
        runs.write_json(run_dir / "metrics.json", metrics)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['train_loss']:.4g}, rel L2 {err:.4f}, "
            f"{seconds / steps_per_epoch * 1e3:.1f} ms/step")
    if start_epoch < cfg.epochs:
        plot_curve(run_dir / "loss_curve.png", history)
        plot_prediction(run_dir / "prediction.png", t, pred)
    return metrics
