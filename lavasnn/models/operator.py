"""Spiking regressors and operator networks: feed-forward, DeepONet, SepONet.

Every hidden layer is a layer of LIF neurons (the soma of the multi-compartment neuron,
:func:`lavasnn.engine.steps.soma_step_float`: current reset every step, soft reset) run for T
steps::

    v'_t = (1 - dv) v_{t-1} + W x_t + b,    s_t = H(v'_t - vth),    v_t = v'_t - vth s_t

The first layer receives the real-valued input as a constant current (W x every step); later
layers receive the previous layer's spikes. A network's output is rate-decoded: a linear
readout ``y = W_out r + b_out`` of the firing rates ``r = (1/T) sum_t s_t`` of its last
hidden layer. As in Wan, Zhang, Karniadakis (arXiv 2411.07057):

* :class:`SpikingMLP`: ``y = MLP(x)``, for function regression;
* :class:`SpikingDeepONet` (Lu et al. 2021): a branch MLP of the input function f at the
  sensors and a trunk MLP of the query point y, ``G(f)(y) = sum_k b_k(f) t_k(y) + b_0``;
* :class:`SpikingSepONet` (Yu et al. 2024): one trunk per coordinate,
  ``G(f)(y_1, .., y_d) = sum_k b_k(f) prod_i t^i_k(y_i) + b_0``, evaluated on the grid
  ``trunk_axes[0] x .. x trunk_axes[d-1]`` at the cost of d small trunks.

``forward`` computes y (differentiable by autograd through the spike function's attached
derivative, for backprop); ``forward_dual`` computes y and its tangents y_dot along D
directions at once (dual numbers for forward-mode gradients). The tangent of a LIF layer obeys
the same linear recursion with the spike held fixed (no reset term); the spike adds
``s_dot = H'(v' - vth) v'_dot``. A tangent carries only the directions that have reached it
(``forward_live``): layer-wise, direction l is zero before layer l, and skipping those zero
parts leaves the arithmetic the rule needs (the MACs the engine counts).
For activity perturbation and per-sample weight directions, ``forward_dual`` also takes
``nodes``, tangents that start at a layer's pre-activations (shapes ``node_shapes``), and
``record`` keeps each layer's input; ``sample_sums`` adds an output's per-entry terms up per
sample of a layer (a function for the branch, a query point or axis point for a trunk).

Parameters are plain tensors in layer groups ``[[W, b], ...]`` (the combination's b_0 is a
group of its own) so that perturbation rules can address them layer by layer. ``ops`` lists
every product the forward pass computes, for the cost counters of the training engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from lavasnn.engine.steps import MCLIFParams, dense_float, soma_step_float
from lavasnn.learning.perturb import Params

SpikeFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (s, v', vth) -> s
DerivFn = Callable[[torch.Tensor], torch.Tensor]  # x = v' - vth -> dH/dx


@dataclass(frozen=True)
class NeuronConfig:
    """LIF settings shared by every hidden layer: T steps, voltage decay dv, threshold vth."""

    steps: int = 16
    dv: float = 0.1
    vth: float = 1.0
    w_scale: float = 1.0  # initial weights U(-a, a), a = w_scale / sqrt(fan_in)


class Op(NamedTuple):
    """One product of the forward pass: ``macs`` multiply-accumulates in layer group ``group``,
    ``weight`` True when one operand is that group's weights, ``sources`` the groups whose
    outputs are its other operands (empty for the data). Reverse and forward mode repeat the
    product once per operand that carries a derivative."""

    group: int
    macs: int
    weight: bool
    sources: tuple[int, ...]


def _soma_params(neuron: NeuronConfig, bias: torch.Tensor) -> MCLIFParams:
    """The LIF soma of :func:`lavasnn.engine.steps.soma_step_float`: soft reset, current = input."""
    return MCLIFParams(du=1.0, dv=neuron.dv, dd=0.0, vth=neuron.vth, bias=bias, soft_reset=True, grad_win=0.0)


def lif_layer(current: torch.Tensor, bias: torch.Tensor, neuron: NeuronConfig, spike: SpikeFn
              ) -> torch.Tensor:
    """Spikes (T, ..., n) of LIF neurons driven by ``current`` (T, ..., n) and bias (n,)."""
    p = _soma_params(neuron, bias)
    v = torch.zeros_like(current[0])
    spikes = []
    for a in current:
        _, s, v = soma_step_float(v, a, p)
        # v' rebuilt as v + vth s (v' up to rounding), the form the recorded benchmarks used
        spikes.append(spike(s, v + neuron.vth * s, neuron.vth))
    return torch.stack(spikes)


def lif_layer_dual(current: torch.Tensor, current_dot: torch.Tensor, bias: torch.Tensor,
                   bias_dot: torch.Tensor, neuron: NeuronConfig, deriv: DerivFn
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes (T, ..., n) and their tangents (D, T, ..., n) along D directions.

    current_dot (D, T, ..., n), bias_dot (D, n). The tangent state follows the neuron's own
    step with the spike held fixed (no reset):
    ``v'_dot_t = (1 - dv) v_dot_{t-1} + a_dot_t + b_dot``, ``s_dot_t = H'(v'_t - vth) v'_dot_t``.
    """
    bias_dot = bias_dot.reshape(bias_dot.shape[0], *([1] * (current.dim() - 2)), bias_dot.shape[-1])
    p = _soma_params(neuron, bias)
    v = torch.zeros_like(current[0])
    v_dot = torch.zeros_like(current_dot[:, 0])
    spikes, tangents = [], []
    for t in range(current.shape[0]):
        _, s, v = soma_step_float(v, current[t], p)
        v_dot = v_dot * (1 - neuron.dv) + current_dot[:, t] + bias_dot
        spikes.append(s)
        tangents.append(deriv(v + neuron.vth * s - neuron.vth) * v_dot)  # v' as in lif_layer
    return torch.stack(spikes), torch.stack(tangents, dim=1)


