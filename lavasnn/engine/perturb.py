"""Batched training loop for perturbation learning and its backprop baseline, with cost counters.

One training step on a batch (inputs, targets), loss ``L = mean((y - target)^2)``:

* ``global`` / ``layerwise``: directional derivative(s) d along v by forward mode
  (:mod:`lavasnn.learning.perturb`), gradient estimate ``g_l = d v_l`` or ``d_l v_l``; with
  ``per_sample``, one direction and scalar per sample, ``g_l = sum_s d_l,s v_l,s``;
* ``activity``: per-sample scalars d_l,b along neuron perturbations u_l by forward mode,
  ``g_W = sum (d_l,b u_l,b) x^T`` (:func:`lavasnn.learning.perturb.activity_gradient`);
* ``weight``: ``d = (L(theta + sigma v) - L(theta)) / sigma``, ``g = d v``;
* ``bp``: g = the surrogate gradient by backprop through time;

with ``directions`` K > 1 (forward-gradient modes) g is the mean of K estimates along
independent draws, which divides the estimate's variance by K;

then ``theta_l <- theta_l - lr_k,l g_l`` (``sgd``: the on-chip rule, the scalar lr_k,l d times the
regenerated v_ij) or Adam on g (two moments per synapse and a square root: more per-synapse state than the
weight and its one tag on Loihi 2, so Adam is an engine option, not an on-chip rule), with
``lr_k,l = lr * decay^(k / steps_per_epoch)``, times ``input_lr_scale`` for the layers fed by the
data (``model.input_groups``; on chip a per-layer constant of the learning rule).

Cost per step, counted from the model's list of products (:class:`lavasnn.models.Op`), with F
the forward pass's multiply-accumulates:

* forward passes: 1 (global, layerwise, activity, bp), 2 (weight); forward mode carries 1
  (global) or L (layer-wise and activity, one per layer group) tangents along its single pass;
* MACs: forward F; a derivative repeats each product once per operand that carries it
  (:func:`derivative_macs`): reverse mode and global forward mode for every operand, the
  layer-wise tangent of layer k only for k's weights and the products downstream of k (the
  engine carries each tangent only from its layer on, so it computes what it counts); activity
  the same as layer-wise, its local product sum a_hat x^T taking the place of the tangent's
  W_dot x; per-sample directions as layer-wise (or global), their tangent ``V_s x_s`` in place
  of ``W_dot x``, plus one MAC per weight and sample for ``sum_s d_s v_s``; weight perturbation
  2F; K directions repeat the forward-mode pass K times (K passes, K times its MACs); every mode
  adds one MAC per parameter for the update;
* activation memory: bytes of the tensors autograd keeps for the backward pass, measured with
  :func:`torch.autograd.graph.saved_tensors_hooks` (forward-mode passes keep none), plus, in
  activity mode, the layers' inputs kept for the local products;
* seconds: wall-clock time of the step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from lavasnn.errors import UserError
from lavasnn.learning import perturb as pt
from lavasnn.models.operator import Op

OPTIMIZERS = ("sgd", "adam")
FORWARD_MODES = ("global", "layerwise", "activity")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class PerturbConfig:
    """Training settings; ``sigma`` is the weight-perturbation step, ``stein_samples`` Stein's
    noise draws per neuron, ``directions`` the forward-gradient estimates averaged per step."""

    mode: str = "layerwise"
    grad: str = "surrogate"
    lr: float = 1e-3
    optimizer: str = "adam"
    lr_decay: float = 1.0  # factor per epoch
    batch: int = 100
    epochs: int = 100
    width: float = 0.3
    stein_samples: int = 16
    sigma: float = 1e-3
    seed: int = 0
    input_lr_scale: float = 1.0  # lr factor for the layers fed by the data (model.input_groups)
    directions: int = 1  # forward-gradient modes: estimates (independent draws) averaged per step
    per_sample: bool = False  # global / layerwise: one weight direction per sample instead of per batch

    def __post_init__(self) -> None:
        if self.mode not in pt.MODES:
            raise UserError(f"mode {self.mode!r} is not one of: {', '.join(pt.MODES)}")
        if self.grad not in pt.GRADS:
            raise UserError(f"grad {self.grad!r} is not one of: {', '.join(pt.GRADS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer {self.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
        for name in ("lr", "lr_decay", "width", "sigma", "input_lr_scale"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch", "epochs", "stein_samples", "directions"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        if self.per_sample and self.mode not in ("global", "layerwise"):
            raise UserError(f"per-sample directions apply to modes global and layerwise (activity perturbs "
                            f"each sample already); mode {self.mode!r} draws one per batch")
        if self.directions > 1 and self.mode not in FORWARD_MODES:
            raise UserError(f"directions > 1 averages forward-gradient estimates ({', '.join(FORWARD_MODES)}); "
                            f"mode {self.mode!r} takes 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepCost:
    forward_passes: int
    macs: int


def derivative_macs(ops: list[Op], perturbed: set[int]) -> int:
    """MACs that carry derivatives of the groups ``perturbed`` through the products ``ops``
    (in forward order): a product counts once for a perturbed weight operand and once per
    source whose output already carries a derivative."""
    carries, total = set(perturbed), 0
    for o in ops:
        n = int(o.weight and o.group in perturbed) + sum(s in carries for s in o.sources)
        if n:
            carries.add(o.group)
        total += n * o.macs
    return total


def step_cost(mode: str, ops: list[Op], n_params: int, n_groups: int, directions: int = 1,
              shared_primal: bool = False, sample_sum_macs: int = 0) -> StepCost:
    """Forward passes and multiply-accumulates of one training step (module docstring); with
    ``directions`` K > 1 the step repeats the forward-mode pass K times, or, with
    ``shared_primal`` (the on-chip rule: K tangent compartments per neuron), runs the primal
    pass once and the K tangents beside it. ``sample_sum_macs``: per estimate, the sums
    ``sum_s d_s v_s`` of per-sample directions."""
    forward = sum(o.macs for o in ops)
    if mode == "weight":
        return StepCost(2, 2 * forward + n_params)
    tangents = [set(range(n_groups))] if mode in ("bp", "global") else [{k} for k in range(n_groups)]
    derivative = sum(derivative_macs(ops, groups) for groups in tangents)
    if shared_primal:
        return StepCost(1, forward + directions * (derivative + sample_sum_macs) + n_params)
    return StepCost(directions, directions * (forward + derivative + sample_sum_macs) + n_params)


class SavedBytes:
    """Counts the bytes of distinct tensors autograd saves for backward inside the context."""

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[tuple[int, int]] = set()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += key[1]
        return t

    def __enter__(self) -> "SavedBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class PerturbEngine:
    """Trains ``model`` (SpikingMLP / SpikingDeepONet / SpikingSepONet) from ``params``.

    ``updates`` counts training steps; it keys the directions and the Stein noise, so a resumed
    engine draws the same numbers as one that never stopped.
    """

    def __init__(self, model, params: pt.Params, cfg: PerturbConfig, steps_per_epoch: int,
                 optimizer_state: list[pt.Params] | None = None, updates: int = 0) -> None:
        self.model, self.cfg, self.steps_per_epoch = model, cfg, steps_per_epoch
        self.params = [[p.detach().clone() for p in layer] for layer in params]
        self.updates = updates
        groups = model.input_groups
        self.lr_scales = [cfg.input_lr_scale if k in groups else 1.0 for k in range(len(self.params))]
        if cfg.optimizer == "adam":
            zeros = lambda: [[torch.zeros_like(p) for p in layer] for layer in self.params]  # noqa: E731
            self.moments = optimizer_state or [zeros(), zeros()]
        else:
            self.moments = []
        self.generator = torch.Generator(device=self.params[0][0].device)
        self.last_activation_bytes = 0
        self.kept_input_bytes = 0  # activity mode: the layers' inputs kept for the local products

    @property
    def n_params(self) -> int:
        return sum(p.numel() for layer in self.params for p in layer)

    def spike_grad(self, draw: int = 0) -> pt.SpikeGrad:
        if self.cfg.mode == "weight":
            return pt.SpikeGrad("none")
        key = [self.cfg.seed, self.updates, 1] + ([draw] if draw else [])
        self.generator.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
        return pt.SpikeGrad(self.cfg.grad, self.cfg.width, self.cfg.stein_samples, self.generator)

    def loss_fn(self, inputs, targets: torch.Tensor, spike: pt.SpikeGrad) -> pt.LossFn:
        return lambda params: ((self.model.forward(params, inputs, spike) - targets) ** 2).mean()

    def gradient(self, inputs, targets: torch.Tensor) -> tuple[float, pt.Params]:
        """(loss, gradient estimate) at the current parameters for one batch: the mean of
        ``cfg.directions`` independent estimates (draws 0 .. K-1)."""
        if self.cfg.mode == "bp":
            loss, grads = pt.backprop_gradient(self.loss_fn(inputs, targets, self.spike_grad()), self.params)
            return float(loss), grads
        estimates = [self._estimate(inputs, targets, draw) for draw in range(self.cfg.directions)]
        mean = [[sum(draws) / len(estimates) for draws in zip(*layer)] for layer in zip(*(g for _, g in estimates))]
        return estimates[0][0], mean

    def _estimate(self, inputs, targets: torch.Tensor, draw: int) -> tuple[float, pt.Params]:
        """(loss, one gradient estimate along the directions of draw ``draw``)."""
        v = pt.directions(self.cfg.seed, self.updates, self.params, draw)
        if self.cfg.mode == "activity" or self.cfg.per_sample:
            return self._node_gradient(inputs, targets, v, draw)
        with torch.no_grad():
            if self.cfg.mode == "weight":
                loss_fn = self.loss_fn(inputs, targets, pt.SpikeGrad("none"))
                loss, d = pt.weight_derivative(loss_fn, self.params, v, self.cfg.sigma)
            else:
                tangents = pt.global_tangents(v) if self.cfg.mode == "global" else pt.layerwise_tangents(v)
                y, y_dot = self.model.forward_dual(self.params, tangents, inputs, self.spike_grad(draw).derivative)
                loss, d = pt.mse_derivative(y, y_dot, targets)
        return float(loss), pt.forward_gradient(d, v)

    @torch.no_grad()
    def _node_gradient(self, inputs, targets: torch.Tensor, v: pt.Params, draw: int) -> tuple[float, pt.Params]:
        """Tangents that start at the layers' neurons: activity perturbation (u) or per-sample
        weight directions (``V_s x_s + b_dot_s``); the groups without neurons (b_0) keep their
        weight direction. One forward pass, one tangent per layer (global: one in all)."""
        node_groups = set(self.model.node_groups)
        shapes = self.model.node_shapes(inputs)
        tangent_of = [0 if self.cfg.mode == "global" else k for k in range(len(v))]  # each group's direction
        if self.cfg.mode == "activity":
            u = {k: pt.node_noise(self.cfg.seed, self.updates, k, shapes[k], draw=draw) for k in node_groups}
        else:
            vs = {k: pt.sample_directions(self.cfg.seed, self.updates, k, shapes[k][-2],
                                          [p.shape for p in self.params[k]], self.params[k][0].dtype, draw)
                  for k in node_groups}
            u = {k: pt.sample_tangent(vs[k]) for k in node_groups}
        weight_v = [[torch.zeros_like(q) for q in vl] if k in node_groups else vl for k, vl in enumerate(v)]
        tangents = pt.global_tangents(weight_v) if self.cfg.mode == "global" else pt.layerwise_tangents(weight_v)
        record: list[torch.Tensor] = []
        y, y_dot = self.model.forward_dual(self.params, tangents, inputs, self.spike_grad(draw).derivative,
                                           [(tangent_of[k], u[k]) if k in node_groups else None
                                            for k in range(len(v))], record)
        if self.cfg.mode == "activity":
            self.kept_input_bytes = sum(x.numel() * x.element_size() for x in record)
        err = y - targets
        c = 2 * err * y_dot / err.numel()  # dL/dy times y_dot, per direction and output
        grads = []
        for k, vk in enumerate(v):
            if k not in node_groups:
                grads.append([c[tangent_of[k]].sum() * q for q in vk])
                continue
            d = self.model.sample_sums(c[tangent_of[k]], k, inputs)  # one scalar per sample
            grads.append(pt.activity_gradient(d, u[k], record[k]) if self.cfg.mode == "activity"
                         else pt.sample_gradient(d, vs[k]))
        return float((err ** 2).mean()), grads

    def step(self, inputs, targets: torch.Tensor) -> float:
        """One training step; returns the batch loss before the update."""
        self.kept_input_bytes = 0
        with SavedBytes() as saved:
            loss, grads = self.gradient(inputs, targets)
        self.last_activation_bytes = saved.bytes + self.kept_input_bytes
        lr = self.cfg.lr * self.cfg.lr_decay ** (self.updates / self.steps_per_epoch)
        lrs = [lr * scale for scale in self.lr_scales]
        self.updates += 1
        if self.cfg.optimizer == "sgd":
            self.params = pt.sgd_update(self.params, grads, lrs)
        else:
            self.params = self._adam(grads, lrs)
        return loss

    def _adam(self, grads: pt.Params, lrs: list[float]) -> pt.Params:
        (b1, b2), k = ADAM_BETAS, self.updates
        m, s = self.moments
        m = [[b1 * a + (1 - b1) * g for a, g in zip(ml, gl)] for ml, gl in zip(m, grads)]
        s = [[b2 * a + (1 - b2) * g * g for a, g in zip(sl, gl)] for sl, gl in zip(s, grads)]
        self.moments = [m, s]
        step = [[(a / (1 - b1 ** k)) / (torch.sqrt(b / (1 - b2 ** k)) + ADAM_EPS) for a, b in zip(ml, sl)]
                for ml, sl in zip(m, s)]
        return pt.sgd_update(self.params, step, lrs)

    @torch.no_grad()
    def predict(self, inputs) -> torch.Tensor:
        return self.model.forward(self.params, inputs, pt.SpikeGrad("none"))

    def sample_direction_count(self, group_samples: list[int]) -> int:
        """Numbers one per-sample estimate draws, ``sum_k S_k |theta_k|`` over the layer groups
        with neurons (S_k the batch's samples of group k, ``Task.group_samples``); also the MACs
        of its sums ``sum_s d_s v_s``."""
        return sum(n * sum(p.numel() for p in self.params[k])
                   for k, n in enumerate(group_samples) if k in self.model.node_groups)

    def cost(self, ops: list[Op], group_samples: list[int] | None = None) -> StepCost:
        """The step's cost for the products ``ops`` of one batch; per-sample directions also need
        the samples the batch gives each layer group."""
        sample_sums = 0
        if self.cfg.per_sample:
            if group_samples is None:
                raise ValueError("per-sample directions: cost() needs group_samples")
            sample_sums = self.sample_direction_count(group_samples)
        return step_cost(self.cfg.mode, ops, self.n_params, len(self.params), self.cfg.directions,
                         sample_sum_macs=sample_sums)

