"""Lava Processes for on-chip forward-gradient learning (Wan, Zhang, Karniadakis 2024).

Equations: :mod:`lavasnn.engine.perturb_fixed`; the models in ``perturb_models.py`` call its
functions, as the batched engine does. Fixed point only. Every process receives the control
vector ``(sample_start, sample_end, update, perturbed)`` from the :class:`PerturbStream`; a
training batch is its samples, T steps each (weight perturbation: each sample twice, the second
run with ``perturbed`` set, when every :class:`PerturbDense` adds its perturbation), then one
update step in which the loss neuron sends the third factors d (one per direction) and every
:class:`PerturbDense` updates its weights in that step's learning phase (``run_lrn``, after the
spiking phase; no sample runs in an update step).

Wiring (``lavasnn.backends.perturb_lava``)::

    stream.x_out -> dense0 -> lif0 -> dense1 -> .. -> dense(L-1) -> loss
    stream.ctrl_out -> every process;  stream.target_out -> loss;  loss.d_out -> every dense

Rule 'loihi2' (Loihi 2's learning-engine form) replaces the PerturbDense processes by Lava's own
``LearningDense`` (and, for the tangents, a plain ``Dense``) and the neurons by
:class:`WeightPerturbLIF` / :class:`WeightPerturbLoss` (weight mode) or :class:`ForwardGradLIF` /
:class:`ForwardGradLoss` (global, layer-wise), which send the learning factors
(:class:`lavasnn.backends.perturb_lava.LavaLoihi2`).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
from lava.magma.core.process.neuron import LearningNeuronProcess
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavasnn.engine import learning_engine as le
from lavasnn.engine.perturb_fixed import FixedNetConfig, target_int
from lavasnn.errors import UserError

PCTRL_SAMPLE_START, PCTRL_SAMPLE_END, PCTRL_UPDATE, PCTRL_PERTURBED, PCTRL_ACTIVE = range(5)
PCTRL_SIZE = 5


class PerturbStream(AbstractProcess):
    """Streams training samples: input x (rounded to ``in_frac`` bits) for T steps per sample
    (``cfg.passes`` times), the sample's integer target, and the control vector; after every batch of ``cfg.batch``
    samples (and at the end of each epoch of ``epoch_len`` samples) one update step. Rule 'loihi2':
    ``n_layers`` idle steps before each update step (the last sample passes the LearningDense
    delays) and a last input fixed at ``one`` during samples (the biases' always-on input).

    ``x`` (N, n_in) real in [-1, 1], ``target`` (N, n_out) real, ``order`` the sample indices in
    training order (all epochs concatenated)."""

    def __init__(self, *, cfg: FixedNetConfig, x: np.ndarray, target: np.ndarray, order: np.ndarray,
                 epoch_len: int, name: str | None = None) -> None:
        x, target, order = np.asarray(x, dtype=float), np.asarray(target, dtype=float), np.asarray(order)
        super().__init__(name=name, cfg=cfg, epoch_len=int(epoch_len))
        if x.ndim != 2 or x.shape[1] != cfg.sizes[0] or target.shape != (len(x), cfg.sizes[-1]):
            raise UserError(f"x must be (N, {cfg.sizes[0]}) and target (N, {cfg.sizes[-1]}), got {x.shape} and {target.shape}")
        if np.abs(x).max(initial=0) > 1:
            raise UserError("inputs must lie in [-1, 1] for the on-chip network")
        self.x = Var(shape=x.shape, init=np.round(x * cfg.fmt.one).astype(np.int64))
        self.target = Var(shape=target.shape, init=target_int(target, cfg).numpy())
        self.order = Var(shape=order.shape, init=order.astype(np.int64))
        self.x_out = OutPort(shape=(cfg.sizes[0] + (cfg.rule == "loihi2"),))  # 'loihi2': + the bias input
        self.target_out = OutPort(shape=(cfg.sizes[-1],))
        self.ctrl_out = OutPort(shape=(PCTRL_SIZE,))


class PerturbDense(AbstractProcess):
    """Layer ``layer``'s synapses: weights and bias (integers in [-256, 255]) that learn from
    the third factors ``d_in[cfg.directions_of(layer)]`` (one per draw); sends a and its tangents a_dot (D, n_out)
    (weight mode: a with the perturbed weights on a sample's second run, a_dot = 0). In activity
    mode the layer's neurons' perturbation xi starts the tangent, each synapse sums ``xi x`` over
    the sample (``elig``), and the sample's d_b, which arrives the step after it ends, adds
    ``d_b elig`` to ``grad``, the update of the batch."""

    def __init__(self, *, cfg: FixedNetConfig, layer: int, weights: np.ndarray, bias: np.ndarray, updates: int = 0,
                 name: str | None = None) -> None:
        n_out, n_in = cfg.sizes[layer + 1], cfg.sizes[layer]
        super().__init__(name=name, cfg=cfg, layer=int(layer))
        weights, bias = np.asarray(weights), np.asarray(bias)
        if weights.shape != (n_out, n_in) or bias.shape != (n_out,):
            raise UserError(f"layer {layer} needs weights ({n_out}, {n_in}) and bias ({n_out},), "
                            f"got {weights.shape} and {bias.shape}")
        D = cfg.n_dirs
        self.s_in = InPort(shape=(n_in,))
        self.sdot_in = InPort(shape=(D, n_in))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_in = InPort(shape=(D,))
        self.a_out = OutPort(shape=(n_out,))
        self.adot_out = OutPort(shape=(D, n_out))
        self.weights = Var(shape=(n_out, n_in), init=weights.astype(np.int64))
        self.bias = Var(shape=(n_out,), init=bias.astype(np.int64))
        self.updates = Var(shape=(1,), init=int(updates))
        # activity mode: the sample's eligibility sum xi x^T per draw (the tag) and the batch's sum of d_b times it
        self.elig_w = Var(shape=(cfg.directions, n_out, n_in), init=0)
        self.elig_b = Var(shape=(cfg.directions, n_out), init=0)
        self.grad_w = Var(shape=(n_out, n_in), init=0)
        self.grad_b = Var(shape=(n_out,), init=0)


class PerturbLIF(AbstractProcess):
    """Hidden LIF neurons of layer ``layer`` with one tangent compartment per direction (soft
    reset, reset of v and v_dot at each sample start); sends spikes (0 or ``one``) and their
    tangents. With Stein's derivative the neurons draw their noise keyed by the update count
    (``updates``, counted from the update steps), the sample's slot in the batch and the step."""

    def __init__(self, *, cfg: FixedNetConfig, layer: int, shape: tuple[int], updates: int = 0,
                 name: str | None = None) -> None:
        super().__init__(name=name, cfg=cfg, layer=int(layer), updates=int(updates))
        D = cfg.n_dirs
        self.a_in = InPort(shape=shape)
        self.adot_in = InPort(shape=(D, *shape))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.s_out = OutPort(shape=shape)
        self.sdot_out = OutPort(shape=(D, *shape))
        self.v = Var(shape=shape, init=0)
        self.v_dot = Var(shape=(D, *shape), init=0)


class PerturbLoss(AbstractProcess):
    """Readout and loss neurons: sums the readout over each sample (y_acc, y_dot_acc), adds
    ``e y_dot`` to D per direction at the sample's end (weight mode: ``e^2`` of the perturbed
    run minus ``e^2`` of the plain run), and in the update step sends
    ``d = clip(D >> d_shift)`` and clears D. In activity mode D is the sample's, sent the step after
    it ends. ``sum_e2`` and ``samples`` count the training loss."""

    def __init__(self, *, cfg: FixedNetConfig, name: str | None = None) -> None:
        super().__init__(name=name, cfg=cfg)
        n_out, D = cfg.sizes[-1], cfg.n_dirs
        self.y_in = InPort(shape=(n_out,))
        self.ydot_in = InPort(shape=(D, n_out))
        self.target_in = InPort(shape=(n_out,))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_out = OutPort(shape=(D,))
        self.y_acc = Var(shape=(n_out,), init=0)
        self.ydot_acc = Var(shape=(D, n_out), init=0)
        self.D = Var(shape=(D,), init=0)
        self.sum_e2 = Var(shape=(1,), init=0)
        self.samples = Var(shape=(1,), init=0)


# --------------------------------------------------------------------------------------------
# Weight perturbation in Loihi 2's learning-engine form (rule 'loihi2')
# --------------------------------------------------------------------------------------------

def perturbation_rule(cfg: FixedNetConfig) -> Loihi3FLearningRule:
    """The rule of every LearningDense (and its post neurons), for all modes of rule 'loihi2'::

        dw = 2^e y0 y2 t - 2^e y0 y3 t           (t_epoch = 1; the tag t = q << 5 is not learned)

    with e = ``cfg.learning_exp``: a post neuron that sends a bAP (y0) with y2 = 2^-e adds q, with
    y3 = 2^-e removes it, and in the update step sends the negative / positive part of the loss
    neuron's d as y2 / y3. The y taus are 2^60, so the rule reads y as sent."""
    rule = Loihi3FLearningRule(dw=le.perturbation_rule_string(cfg.learning_exp), t_epoch=1, rng_seed=cfg.seed)
    rule.y1_tau = rule.y2_tau = rule.y3_tau = le.Y_TAU
    return rule


class WeightPerturbLIF(LearningNeuronProcess, AbstractProcess):
    """Hidden LIF neurons of layer ``layer`` (the post neurons of LearningDense ``layer``) for rule
    'loihi2': soft reset, v cleared at each run's start; sends its spikes (0 or ``one``) and, as
    the next layer's last input, ``one`` while a sample runs (the bias input). Its learning
    factors for LearningDense ``layer`` (each with a bAP): y2 = 2^-e on the last step of a sample's
    plain run (adds q), y3 = 2^-e on the last step of its perturbed run (removes it), and in the
    update step the negative / positive part of d (from ``d_in``) as y2 / y3. Layer l
    sees the stream's control vector l + 1 steps late for its voltage (each LearningDense delays
    by a step) and l steps late for y2 / y3 (the learning phase acts on the next step's weights)."""

    def __init__(self, *, cfg: FixedNetConfig, layer: int, shape: tuple[int], learning_rule: Loihi3FLearningRule,
                 name: str | None = None) -> None:
        super().__init__(shape=shape, learning_rule=learning_rule, name=name, cfg=cfg, layer=int(layer))
        self.a_in = InPort(shape=shape)
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_in = InPort(shape=(1,))
        self.s_out = OutPort(shape=(shape[0] + 1,))
        self.v = Var(shape=shape, init=0)


class WeightPerturbLoss(LearningNeuronProcess, AbstractProcess):
    """Readout and loss neurons for rule 'loihi2' (the post neurons of the last LearningDense): sums
    the readout over each run of a sample (the stream's control and target ``n_layers`` steps late),
    adds ``e^2`` of the perturbed run minus ``e^2`` of the plain run to D, and in the update step
    sends ``d = clip(SR(D g / 2^shift), -127, 127)`` (:func:`~lavasnn.engine.perturb_fixed.loihi2_third_factor`,
    the random number keyed by ``updates``) to every hidden neuron and as its own y2 / y3, then
    clears D. ``gain`` = (g, shift), written by the host before each batch, carries the
    learning-rate schedule. ``sum_e2`` and ``samples`` count the training loss."""

    def __init__(self, *, cfg: FixedNetConfig, learning_rule: Loihi3FLearningRule, gain: tuple[int, int],
                 updates: int = 0, name: str | None = None) -> None:
        n_out = cfg.sizes[-1]
        super().__init__(shape=(n_out,), learning_rule=learning_rule, name=name, cfg=cfg)
        self.y_in = InPort(shape=(n_out,))
        self.target_in = InPort(shape=(n_out,))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_out = OutPort(shape=(1,))
        self.y_acc = Var(shape=(n_out,), init=0)
        self.D = Var(shape=(1,), init=0)
        self.gain = Var(shape=(2,), init=np.array(gain, dtype=np.int64))
        self.updates = Var(shape=(1,), init=int(updates))
        self.sum_e2 = Var(shape=(1,), init=0)
        self.samples = Var(shape=(1,), init=0)


class ForwardGradLIF(LearningNeuronProcess, AbstractProcess):
    """Hidden LIF neurons of layer ``layer`` for global or layer-wise forward gradients with rule
    'loihi2': :class:`WeightPerturbLIF`'s voltage and timing, plus one tangent compartment per
    direction (D = ``cfg.n_dirs``; the surrogate table, or Stein's estimate keyed like
    :class:`PerturbLIF`'s, ``updates`` the updates made before this run), fed by a copy of the layer's synapses
    (``adot_in``: W x_dot) and by the direction's own synapses (``start_in``: 2 q x); sends the spike
    tangents (``sdot_out``, D (n + 1): each direction's row ends with the bias input's tangent, 0).
    In the update step it sends a bAP with the negative / positive part of its layer's direction's d
    as y2 / y3 to both synapse groups: to the layer's LearningDense through Lava's learning ports,
    to the copy through ``tan_bap``, ``tan_y1``..``tan_y3``. Ports are flat vectors, direction-major."""

    def __init__(self, *, cfg: FixedNetConfig, layer: int, shape: tuple[int], learning_rule: Loihi3FLearningRule,
                 updates: int = 0, name: str | None = None) -> None:
        super().__init__(shape=shape, learning_rule=learning_rule, name=name, cfg=cfg, layer=int(layer),
                         updates=int(updates))
        n, D = shape[0], cfg.n_dirs
        self.a_in = InPort(shape=shape)
        self.adot_in = InPort(shape=(D * n,))
        self.start_in = InPort(shape=(D * n,))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_in = InPort(shape=(D,))
        self.s_out = OutPort(shape=(n + 1,))
        self.sdot_out = OutPort(shape=(D * (n + 1),))
        self.tan_bap = OutPort(shape=(D * n,))
        self.tan_y1 = OutPort(shape=(D * n,))
        self.tan_y2 = OutPort(shape=(D * n,))
        self.tan_y3 = OutPort(shape=(D * n,))
        self.v = Var(shape=shape, init=0)
        self.v_dot = Var(shape=(D, n), init=0)


class ForwardGradLoss(LearningNeuronProcess, AbstractProcess):
    """Readout and loss neurons for global or layer-wise forward gradients with rule 'loihi2': sums the
    readout and its tangents (``ydot_in`` + ``start_in``) over each sample, adds ``e y_dot`` to D
    per direction at the sample's end, and in the update step sends ``d_k = clip(SR(D_k g_k /
    2^shift_k), -127, 127)`` per direction (``gain`` (D, 2), written by the host before each batch)
    to every hidden neuron and, split by sign into y2 / y3, to the readout's two synapse groups."""

    def __init__(self, *, cfg: FixedNetConfig, learning_rule: Loihi3FLearningRule, gain: np.ndarray,
                 updates: int = 0, name: str | None = None) -> None:
        n_out, D = cfg.sizes[-1], cfg.n_dirs
        super().__init__(shape=(n_out,), learning_rule=learning_rule, name=name, cfg=cfg)
        self.y_in = InPort(shape=(n_out,))
        self.ydot_in = InPort(shape=(D * n_out,))
        self.start_in = InPort(shape=(D * n_out,))
        self.target_in = InPort(shape=(n_out,))
        self.ctrl_in = InPort(shape=(PCTRL_SIZE,))
        self.d_out = OutPort(shape=(D,))
        self.tan_bap = OutPort(shape=(D * n_out,))
        self.tan_y1 = OutPort(shape=(D * n_out,))
        self.tan_y2 = OutPort(shape=(D * n_out,))
        self.tan_y3 = OutPort(shape=(D * n_out,))
        self.y_acc = Var(shape=(n_out,), init=0)
        self.ydot_acc = Var(shape=(D, n_out), init=0)
        self.D = Var(shape=(D,), init=0)
        self.gain = Var(shape=(D, 2), init=np.asarray(gain, dtype=np.int64))
        self.updates = Var(shape=(1,), init=int(updates))
        self.sum_e2 = Var(shape=(1,), init=0)
        self.samples = Var(shape=(1,), init=0)
