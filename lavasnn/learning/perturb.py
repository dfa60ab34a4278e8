"""Perturbation learning (randomized forward-mode gradient) for spiking networks.

Wan, Zhang, Karniadakis 2024, "Randomized forward mode gradient for spiking neural networks
in scientific machine learning", arXiv 2411.07057. The parameters theta = (theta_1 .. theta_L)
come in layer groups (a layer's weights and bias). Per training step:

* a random direction v ~ N(0, I) of theta's shape (:func:`direction`);
* the directional derivative of the loss along v, a scalar
  ``d = grad L(theta) . v`` (global, one scalar for the whole network) or one scalar per layer
  ``d_l = grad_l L(theta) . v_l`` (layer-wise, v_l the layer's block of v);
* the update ``theta_l <- theta_l - lr d v_l`` (global) or ``- lr d_l v_l`` (layer-wise).

Since E[v v^T] = I, E[d v] = grad L: the update is an unbiased estimate of gradient descent
whose variance grows with the number of weights that share one scalar (all of them globally,
one layer's for layer-wise), which is why layer-wise does better.

The spike s = H(v' - vth) has no useful derivative; d is taken through the network with

* ``surrogate``: dH/dx replaced by a Gaussian of width w (default 0.3),
  ``phi_w(x) = exp(-x^2 / 2w^2) / (sqrt(2 pi) w)``, and d computed by forward-mode
  differentiation in the same pass as the loss: dual numbers, every state carries its tangent
  along a direction (``forward_dual`` of :mod:`lavasnn.models.operator`), the spike's tangent
  is ``s_dot = phi_w(v' - vth) v'_dot``, and ``d = dL/dy . y_dot`` (:func:`mse_derivative`);
* ``stein`` (weak form): H is smoothed by Gaussian noise, ``H_w(x) = E_xi[H(x + w xi)]``,
  xi ~ N(0, 1). Stein's lemma gives ``H_w'(x) = E_xi[H(x + w xi) xi] / w``, estimated from K
  evaluations of the spike function alone,
  ``H_w'(x) ~ 1/(K w) sum_k (H(x + w xi_k) - H(x)) xi_k``
  (subtracting H(x), whose product with xi has mean zero, removes most of the variance).
  Its expectation is exactly phi_w, so both methods estimate the same derivative.

``activity`` (beyond the paper; activity-perturbed forward gradients, Ren, Kornblith, Liao,
Hinton 2023, "Scaling forward gradient with local losses") perturbs the neurons instead of the
weights: layer l's pre-activation a_l (one value per neuron, sample and, in hidden layers, time
step) moves along u_l ~ N(0, I), one tangent per layer, and forward mode gives per sample b the
scalar ``d_l,b = grad_a L_b . u_l,b``. Then ``a_hat = d_l,b u_l,b`` estimates grad_a L without
bias and the weights get the local product ``g_W = sum_{b,t} a_hat_{b,t} x_{b,t}^T``,
``g_bias = sum_{b,t} a_hat_{b,t}`` with the layer's input x (:func:`activity_gradient`). Each
estimate shares its scalar among a sample's neurons (times steps) instead of a layer's weights,
and samples draw independent u, so it varies far less than ``d_l v_l``. The combination's bias
b_0 (no neurons) keeps its weight direction. On chip it would take per-step noise u in each
neuron's input, a tag per synapse accumulating u_i x_j over the sample and the per-sample scalar
as third factor, ``dW = -lr d t``; the noise would have to reach a post-synaptic trace, which
Lava's learning engine raises only on spikes, so this mode is engine-only here.

``per_sample`` directions (global and layer-wise; beyond the paper) give every sample s of the
batch its own direction v_s (in an operator network every function for the branch, every query
point or axis point for a trunk): the one forward pass yields a scalar per sample
``d_s = grad L_s . v_s``, L_s the sample's share of the loss, and ``g = sum_s d_s v_s``
(:func:`sample_gradient`). It is unbiased like ``d v``, and since samples draw independent
directions their errors average out over the batch instead of adding up in one scalar. The
tangent of a layer's pre-activation is ``a_dot_s = V_s x_s + b_dot_s`` (:func:`sample_tangent`),
as many products as ``W_dot x``; the sum over samples adds one multiply-accumulate per weight
and sample (on chip a tag per synapse accumulating d_s v_s, v_s regenerated from a hash keyed
by the sample).

Two baselines share the code: ``weight`` perturbation, which needs no derivative at all,
``d = (L(theta + sigma v) - L(theta)) / sigma`` (two ordinary forward passes), and ``bp``,
surrogate-gradient backpropagation through time with the same spike derivative.

On chip the direction is regenerated per synapse instead of stored: v comes from a
counter-based generator (Philox) keyed by (seed, layer) with the training step as counter, so
synapse j of layer l at step k draws the j-th normal of stream (seed, l, k) whenever it needs
it (once to perturb, once to update), and the scalar d arrives as a graded third factor that
multiplies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

MODES = ("global", "layerwise", "activity", "weight", "bp")
GRADS = ("surrogate", "stein")

Params = list[list[torch.Tensor]]  # per layer group, that layer's tensors (weights, bias)
LossFn = Callable[[Params], torch.Tensor]


def gaussian_surrogate(x: torch.Tensor, width: float) -> torch.Tensor:
    """phi_w(x) = exp(-x^2 / (2 w^2)) / (sqrt(2 pi) w), the derivative of H smoothed by N(0, w^2).

    0 where exp would come within a factor e of the dtype's smallest normal number: on x86 CPUs
    exp is up to 60x slower near and below it, where most neurons are with a narrow width."""
    z = 0.5 * (x / width) ** 2
    limit = -math.log(torch.finfo(x.dtype).tiny) - 1.0
    return torch.exp(-z.clamp(max=limit)).masked_fill(z >= limit, 0.0) / (math.sqrt(2 * math.pi) * width)


def stein_derivative(x: torch.Tensor, width: float, samples: int, generator: torch.Generator
                     ) -> torch.Tensor:
    """Weak-form derivative of H at x from K forward evaluations (Stein's lemma)::

        H_w'(x) ~ 1/(K w) sum_k (H(x + w xi_k) - H(x)) xi_k,    xi_k ~ N(0, 1)
    """
    xi = torch.randn((samples, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    h0 = (x > 0).to(x.dtype)
    return (((x + width * xi) > 0).to(x.dtype) - h0).mul(xi).mean(dim=0) / width


def spike_with_derivative(s: torch.Tensor, v: torch.Tensor, deriv: torch.Tensor) -> torch.Tensor:
    """``s + deriv (v - v)``: the value is the spike s, ds/dv = deriv in forward and reverse mode."""
    return s + deriv.detach() * (v - v.detach())


@dataclass(frozen=True)
class SpikeGrad:
    """How a spike passes derivatives: 'surrogate', 'stein' (K = samples) or 'none' (value only)."""

    kind: str = "surrogate"
    width: float = 0.3
    samples: int = 16
    generator: torch.Generator | None = None

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """dH/dx at x = v' - vth: phi_w(x) or its Stein estimate."""
        if self.kind == "surrogate":
            return gaussian_surrogate(x, self.width)
        return stein_derivative(x, self.width, self.samples, self.generator)

    def __call__(self, s: torch.Tensor, v: torch.Tensor, vth: float) -> torch.Tensor:
        """The spike s with this derivative attached for autograd (identity for 'none')."""
        if self.kind == "none":
            return s
        return spike_with_derivative(s, v, self.derivative((v - vth).detach()))


def direction(seed: int, step: int, layer: int, shapes: Sequence[torch.Size],
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", draw: int = 0
              ) -> list[torch.Tensor]:
    """Layer ``layer``'s block of v ~ N(0, I) at training step ``step``.

    Counter-based: a Philox stream with key ``seed`` and counter (draw, 0, layer, step), read in
    the order of ``shapes`` (a synapse's index picks its normal); ``draw`` numbers the
    independent directions of one step. Global v is the concatenation of the blocks of every
    layer, so global and layer-wise modes draw the same numbers.
    """
    gen = np.random.Generator(np.random.Philox(key=seed, counter=[draw, 0, layer, step]))
    flat = gen.standard_normal(sum(math.prod(s) for s in shapes))
    out, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(torch.as_tensor(flat[start:start + n].reshape(shape), dtype=dtype, device=device))
        start += n
    return out


def node_noise(seed: int, step: int, layer: int, shape: Sequence[int], dtype: torch.dtype = torch.float32,
               draw: int = 0) -> torch.Tensor:
    """Layer ``layer``'s activity perturbation u ~ N(0, I) of ``shape`` at training step ``step``:
    Philox key ``seed``, counter (draw, 1, layer, step), a stream apart from the weight directions'."""
    gen = np.random.Generator(np.random.Philox(key=seed, counter=[draw, 1, layer, step]))
    return torch.as_tensor(gen.standard_normal(tuple(shape)), dtype=dtype)


def sample_directions(seed: int, step: int, layer: int, samples: int, shapes: Sequence[torch.Size],
                      dtype: torch.dtype = torch.float32, draw: int = 0) -> list[torch.Tensor]:
    """Layer ``layer``'s per-sample directions at ``step``: one v_s ~ N(0, I) per sample, tensors
    (samples, *shape) in the order of ``shapes``. Philox key ``seed``, counter
    (draw, 2, layer, step), a stream apart from :func:`direction`'s and :func:`node_noise`'s."""
    gen = np.random.Generator(np.random.Philox(key=seed, counter=[draw, 2, layer, step]))
    return [torch.as_tensor(gen.standard_normal((samples, *shape), dtype=np.float32), dtype=dtype)
            for shape in shapes]


def sample_tangent(v: list[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The tangent ``a_dot_s = V_s x_s + b_dot_s`` of a layer's pre-activation along per-sample
    directions v = [V (S, n, n_in), b_dot (S, n)], as a function of the layer's input x,
    (S, n_in) or (T, S, n_in)."""
    V, b_dot = v
    return lambda x: torch.einsum("soi,...si->...so", V, x.to(V.dtype)) + b_dot


def sample_gradient(d: torch.Tensor, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """``g = sum_s d_s v_s`` from per-sample scalars d (S,) and directions v (tensors (S, ...))."""
    return [torch.tensordot(d.to(q.dtype), q, dims=1) for q in v]


def activity_gradient(d: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """[g_W, g_bias] of a layer from its per-sample scalars d (B,), its perturbation u and its
    input x: ``a_hat = d_b u_b``, ``g_W = sum a_hat x^T``, ``g_bias = sum a_hat`` over samples
    (and steps). u and x are (B, n) and (B, n_in) for a current computed once (first layer,
    readout), (T, B, n) and (T, B, n_in) for a hidden layer."""
    if u.dim() == 2:
        a_hat = d[:, None] * u
        return [a_hat.T @ x.to(u.dtype), a_hat.sum(dim=0)]
    a_hat = d[None, :, None] * u
    return [torch.einsum("tbi,tbj->ij", a_hat, x.to(u.dtype)), a_hat.sum(dim=(0, 1))]


def directions(seed: int, step: int, params: Params, draw: int = 0) -> Params:
    """v for every layer group at ``step`` (see :func:`direction`)."""
    return [direction(seed, step, l, [p.shape for p in layer], layer[0].dtype, layer[0].device, draw)
            for l, layer in enumerate(params)]


def global_tangents(v: Params) -> Params:
    """Tangents for one forward-mode pass along v: every tensor gets a leading direction axis of 1."""
    return [[q.unsqueeze(0) for q in vl] for vl in v]


def layerwise_tangents(v: Params) -> Params:
    """L tangent directions at once: direction l is v_l on layer l and zero elsewhere."""
    L = len(v)
    out = []
    for l, vl in enumerate(v):
        layer = []
        for q in vl:
            t = torch.zeros((L, *q.shape), dtype=q.dtype, device=q.device)
            t[l] = q
            layer.append(t)
        out.append(layer)
    return out


def mse_derivative(y: torch.Tensor, y_dot: torch.Tensor, target: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """L = mean((y - target)^2) and its directional derivatives ``d = mean(2 (y - target) y_dot)``
    for each direction (y_dot has a leading direction axis)."""
    err = y - target
    return (err ** 2).mean(), (2 * err * y_dot).flatten(1).mean(dim=1)


def weight_derivative(loss_fn: LossFn, params: Params, v: Params, sigma: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(L(theta), d = (L(theta + sigma v) - L(theta)) / sigma): two plain forward passes."""
    loss = loss_fn(params)
    shifted = [[p + sigma * q for p, q in zip(layer, vl)] for layer, vl in zip(params, v)]
    return loss, ((loss_fn(shifted) - loss) / sigma).reshape(1)


def backprop_gradient(loss_fn: LossFn, params: Params) -> tuple[torch.Tensor, Params]:
    """(L(theta), grad L) by reverse mode through time, with the same spike derivative."""
    leaves = [[p.detach().requires_grad_(True) for p in layer] for layer in params]
    loss = loss_fn(leaves)
    flat = torch.autograd.grad(loss, [p for layer in leaves for p in layer])
    grads, i = [], 0
    for layer in leaves:
        grads.append(list(flat[i:i + len(layer)]))
        i += len(layer)
    return loss.detach(), grads


def forward_gradient(d: torch.Tensor, v: Params) -> Params:
    """The gradient estimate g_l = d v_l (one scalar d) or d_l v_l (one scalar per layer)."""
    scale = d.expand(len(v)) if d.numel() == 1 else d
    return [[s * q for q in vl] for s, vl in zip(scale, v)]


def sgd_update(params: Params, grads: Params, lrs: list[float]) -> Params:
    """theta_l <- theta_l - lr_l g_l for each group l: with g = d v this is the on-chip rule
    dW = -lr d v, with one learning rate per layer."""
    return [[p - lr * g for p, g in zip(layer, gl)] for layer, gl, lr in zip(params, grads, lrs, strict=True)]