def live_directions(group: list[torch.Tensor]) -> torch.Tensor:
    """Indices of the directions (leading axis) along which any tensor of ``group`` is non-zero."""
    return torch.stack([t.flatten(1).ne(0).any(dim=1) for t in group]).any(dim=0).nonzero().flatten()


def add_tangents(parts: list[tuple[torch.Tensor, torch.Tensor]], live: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum tangents given on subsets of the directions: ``parts`` [(directions, tangent
    (len(directions), ...))], all of one shape after the direction axis -> (``live``, sum).
    ``live`` defaults to the union of the parts' directions (sorted)."""
    if live is None:
        live = torch.unique(torch.cat([d for d, _ in parts]))
    out = parts[0][1].new_zeros((len(live), *parts[0][1].shape[1:]))
    for d, t in parts:
        out.index_add_(0, torch.searchsorted(live, d), t)
    return live, out


def scatter_tangents(live: torch.Tensor, tangent: torch.Tensor, n_directions: int) -> torch.Tensor:
    """The tangent along all ``n_directions`` directions, zero off ``live``."""
    return add_tangents([(live, tangent)], torch.arange(n_directions))[1]


def dense_live(W: torch.Tensor, W_dot: torch.Tensor, w_live: torch.Tensor, x: torch.Tensor,
               x_live: torch.Tensor, x_dot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a = W x`` and ``a_dot = W_dot x + W x_dot`` on the directions ``w_live`` of the layer
    and ``x_live`` of its input: (a, their union ``live``, a_dot)."""
    live, a_dot = add_tangents([(w_live, torch.einsum("dij,...j->d...i", W_dot[w_live], x.to(W.dtype))),
                                (x_live, dense_float(W, x_dot))])
    return dense_float(W, x), live, a_dot


# (direction index, tangent of a layer's pre-activation, or that tangent as a function of the layer's input)
Node = tuple[int, torch.Tensor | Callable[[torch.Tensor], torch.Tensor]] | None


def add_node(live: torch.Tensor, a_dot: torch.Tensor, node: Node, x: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(live, a_dot) with the node tangent ``node = (k, u)`` added as direction k: activity
    perturbation sets the tangent of a layer's pre-activation a to u, per-sample weight
    directions to ``u(x)`` of the layer's input x."""
    if node is None:
        return live, a_dot
    k, u = node
    u = u(x) if callable(u) else u
    return add_tangents([(live, a_dot), (torch.tensor([k]), u.unsqueeze(0).to(a_dot.dtype))])


def _init_layer(rng: np.random.Generator, n_in: int, n_out: int, w_scale: float) -> list[torch.Tensor]:
    a = w_scale / np.sqrt(n_in)
    return [torch.as_tensor(rng.uniform(-a, a, (n_out, n_in)), dtype=torch.float32),
            torch.as_tensor(rng.uniform(-a, a, n_out), dtype=torch.float32)]


@dataclass(frozen=True)
class SpikingMLP:
    """Spiking feed-forward regressor ``sizes = (n_in, hidden..., n_out)``, one group per layer."""

    sizes: tuple[int, ...]
    neuron: NeuronConfig = NeuronConfig()

    @property
    def n_groups(self) -> int:
        return len(self.sizes) - 1

    @property
    def input_groups(self) -> tuple[int, ...]:
        """The groups whose weights multiply the data (the first layer)."""
        return (0,)

    @property
    def node_groups(self) -> tuple[int, ...]:
        """The groups that are a layer of neurons (all of them), for activity perturbation."""
        return tuple(range(self.n_groups))

    def init(self, rng: np.random.Generator) -> Params:
        return [_init_layer(rng, a, b, self.neuron.w_scale) for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def forward(self, params: Params, x: torch.Tensor, spike: SpikeFn) -> torch.Tensor:
        """x (B, n_in) -> y (B, n_out)."""
        T = self.neuron.steps
        s = lif_layer(dense_float(params[0][0], x).expand(T, *x.shape[:-1], -1), params[0][1], self.neuron, spike)
        for W, b in params[1:-1]:
            s = lif_layer(dense_float(W, s), b, self.neuron, spike)
        W, b = params[-1]
        return dense_float(W, s.mean(dim=0)) + b

    def forward_dual(self, params: Params, tangents: Params, x: torch.Tensor, deriv: DerivFn,
                     nodes: list[Node] | None = None, record: list | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, n_out) and y_dot (D, B, n_out); tangents hold a leading direction axis D.
        ``nodes`` and ``record`` as in :meth:`forward_live`."""
        y, live, y_dot = self.forward_live(params, tangents, x, deriv, nodes, record)
        return y, scatter_tangents(live, y_dot, tangents[0][0].shape[0])

    def forward_live(self, params: Params, tangents: Params, x: torch.Tensor, deriv: DerivFn,
                     nodes: list[Node] | None = None, record: list | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """y, the directions ``live`` along which y moves, and y_dot (len(live), B, n_out).

        A layer's tangent carries only the directions that reach it: layer-wise, direction l
        starts at layer l, so the first layer's neurons carry one tangent instead of L.
        ``nodes[l]`` (optional) adds a tangent of layer l's pre-activation (:func:`add_node`),
        of shape :meth:`node_shapes`; ``record`` (optional) receives each layer's input."""
        T = self.neuron.steps
        nodes = nodes or [None] * self.n_groups
        record = [] if record is None else record
        (W, b), (W_dot, b_dot) = params[0], tangents[0]
        live = live_directions(tangents[0])
        a, a_dot = dense_float(W, x), torch.einsum("dij,...j->d...i", W_dot[live], x.to(W.dtype))
        live, a_dot = add_node(live, a_dot, nodes[0], x)
        record.append(x)
        s, s_dot = lif_layer_dual(a.expand(T, *a.shape), a_dot.unsqueeze(1).expand(-1, T, *a.shape),
                                  b, b_dot[live], self.neuron, deriv)
        for (W, b), (W_dot, b_dot), node in zip(params[1:-1], tangents[1:-1], nodes[1:-1]):
            a, live, a_dot = dense_live(W, W_dot, live_directions([W_dot, b_dot]), s, live, s_dot)
            live, a_dot = add_node(live, a_dot, node, s)
            record.append(s)
            s, s_dot = lif_layer_dual(a, a_dot, b, b_dot[live], self.neuron, deriv)
        (W, b), (W_dot, b_dot) = params[-1], tangents[-1]
        r = s.mean(dim=0)
        y, live, y_dot = dense_live(W, W_dot, live_directions([W_dot, b_dot]), r, live, s_dot.mean(dim=1))
        record.append(r)
        return (y + b, *add_node(live, y_dot + b_dot[live].unsqueeze(1), nodes[-1], r))

    def node_shapes(self, x: torch.Tensor) -> list[tuple[int, ...]]:
        """Shapes of the layers' pre-activations for inputs x (B, n_in): the first layer's input
        current is the same every step (B, n_1), hidden layers' (T, B, n), the readout's (B, n_out)."""
        n, batch = self.sizes, len(x)
        return [(batch, n[1])] + [(self.neuron.steps, batch, k) for k in n[2:-1]] + [(batch, n[-1])]

    def sample_sums(self, c: torch.Tensor, group: int, x: torch.Tensor) -> torch.Tensor:
        """Per input sample, the sum of ``c`` (B, n_out) over the outputs that sample moves."""
        return c.sum(dim=-1)

    def ops(self, batch: int, first_group: int = 0) -> list[Op]:
        """Products for ``batch`` inputs: the input current once, hidden layers every step."""
        T, n, g = self.neuron.steps, self.sizes, first_group
        out = [Op(g, batch * n[0] * n[1], True, ())]
        out += [Op(g + l, T * batch * n[l] * n[l + 1], True, (g + l - 1,)) for l in range(1, len(n) - 2)]
        out.append(Op(g + len(n) - 2, batch * n[-2] * n[-1], True, (g + len(n) - 3,)))
        return out


@dataclass(frozen=True)
class SpikingDeepONet:
    """Branch MLP (m sensors -> p) and trunk MLP (d coordinates -> p), then a dot product + b_0."""

    branch: SpikingMLP
    trunk: SpikingMLP

    @property
    def n_groups(self) -> int:
        return self.branch.n_groups + self.trunk.n_groups + 1

    @property
    def input_groups(self) -> tuple[int, ...]:
        """The first layers of the branch and of the trunk."""
        return (0, self.branch.n_groups)

    @property
    def node_groups(self) -> tuple[int, ...]:
        """Every group but b_0: the layers of the branch and the trunk."""
        return tuple(range(self.n_groups - 1))

    def node_shapes(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> list[tuple[int, ...] | None]:
        return self.branch.node_shapes(inputs[0]) + self.trunk.node_shapes(inputs[1]) + [None]

    def sample_sums(self, c: torch.Tensor, group: int, inputs) -> torch.Tensor:
        """Per sample of ``group``'s sub-network, the sum of ``c`` (N_f, N_y) over the outputs it
        moves: a branch sample (function) moves its row, a trunk sample (point) its column."""
        return c.sum(dim=1) if group < self.branch.n_groups else c.sum(dim=0)

    def init(self, rng: np.random.Generator) -> Params:
        return self.branch.init(rng) + self.trunk.init(rng) + [[torch.zeros(1)]]

    def forward(self, params: Params, inputs: tuple[torch.Tensor, torch.Tensor], spike: SpikeFn) -> torch.Tensor:
        """(f at sensors (N_f, m), query points (N_y, d)) -> G(f)(y) (N_f, N_y)."""
        nb = self.branch.n_groups
        b = self.branch.forward(params[:nb], inputs[0], spike)
        t = self.trunk.forward(params[nb:-1], inputs[1], spike)
        return b @ t.T + params[-1][0]

    def forward_dual(self, params: Params, tangents: Params, inputs: tuple[torch.Tensor, torch.Tensor],
                     deriv: DerivFn, nodes: list[Node] | None = None, record: list | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """G (N_f, N_y) and its tangents (D, N_f, N_y): ``G_dot = b_dot t^T + b t_dot^T + b0_dot``.
        ``nodes`` and ``record`` as in :meth:`SpikingMLP.forward_live`, over all groups."""
        nb, nodes = self.branch.n_groups, nodes or [None] * self.n_groups
        b, b_live, b_dot = self.branch.forward_live(params[:nb], tangents[:nb], inputs[0], deriv, nodes[:nb], record)
        t, t_live, t_dot = self.trunk.forward_live(params[nb:-1], tangents[nb:-1], inputs[1], deriv, nodes[nb:-1],
                                                   record)
        _, g_dot = add_tangents([(b_live, b_dot @ t.T), (t_live, b @ t_dot.transpose(1, 2))],
                                torch.arange(tangents[-1][0].shape[0]))
        return b @ t.T + params[-1][0], g_dot + tangents[-1][0].unsqueeze(-1)

    def ops(self, n_funcs: int, n_points: int) -> list[Op]:
        nb, p = self.branch.n_groups, self.branch.sizes[-1]
        return (self.branch.ops(n_funcs) + self.trunk.ops(n_points, nb)
                + [Op(self.n_groups - 1, n_funcs * n_points * p, False, (nb - 1, self.n_groups - 2))])


@dataclass(frozen=True)
class SpikingSepONet:
    """Branch MLP (m -> p) and one trunk MLP (1 -> p) per coordinate axis, then
    ``sum_k b_k prod_i t^i_k`` on the grid + b_0."""

    branch: SpikingMLP
    trunks: tuple[SpikingMLP, ...]

    @property
    def n_groups(self) -> int:
        return self.branch.n_groups + sum(t.n_groups for t in self.trunks) + 1

    @property
    def input_groups(self) -> tuple[int, ...]:
        """The first layers of the branch and of every trunk."""
        starts = np.cumsum([self.branch.n_groups] + [t.n_groups for t in self.trunks])
        return tuple(int(k) for k in [0, *starts[:-1]])

    def init(self, rng: np.random.Generator) -> Params:
        return self.branch.init(rng) + [g for t in self.trunks for g in t.init(rng)] + [[torch.zeros(1)]]

    @property
    def node_groups(self) -> tuple[int, ...]:
        """Every group but b_0: the layers of the branch and the trunks."""
        return tuple(range(self.n_groups - 1))

    def node_shapes(self, inputs) -> list[tuple[int, ...] | None]:
        return (self.branch.node_shapes(inputs[0])
                + [shape for trunk, axis in zip(self.trunks, inputs[1]) for shape in trunk.node_shapes(axis)] + [None])

    def sample_sums(self, c: torch.Tensor, group: int, inputs) -> torch.Tensor:
        """Per sample of ``group``'s sub-network, the sum of ``c`` (N_f, n_1 * .. * n_d) over the
        outputs it moves: a branch sample (function) moves its row, a sample of trunk i (a point
        of axis i) the grid points with that coordinate."""
        grid = c.reshape(c.shape[0], *(len(axis) for axis in inputs[1]))
        if group < self.branch.n_groups:
            return grid.flatten(1).sum(dim=1)
        axis = int(np.searchsorted(np.cumsum([t.n_groups for t in self.trunks]), group - self.branch.n_groups, "right"))
        return grid.movedim(1 + axis, 0).flatten(1).sum(dim=1)

    def forward(self, params: Params, inputs: tuple[torch.Tensor, tuple[torch.Tensor, ...]],
                spike: SpikeFn) -> torch.Tensor:
        """(f at sensors (N_f, m), per-axis points ((n_1, 1), ..)) -> (N_f, n_1 * .. * n_d).

        The trunks' outputs are combined first into the grid's features
        ``K[(a_1, .., a_d), k] = prod_i t^i_k(y_i[a_i])`` (n_1 * .. * n_d, p), then ``G = b K^T``:
        one matrix product instead of an (N_f, n_1, .., n_d, p) intermediate."""
        start = self.branch.n_groups
        b = self.branch.forward(params[:start], inputs[0], spike)  # (N_f, p)
        K = None
        for trunk, axis in zip(self.trunks, inputs[1]):
            t = trunk.forward(params[start:start + trunk.n_groups], axis, spike)  # (n_i, p)
            K = t if K is None else (K.unsqueeze(1) * t).reshape(-1, t.shape[-1])
            start += trunk.n_groups
        return b @ K.T + params[-1][0]

    def forward_dual(self, params: Params, tangents: Params,
                     inputs: tuple[torch.Tensor, tuple[torch.Tensor, ...]], deriv: DerivFn,
                     nodes: list[Node] | None = None, record: list | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """G (N_f, prod n_i) and tangents (D, N_f, prod n_i) by the product rule over the trunks:
        ``K_dot`` (D, prod n_i, p) of the grid's features, then ``G_dot = b_dot K^T + b K_dot^T``.
        Each trunk's tangent carries only its own directions (:meth:`SpikingMLP.forward_live`);
        ``nodes`` and ``record`` as there, over all groups."""
        start, nodes = self.branch.n_groups, nodes or [None] * self.n_groups
        b, b_live, b_dot = self.branch.forward_live(params[:start], tangents[:start], inputs[0], deriv, nodes[:start],
                                                    record)
        K = K_live = K_dot = None
        for trunk, axis in zip(self.trunks, inputs[1]):
            stop = start + trunk.n_groups
            t, t_live, t_dot = trunk.forward_live(params[start:stop], tangents[start:stop], axis, deriv,
                                                  nodes[start:stop], record)
            if K is None:
                K, K_live, K_dot = t, t_live, t_dot
            else:
                n, p = len(K) * len(t), t.shape[-1]  # (a tangent may carry no direction)
                K_live, K_dot = add_tangents([(K_live, (K_dot.unsqueeze(2) * t).reshape(len(K_live), n, p)),
                                              (t_live, (K.unsqueeze(1) * t_dot.unsqueeze(1)).reshape(len(t_live), n, p))])
                K = (K.unsqueeze(1) * t).reshape(n, p)
            start = stop
        _, g_dot = add_tangents([(b_live, b_dot @ K.T), (K_live, b @ K_dot.transpose(1, 2))],
                                torch.arange(tangents[-1][0].shape[0]))
        return b @ K.T + params[-1][0], g_dot + tangents[-1][0].reshape(-1, 1, 1)

    def ops(self, n_funcs: int, axis_points: tuple[int, ...]) -> list[Op]:
        p = self.branch.sizes[-1]
        out, start = self.branch.ops(n_funcs), self.branch.n_groups
        sources = [start - 1]
        for trunk, n in zip(self.trunks, axis_points):
            out += trunk.ops(n, start)
            start += trunk.n_groups
            sources.append(start - 1)
        grid = n_funcs * int(np.prod(axis_points)) * p
        return out + [Op(self.n_groups - 1, grid, False, tuple(sources))]
