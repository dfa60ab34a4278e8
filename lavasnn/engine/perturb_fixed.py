"""Forward-gradient learning in Loihi fixed point: the arithmetic shared by the engine and Lava.

The on-chip form of Wan, Zhang, Karniadakis 2024 (arXiv 2411.07057) for a spiking MLP
``sizes = (n_in, h_1, .., h_k, n_out)``: every neuron carries, next to its membrane voltage,
one tangent compartment per direction (dual numbers), every synapse carries its weight w and
regenerates its direction component u from a counter-based hash, and after each batch one
graded third factor per direction, the loss derivative d, reaches every synapse, which then
updates ``w <- w - lr d u``. The Lava processes (:mod:`lavasnn.procs.perturb`) and the
batched :class:`FixedForwardGradEngine` call the functions below, so both end with the same
integer weights (``lavasnn crosscheck perturb``).

Integers and their fraction bits (a real r is stored as round(r 2^frac)):

* layer inputs: the data x (|x| <= 1) and spikes (1 -> ``one``), ``in_frac`` = 7;
* weights and biases, ``w_frac`` = 8, in [-256, 255] (Loihi's 8 bits + sign); a bias is the
  weight from an always-on input of 1.0;
* directions u, ``dir_frac`` = 7: u = (sum of 4 hash bytes - 510), approximately normal with
  variance ``DIR_VAR`` = 21845 (Irwin-Hall); the real direction is u / 2^7, E[u u^T] = (4/3) I,
  so the update divides by 4/3;
* potentials v, ``v_frac`` = 10 (vth = 1.0 -> 1024); tangents carry ``tan_frac`` = 6 more bits.

Per time step (all shifts are floors), for layer l with input ``x`` and input tangents
``x_dot`` (one row per direction k; ``P_kl`` = 1 where direction k moves layer l: global,
k = 0 for every layer; layer-wise and activity, k = l; with K draws (``directions``) draw j
adds its own directions, k = j or k = j L + l, and U is draw j's)::

    a        = (W x + b one) >> (w_frac + in_frac - v_frac)
    a_dot_k  = ((P_kl (U x + u_b one)) << (w_frac - dir_frac + tan_frac) + W x_dot_k)
               >> (w_frac + in_frac - v_frac)

a hidden LIF neuron (soft reset, the tangent follows the voltage with the spike held fixed)::

    v'       = v - ((v dv) >> 12) + a,        s = [v' > vth],      v = v' - vth s
    v'_dot_k = v_dot_k - ((v_dot_k dv) >> 12) + a_dot_k,          v_dot_k = v'_dot_k
    s_dot_k  = (phi(v' - vth) v'_dot_k) >> (phi_frac + v_frac - in_frac)

with ``phi`` the Gaussian surrogate of width ``surrogate_width`` (0.05 vth; dH/dv, :func:`surrogate_table`) from a
lookup table with ``phi_frac`` = 8 bits, sent on as spike ``s one`` and tangent s_dot; the
readout layer's a and a_dot are summed over the T steps of a sample (``y = y_acc / (T 2^v_frac)``,
the rate-decoded ``W r + b``). Per sample the loss neuron adds, with ``e = y_acc - round(t T 2^v_frac)``::

    D_k += sum_outputs e * y_dot_acc_k

and after the batch sends the third factor ``d_k = clip(D_k >> d_shift, +-(2^23 - 1))``
(24-bit graded spike). Each synapse (and bias) of layer l then updates by stochastic rounding
(:func:`lavasnn.learning.biograd.stochastic_round`, keyed by seed, layer and update count)::

    w <- clip(w + SR(-c d_k(l) u), -256, 255),
    c = lr_k 2 2^d_shift 2^(w_frac - dir_frac) / (B n_out T^2 2^(2 v_frac + tan_frac) (4/3))

which is ``w <- w - lr_k d v`` in reals (lr_k = lr decay^epoch, times ``input_lr_scale`` on
layer 0: a constant of that layer's learning rule; the host may rewrite the exponent between
epochs) for ``L = mean((y - t)^2)``, B the configured batch (a last, smaller batch sums over
fewer samples). SGD only: Adam needs two more states per synapse. K draws average their
estimates: the synapse adds ``sum_j d_j u_j`` and c is divided by K (every draw's u, noise and
third factor is keyed by j, draw 0 by the keys of the one-draw rule). The primal pass runs once;
each neuron carries K tangent compartments per direction it holds, so a step costs the forward
events once and the tangent events K times.

Stein's weak form (``grad`` 'stein') replaces the table by an estimate from K noisy
evaluations of the neuron's own threshold test, per neuron, sample and step (:func:`stein_phi`)::

    xi_k     = sum of the 4 bytes of a hash - 510         (keyed by seed, layer, update, step,
                                                            sample slot in the batch, neuron, k)
    p_k      = (xi_k m) >> 8,   m = round(w 256 / sqrt(DIR_VAR))   (noise of std w, potential units)
    S        = sum_k ([x + p_k > 0] - [x > 0]) xi_k       (every term is >= 0)
    phi      = (S G) >> 16,     G = round(2^(16 + phi_frac + v_frac + 8) / (DIR_VAR K m))

with x = v' - vth and w = surrogate_width vth; the tangents of all draws (``directions``) share
the neuron's phi (the float engine draws Stein noise per draw). Since the flip
[x + p_k > 0] - [x > 0] is non-zero only with xi_k of its sign, S / (K sqrt(DIR_VAR) w)
estimates E[xi 1{flip}] / w, which
is the derivative of H smoothed by the noise (Stein's lemma; the Irwin-Hall noise is close to
normal, so it is close to the Gaussian surrogate of the same width).

Weight perturbation (mode ``weight``) needs no tangents: every sample runs twice, with the
weights w and then with ``w + round(u / 2^sigma_shift)`` (clipped to 8 bits; sigma =
2^(dir_frac - w_frac - sigma_shift) in reals), and the loss neuron adds the difference of the
two squared errors, ``D += sum_outputs (e_pert^2 - e^2)``, sending ``d = clip(D >> loss_diff_shift)``.
The update is the same ``w <- clip(w + SR(-c d u))`` with
``c = lr_k 2^loss_diff_shift 2^(w_frac - dir_frac) / (B n_out T^2 2^(2 v_frac) sigma (4/3))``,
i.e. ``w <- w - lr_k ((L(w + sigma v) - L(w)) / sigma) v`` in reals.

Activity perturbation (mode ``activity``; Ren, Kornblith, Liao, Hinton 2023, beyond the paper)
perturbs the neurons instead of the weights: layer l's current gets the tangent
``xi << (w_frac + in_frac - dir_frac + tan_frac)`` (:func:`node_tangent`, the real xi / 2^dir_frac)
in place of U x, with xi a hashed value per neuron, sample slot and, in hidden layers, step (the
first layer's and the readout's currents are the same every step, so one value per sample;
:func:`node_noise`). Each synapse sums its eligibility ``e = sum_t xi_i x_j`` (the bias: xi one)
over the sample; the loss neuron sends one third factor per layer and sample,
``d_l,b = clip((sum_outputs e_b y_dot_acc_l,b) >> node_d_shift)``, the step after the sample ends,
and the synapse adds ``d_l,b e`` to the batch's sum G. After the batch
``w <- clip(w + SR(-c G))`` with the c above divided by 2^in_frac (x carries in_frac bits) and,
for the two constant-current layers, by T (their e sums T equal terms): in reals the activity
estimate ``g_W = sum_b d_l,b u_b x_b^T`` of the float engine. On Loihi 2 xi would come from the
neuron's random source and reach the synapse as a post-synaptic trace sent by the neuron (like
the y traces a learning neuron sends), e is the tag (``dt = y x``); G is a second per-synapse
accumulator that Loihi 2 lacks, so there the batch would be 1 (``dw = -2^e d t`` at each sample's
end) or the host would sum G.

What Loihi 2 does not offer, and what each part needs: the synapse regenerates u from a hash
of its index (Loihi 2's learning engine has one shared random number per step, no per-synapse
generator: u would have to be written by the host each step, or a second synapse group with
weights u rewritten per batch); the tangent path needs that second synapse group (U x) and
graded spikes (Loihi 2 has 24-bit payloads); the neuron's tangent compartments and the
surrogate lookup need a microcode neuron with D extra states (Stein's estimate instead of the
lookup: K random draws and threshold tests per neuron and step, so a random source in that
neuron program, and K times the neuron's work); the update is a three-factor
product ``d u`` with the per-synapse u, which the learning engine computes when u is held in
the tag (rule 'loihi2' below). Weight perturbation needs no tangent
compartments and no graded spikes inside the network: with the perturbation in the tag, the
learning engine adds and removes it around a sample's second run and applies the update; only
the per-synapse direction itself has to come from the host. Rule 'loihi2' does exactly that.

Rule 'loihi2' (``rule``; weight, global or layer-wise): every weight change is made by Lava's own
``LearningDense`` with one Loihi 3-factor rule (t_epoch = 1; the tag is not learned)::

    dw = 2^e y0 y2 t - 2^e y0 y3 t          (e = FixedNetConfig.learning_exp = -6)

in Lava's fixed-point learning arithmetic (:func:`lavasnn.engine.learning_engine.perturbation_rule_step`).
Every product is gated by the post neuron's bAP (y0), which the neurons send only in the steps
that learn, and y2, y3 are unsigned 7-bit factors. Before each batch the host writes the tag
``t = q << 5`` with q = clip(round(u / 64), -7, 7) (:func:`loihi2_direction`, :func:`loihi2_tag`):
the product ``y t`` loses 5 bits to the learning engine's hidden shift, so with t a multiple of 32
it is exact, ``dw = 2^e (y2 - y3) q``, rounded stochastically with the step's one shared random
number (Lava's ``ConnVarRandom``, :class:`~lavasnn.engine.learning_engine.SynapticRandom`). The
bias is the weight from an always-on input ``one`` (``[W | b]``, :func:`augmented`).

Weight mode: on the last step of a sample's plain run each post neuron sends a bAP with
y2 = 2^-e (the engine adds q: ``clip(w + q)``), on the last step of its perturbed run y3 = 2^-e
(``clip(w + q) - q``, which is w unless w + q clipped). After the batch the loss neuron sends

    d = clip(SR(D g / 2^shift), -127, 127),   D = sum (e_pert^2 - e^2)

(:func:`loihi2_third_factor`, stochastic rounding keyed by the update count; g carries the
learning-rate schedule, :func:`loihi2_gain`), and every neuron sends a bAP with y2 / y3 = the
negative / positive part of d: ``w <- SR(w - 2^e d q)``, in reals ``w - lr (L(w + p) - L(w)) p /
sigma_p^2`` while |d| < 127; a saturated d clips the step (in the forward-gradient modes a share of
the d's early in training at the default lr, few later; none in weight mode). A resumed run
starts Lava's rounding streams afresh, in the engine as in Lava, so it ends close to, not equal
to, an uninterrupted run. The LearningDense are built with ``num_weight_bits`` 9: Lava's learning
model keeps learned weights as 8 bits plus sign, and with the default 8 its MIXED sign mode would
drop the lowest bit of the weights a run starts from; whether a chip keeps that bit is not known
here (a simulator assumption). Each LearningDense delays its output by one step, so layer l's
neurons see the stream's control l + 1 steps late, send their add / remove factors l steps late,
and a batch ends with L idle steps before the update step (:func:`loihi2_batch_steps`).

Global and layer-wise forward gradients (surrogate table, one draw): the tangents need synapses
the learning engine does not compute, so each layer has up to three synapse groups feeding its
neurons::

    a      = W x_aug >> a_shift                                       (LearningDense: the weights)
    a_dot  = (W x_dot >> a_shift) + (2 q x_aug) << start_exp           (:func:`learning_dense_step`)

The first term is a second LearningDense holding D copies of W on its diagonal (one per direction;
it learns exactly as W, from the same factors, tags and random number; none for layer 0, whose
input has no tangent), the second a plain Dense with weights 2 q that the host writes per batch
(start_exp = w_frac - dir_frac + tan_frac - a_shift + 5, :func:`loihi2_tangent`: 2^6 q stands for
u). After the batch the loss neuron sends one d_k per direction (g_k: the exact rule's ``c u`` with
u -> 2^6 q, rescaled to q's variance) and layer l's synapses take ``w <- SR(w - 2^e d_k q)``. The
neurons are the exact rule's (:func:`lif_step`, with the surrogate table or, ``grad`` 'stein',
Stein's estimate keyed by update, step and sample slot). What stays outside Loihi 2's learning
engine: the neurons' tangent compartments and surrogate lookup or Stein's noisy threshold tests
(microcode), and the per-synapse directions the host writes into the tags and start synapses
before each batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from lavasnn.engine import learning_engine as le
from lavasnn.errors import UserError
from lavasnn.learning.biograd import hash_uniform, stochastic_round

DIR_TAG, UPDATE_TAG, STEIN_TAG, NODE_TAG = 0x5D1, 0x5D2, 0x5D3, 0x5D4  # hash keys: directions, update
# rounding, Stein noise, activity mode's neuron perturbations
DIR_BYTES = 4  # u = sum of 4 uniform bytes - 510
DIR_MEAN, DIR_VAR = 510, 21845  # Irwin-Hall mean and variance: 4 (256^2 - 1) / 12
W_MIN, W_MAX = -256, 255
D_MAX = (1 << 23) - 1  # the third factor is a 24-bit graded spike
DECAY_UNITY = 4096
MODES = ("global", "layerwise", "activity", "weight")
GRADS = ("surrogate", "stein")
RULES = ("exact", "loihi2")
GAIN_BITS = 16  # rule 'loihi2': the loss neuron's gain g, d = (D g) >> gain_shift
LOIHI2_DIR_SHIFT = 6  # rule 'loihi2': the direction q = round(u / 2^6), |q| <= 7 (learning_engine.DIRECTION_MAX)
THIRD_FACTOR_MAX = 127  # rule 'loihi2': |d| fits the 7-bit y2 / y3
D_ROUND_TAG = 0x5D5  # hash key of the loss neuron's stochastic rounding of d (rule 'loihi2')


@dataclass(frozen=True)
class FixedFormat:
    """Fraction bits and shifts of the fixed-point network (module docstring)."""

    in_frac: int = 7
    w_frac: int = 8
    dir_frac: int = 7
    v_frac: int = 10
    tan_frac: int = 6
    phi_frac: int = 8
    phi_index_shift: int = 4  # the table holds phi at (v' - vth) >> 4, steps of 1/64
    d_shift: int = 18
    sigma_shift: int = 4  # weight mode, exact rule: the perturbation is round(u / 2^sigma_shift) weight units
    loss_diff_shift: int = 8  # weight mode: d = D >> loss_diff_shift
    node_d_shift: int = 16  # activity mode: per-sample d = D_b >> node_d_shift

    @property
    def one(self) -> int:
        return 1 << self.in_frac

    @property
    def a_shift(self) -> int:
        return self.w_frac + self.in_frac - self.v_frac

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FixedNetConfig:
    """The network and its rule in integers: ``sizes``, T steps, decay ``dv`` (of 4096), ``vth``
    (potential units), ``mode`` (global or layer-wise directions, or weight perturbation),
    learning rate ``lr`` (real), configured batch size and seed."""

    sizes: tuple[int, ...]
    steps: int = 16
    dv: int = 410  # 0.1 * 4096
    vth: int = 1024
    mode: str = "layerwise"
    lr: float = 0.01
    batch: int = 100
    seed: int = 0
    lr_decay: float = 1.0  # lr_k = lr lr_decay^(k // updates_per_epoch) at update k
    updates_per_epoch: int = 1
    surrogate_width: float = 0.05  # of the Gaussian surrogate, in units of vth (see FIXED_TRAIN)
    grad: str = "surrogate"  # spike derivative: the surrogate table or Stein's estimate
    stein_samples: int = 16  # K noise draws per neuron, sample and step ('stein')
    input_lr_scale: float = 1.0  # lr factor of layer 0, the one fed by the data
    directions: int = 1  # K independent draws per update, their estimates averaged
    rule: str = "exact"  # 'loihi2': weight perturbation in Loihi 2's learning-engine form (module docstring)
    fmt: FixedFormat = FixedFormat()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"on-chip perturbation mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if len(self.sizes) < 3 or min(self.sizes) < 1:
            raise UserError(f"sizes must be (n_in, hidden.., n_out) with at least one hidden layer, got {self.sizes}")
        if self.steps < 1 or self.batch < 1:
            raise UserError(f"steps and batch must be >= 1, got {self.steps} and {self.batch}")
        if not 0 <= self.dv < DECAY_UNITY:
            raise UserError(f"dv must lie in [0, 4095], got {self.dv}")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1 or not self.input_lr_scale > 0:
            raise UserError(f"lr and input_lr_scale must be > 0 and lr_decay in (0, 1], got {self.lr}, "
                            f"{self.input_lr_scale} and {self.lr_decay}")
        if self.updates_per_epoch < 1:
            raise UserError(f"updates_per_epoch must be >= 1, got {self.updates_per_epoch}")
        if not self.surrogate_width > 0:
            raise UserError(f"surrogate_width must be > 0, got {self.surrogate_width}")
        if self.grad not in GRADS:
            raise UserError(f"on-chip spike derivative {self.grad!r} is not one of: {', '.join(GRADS)}")
        if self.grad == "stein" and self.mode == "weight":
            raise UserError("weight perturbation needs no spike derivative; use --grad surrogate")
        if self.stein_samples < 1:
            raise UserError(f"stein_samples must be >= 1, got {self.stein_samples}")
        if self.directions < 1:
            raise UserError(f"directions must be >= 1, got {self.directions}")
        if self.rule not in RULES:
            raise UserError(f"on-chip perturbation rule {self.rule!r} is not one of: {', '.join(RULES)}")
        if self.rule == "loihi2" and self.mode not in ("weight", "global", "layerwise"):
            raise UserError(f"--rule loihi2 takes --mode weight, global or layerwise, not {self.mode}")
        if self.rule == "loihi2" and self.directions != 1:
            raise UserError("--rule loihi2 holds one direction per update in the tags (not --directions > 1)")
        if self.rule == "loihi2" and not 0 <= loihi2_start_exp(self.fmt) <= 7:
            raise UserError(f"these fraction bits give the tangent's start synapses weight_exp "
                            f"{loihi2_start_exp(self.fmt)}; Loihi's Dense takes 0..7 here")
        if self.rule == "loihi2" and self.mode == "global" and self.input_lr_scale != 1:
            raise UserError("--rule loihi2 with --mode global sends one third factor to every layer; "
                            "--input-lr-scale needs --mode layerwise")
        if self.directions > 1 and self.mode == "weight":
            raise UserError("weight perturbation draws one direction per update (each sample runs twice for it); "
                            "--directions applies to global, layerwise and activity")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def learning_exp(self) -> int:
        """Rule 'loihi2': the exponent e of the learning rule's products 2^e y t, -6: weight mode adds the
        perturbation with y = 2^-e, which must fit 7 bits; in the forward-gradient modes -6 against -7
        halves d, so fewer d's saturate (Mexican hat, layer-wise, seed 0: 0.0637 against 0.0668 on the
        full grid, 0.381 against 0.425 on 400 points and 10 epochs, exploratory)."""
        return -6

    @property
    def n_dirs(self) -> int:
        """Third factors per update (and tangent compartments per neuron; weight mode keeps its one at 0):
        one per layer (layer-wise, activity) or one (global), for each of the K draws."""
        return (self.n_layers if self.mode in ("layerwise", "activity") else 1) * self.directions

    @property
    def passes(self) -> int:
        """Runs of each training sample: weight perturbation runs it twice, w then w + sigma u."""
        return 2 if self.mode == "weight" else 1

    @property
    def sigma(self) -> float:
        """Weight mode, exact rule: the real size of the perturbation along the real direction v = u / 2^dir_frac
        (rule 'loihi2' perturbs by q = round(u / 64) weight units, :func:`loihi2_direction`)."""
        return 2.0 ** (self.fmt.dir_frac - self.fmt.w_frac - self.fmt.sigma_shift)

    @property
    def third_factor_shift(self) -> int:
        return {"weight": self.fmt.loss_diff_shift, "activity": self.fmt.node_d_shift}.get(self.mode, self.fmt.d_shift)

    def directions_of(self, layer: int) -> list[int]:
        """The directions k that move layer ``layer`` (its third factors d_k), one per draw j:
        k = j L + layer (layer-wise, activity) or k = j (global; weight mode: 0)."""
        if self.mode in ("layerwise", "activity"):
            return [j * self.n_layers + layer for j in range(self.directions)]
        return list(range(self.directions))

    def constant_current(self, layer: int) -> bool:
        """Whether layer ``layer``'s current is the same every step of a sample (the first layer,
        fed the constant data, and the readout, perturbed as the rate-decoded output): activity
        mode perturbs it with one noise value per neuron and sample instead of one per step."""
        return layer in (0, self.n_layers - 1)

    def tangent_start(self, layer: int, starts: list[torch.Tensor]) -> torch.Tensor:
        """The tangents that begin at layer ``layer`` (D, ..., n_out): draw j's ``starts[j]``
        (:func:`weight_tangent` or :func:`node_tangent`) in the row of its direction, 0 elsewhere
        (P_kl of the module docstring)."""
        out = torch.zeros(self.n_dirs, *starts[0].shape, dtype=torch.int64)
        for k, start in zip(self.directions_of(layer), starts):
            out[k] = start
        return out

    def update_scale(self, update: int, layer: int) -> float:
        """c of the module docstring for layer ``layer`` at update ``update``: the real factor of ``d u``."""
        f = self.fmt
        layer_scale = self.input_lr_scale if layer == 0 else 1.0
        lr = self.lr * self.lr_decay ** (update // self.updates_per_epoch) * layer_scale
        dir_var = DIR_VAR / 2.0 ** (2 * f.dir_frac)
        n = self.batch * self.sizes[-1] * self.steps ** 2 * self.directions  # the K draws are averaged
        if self.mode == "weight":
            return lr * 2.0 ** (f.loss_diff_shift + f.w_frac - f.dir_frac) / (n * 2.0 ** (2 * f.v_frac) * self.sigma * dir_var)
        if self.mode == "activity":  # the eligibility carries x's in_frac bits (and T equal terms where constant)
            n *= 2 ** f.in_frac * (self.steps if self.constant_current(layer) else 1)
        shift = self.third_factor_shift
        return lr * 2.0 * 2.0 ** (shift + f.w_frac - f.dir_frac) / (n * 2.0 ** (2 * f.v_frac + f.tan_frac) * dir_var)


class LayerParams(NamedTuple):
    weights: torch.Tensor  # (n_out, n_in) int64
    bias: torch.Tensor  # (n_out,) int64


def quantize_params(params: list[list[torch.Tensor]], fmt: FixedFormat = FixedFormat()) -> list[LayerParams]:
    """Real [[W, b], ..] -> integer layers, rounded and clipped to [-256, 255]."""
    q = lambda p: torch.clamp(torch.round(p.double() * 2 ** fmt.w_frac), W_MIN, W_MAX).to(torch.int64)  # noqa: E731
    return [LayerParams(q(W), q(b)) for W, b in params]


def real_params(layers: list[LayerParams], fmt: FixedFormat = FixedFormat()) -> list[list[torch.Tensor]]:
    return [[l.weights.double() / 2 ** fmt.w_frac, l.bias.double() / 2 ** fmt.w_frac] for l in layers]


def _draw_key(draw: int) -> tuple[int, ...]:
    """The hash key of draw j: none for draw 0, so K = 1 draws what it always drew."""
    return (draw,) if draw else ()


def direction(cfg: FixedNetConfig, layer: int, update: int, shape: tuple[int, ...], draw: int = 0) -> LayerParams:
    """Layer ``layer``'s direction of draw ``draw`` at update ``update``: weights (n_out, n_in) and bias
    (n_out,) rows, each ``sum of 4 hash bytes - 510``, a pure function of (seed, layer, update, draw, index)."""
    n_out, n_in = shape
    u = hash_uniform((n_out, n_in + 1, DIR_BYTES), cfg.seed, DIR_TAG, layer, update, *_draw_key(draw))
    u = (torch.floor(u * 256).to(torch.int64).sum(dim=-1) - DIR_MEAN)
    return LayerParams(u[:, :n_in].contiguous(), u[:, n_in].contiguous())


def perturbed_layer(layer: LayerParams, u: LayerParams, fmt: FixedFormat) -> LayerParams:
    """Weight mode's second run: ``clip(w + round(u / 2^sigma_shift), -256, 255)`` (weights and bias)."""
    half = 1 << (fmt.sigma_shift - 1) if fmt.sigma_shift else 0
    return LayerParams(*(torch.clamp(w + ((uw + half) >> fmt.sigma_shift), W_MIN, W_MAX) for w, uw in zip(layer, u)))


def surrogate_table(cfg: FixedNetConfig) -> torch.Tensor:
    """phi_frac-bit integers of the Gaussian surrogate ``phi(x) = exp(-x^2 / 2w^2) / (sqrt(2 pi) w)``,
    w = surrogate_width vth, per unit potential, at x = i 2^phi_index_shift / 2^v_frac, i in [-n, n]
    (entry n is x = 0); x outside the table gives 0."""
    f = cfg.fmt
    vth_real = cfg.vth / 2 ** f.v_frac
    width = cfg.surrogate_width * vth_real
    n = math.ceil(4 * width * 2 ** f.v_frac / 2 ** f.phi_index_shift)
    x = np.arange(-n, n + 1) * 2.0 ** (f.phi_index_shift - f.v_frac)
    phi = np.exp(-0.5 * (x / width) ** 2) / (math.sqrt(2 * math.pi) * width)
    return torch.as_tensor(np.round(phi * 2 ** f.phi_frac), dtype=torch.int64)


def surrogate(x: torch.Tensor, table: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    """phi(x) from the table (x = v' - vth in potential units, floor to the table's step)."""
    n = (len(table) - 1) // 2
    i = (x >> fmt.phi_index_shift) + n
    inside = (i >= 0) & (i <= 2 * n)
    return torch.where(inside, table[i.clamp(0, 2 * n)], torch.zeros_like(x))


def stein_noise_scale(cfg: FixedNetConfig) -> tuple[int, int]:
    """(m, G) of Stein's estimate (module docstring): the noise multiplier and the gain."""
    f = cfg.fmt
    m = max(1, round(cfg.surrogate_width * cfg.vth * 256 / math.sqrt(DIR_VAR)))
    return m, round(2.0 ** (16 + f.phi_frac + f.v_frac + 8) / (DIR_VAR * cfg.stein_samples * m))


def stein_noise(cfg: FixedNetConfig, layer: int, update: int) -> torch.Tensor:
    """xi (T, batch, n, K) int64 of hidden layer ``layer``'s n neurons for the samples of update
    ``update``: step, sample slot in the configured batch, neuron, draw. Each draw is one 32-bit
    hash, xi = the sum of its 4 bytes - 510."""
    shape = (cfg.steps, cfg.batch, cfg.sizes[layer + 1], cfg.stein_samples)
    h = (hash_uniform(shape, cfg.seed, STEIN_TAG, layer, update) * 2.0 ** 32).to(torch.int64)
    return sum((h >> (8 * i)) & 255 for i in range(DIR_BYTES)) - DIR_MEAN


def stein_phi(x: torch.Tensor, xi: torch.Tensor, m: int, gain: int) -> torch.Tensor:
    """phi (..., n) from K noisy threshold tests: x = v' - vth (..., n), noise xi (..., n, K)."""
    flips = ((x.unsqueeze(-1) + ((xi * m) >> 8)) > 0).to(torch.int64) - (x > 0).to(torch.int64).unsqueeze(-1)
    return ((flips * xi).sum(dim=-1) * gain) >> 16


def spike_derivative(cfg: FixedNetConfig, table: torch.Tensor, xi: torch.Tensor | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """phi of :func:`lif_step`: the surrogate ``table``, or Stein's estimate from noise xi (..., n, K)."""
    if cfg.grad == "surrogate":
        return lambda x: surrogate(x, table, cfg.fmt)
    m, gain = stein_noise_scale(cfg)
    return lambda x: stein_phi(x, xi, m, gain)


def weight_tangent(u: LayerParams, x: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    """The tangent a weight direction starts at its layer, ``(U x + u_b one) << (w_frac - dir_frac +
    tan_frac)`` (..., n_out), in the units of ``W x`` with tan_frac more bits."""
    return (x @ u.weights.T + u.bias * fmt.one) << (fmt.w_frac - fmt.dir_frac + fmt.tan_frac)


def node_tangent(xi: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    """The tangent a neuron perturbation xi (..., n_out) starts at its layer (activity mode):
    ``xi << (w_frac + in_frac - dir_frac + tan_frac)``, the real xi / 2^dir_frac in the units of
    :func:`weight_tangent`."""
    return xi << (fmt.w_frac + fmt.in_frac - fmt.dir_frac + fmt.tan_frac)


def dense_step(layer: LayerParams, start: torch.Tensor, x: torch.Tensor, x_dot: torch.Tensor, fmt: FixedFormat
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """a (..., n_out) and a_dot (D, ..., n_out) for inputs x (..., n_in), x_dot (D, ..., n_in);
    ``start`` (D, ..., n_out) holds the tangents that begin at this layer
    (:meth:`FixedNetConfig.tangent_start`)."""
    a = (x @ layer.weights.T + layer.bias * fmt.one) >> fmt.a_shift
    a_dot = (start + x_dot @ layer.weights.T) >> fmt.a_shift
    return a, a_dot


def node_noise(cfg: FixedNetConfig, layer: int, update: int, draw: int = 0) -> torch.Tensor:
    """Activity mode's perturbation xi (T', batch, n_out) int64 of layer ``layer``'s neurons for the
    samples of update ``update`` (draw ``draw``): step (T' = 1 where the current is constant,
    :meth:`FixedNetConfig.constant_current`, else T), sample slot in the configured batch, neuron.
    Each value is one 32-bit hash, xi = the sum of its 4 bytes - 510, as for the directions."""
    steps = 1 if cfg.constant_current(layer) else cfg.steps
    h = hash_uniform((steps, cfg.batch, cfg.sizes[layer + 1]), cfg.seed, NODE_TAG, layer, update, *_draw_key(draw))
    h = (h * 2.0 ** 32).to(torch.int64)
    return sum((h >> (8 * i)) & 255 for i in range(DIR_BYTES)) - DIR_MEAN


def eligibility(xi: torch.Tensor, x: torch.Tensor, fmt: FixedFormat) -> LayerParams:
    """Activity mode's local product of a perturbation xi (..., n_out) and the layer's input
    x (..., n_in), summed over the leading axes: ``sum xi x^T`` and, for the bias (input
    ``one``), ``sum xi one``. With xi scaled by a sample's d this is its term of the update."""
    return LayerParams(torch.einsum("...i,...j->ij", xi, x), (xi * fmt.one).reshape(-1, xi.shape[-1]).sum(dim=0))


class NeuronState(NamedTuple):
    v: torch.Tensor  # (..., n)
    v_dot: torch.Tensor  # (D, ..., n)


def lif_step(a: torch.Tensor, a_dot: torch.Tensor, state: NeuronState, cfg: FixedNetConfig,
             phi: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """Spikes (as inputs of the next layer: 0 or ``one``), their tangents, and the new state;
    ``phi(v' - vth)`` is the spike's derivative (:func:`surrogate` or :func:`stein_phi`)."""
    f = cfg.fmt
    v = state.v - ((state.v * cfg.dv) >> 12) + a
    v_dot = state.v_dot - ((state.v_dot * cfg.dv) >> 12) + a_dot
    s = (v > cfg.vth).to(torch.int64)
    s_dot = (phi(v - cfg.vth) * v_dot) >> (f.phi_frac + f.v_frac - f.in_frac)
    return s * f.one, s_dot, NeuronState(v - cfg.vth * s, v_dot)


def loss_terms(y_acc: torch.Tensor, y_dot_acc: torch.Tensor, t_int: torch.Tensor, cfg: FixedNetConfig,
               perturbed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of e^2, contributions to D (n_dirs,)) for samples y_acc (..., n_out) and integer targets
    t_int (:func:`target_int`), e = y_acc - t_int: ``sum e y_dot`` per direction, or in weight
    mode ``-sum e^2`` for the plain run and ``+sum e^2`` for the ``perturbed`` one. Activity mode
    keeps one D per direction and sample, ``D_b = sum_outputs e_b y_dot_b`` (n_dirs, ...)."""
    e = y_acc - t_int
    sum_e2 = (e * e).sum()
    if cfg.mode == "weight":
        return sum_e2, (sum_e2 if perturbed else -sum_e2).reshape(1)
    if cfg.mode == "activity":
        return sum_e2, (e * y_dot_acc).sum(dim=-1)
    return sum_e2, (e * y_dot_acc).reshape(y_dot_acc.shape[0], -1).sum(dim=1)


def target_int(target: torch.Tensor, cfg: FixedNetConfig) -> torch.Tensor:
    """round(t T 2^v_frac): targets in the units of the summed readout."""
    return torch.round(torch.as_tensor(target, dtype=torch.float64) * cfg.steps * 2 ** cfg.fmt.v_frac).to(torch.int64)


def third_factor(D: torch.Tensor, shift: int) -> torch.Tensor:
    """d_k = clip(D_k >> shift, +-(2^23 - 1)): the graded spike the loss neuron sends
    (``shift``: :attr:`FixedNetConfig.third_factor_shift`)."""
    return torch.clamp(D >> shift, -D_MAX, D_MAX)


def update_layer(layer: LayerParams, u: LayerParams, d: int, cfg: FixedNetConfig, index: int, update: int
                 ) -> LayerParams:
    """w <- clip(w + SR(-c d u), -256, 255) for weights and bias (module docstring); activity mode
    passes the batch's summed eligibility G as u, with d = 1."""
    c = cfg.update_scale(update, index)
    new = []
    for part, (w, uw) in enumerate(zip(layer, u)):
        dw = stochastic_round(-c * float(d) * uw.to(torch.float64), cfg.seed, UPDATE_TAG, index, update, part)
        new.append(torch.clamp(w + dw, W_MIN, W_MAX))
    return LayerParams(*new)


def draw_terms(us: list[LayerParams], ds: list[int]) -> tuple[LayerParams, int]:
    """(u, d) of :func:`update_layer` for a layer's K draws: the one draw's own u and d, or for
    K > 1 the integer sum ``G = sum_j d_j u_j`` with d = 1 (``update_scale`` divides by K)."""
    if len(us) == 1:
        return us[0], ds[0]
    return LayerParams(*(sum(d * u[part] for u, d in zip(us, ds)) for part in range(2))), 1


def mse_real(sum_e2: int | float, n_samples: int, cfg: FixedNetConfig) -> float:
    """mean((y - t)^2) in reals from the integer sum of e^2."""
    scale = cfg.steps * 2 ** cfg.fmt.v_frac
    return float(sum_e2) / (n_samples * cfg.sizes[-1] * scale * scale)


def augmented(layer: LayerParams) -> torch.Tensor:
    """Rule 'loihi2': the LearningDense matrix ``[W | b]`` (n_out, n_in + 1); the bias is the weight
    from an always-on input ``one``."""
    return torch.cat([layer.weights, layer.bias[:, None]], dim=1)


def split_augmented(w: torch.Tensor) -> LayerParams:
    return LayerParams(w[:, :-1].contiguous(), w[:, -1].contiguous())


def loihi2_direction(u: LayerParams) -> LayerParams:
    """Rule 'loihi2': the direction as the host writes it, ``q = clip(round(u / 64), -7, 7)`` (weights and
    bias): the perturbation in weight mode, the tangent's direction otherwise. The tag holds
    ``q << 5`` (:data:`lavasnn.engine.learning_engine.TAG_SHIFT`), so every learning product is exact."""
    half = 1 << (LOIHI2_DIR_SHIFT - 1)
    return LayerParams(*(torch.clamp((w + half) >> LOIHI2_DIR_SHIFT, -le.DIRECTION_MAX, le.DIRECTION_MAX) for w in u))


def loihi2_tag(u: LayerParams) -> torch.Tensor:
    """Rule 'loihi2': the tag ``[q | q_b] << 5`` (n_out, n_in + 1) the host writes for a batch."""
    return augmented(loihi2_direction(u)) << le.TAG_SHIFT


def _direction_variance() -> float:
    """E[q^2] of :func:`loihi2_direction` for u = the sum of 4 uniform bytes - 510 (exact, from the
    distribution of the sum)."""
    byte = np.ones(256) / 256
    pmf = byte
    for _ in range(DIR_BYTES - 1):
        pmf = np.convolve(pmf, byte)
    u = np.arange(len(pmf)) - DIR_MEAN
    q = np.clip((u + (1 << (LOIHI2_DIR_SHIFT - 1))) >> LOIHI2_DIR_SHIFT, -le.DIRECTION_MAX, le.DIRECTION_MAX)
    return float((pmf * q ** 2).sum())


LOIHI2_DIR_VAR = _direction_variance()  # about 5.4


def loihi2_gain(cfg: FixedNetConfig, update: int, layer: int = 0) -> tuple[int, int]:
    """Rule 'loihi2': the loss neuron's (g, shift) at update ``update``, ``d = D g / 2^shift`` (rounded
    stochastically, :func:`loihi2_third_factor`), so that the learning rule's ``-2^e d q`` is in weight
    mode ``-lr_k (L(w + p) - L(w)) p / sigma_p^2`` in reals (p = q / 2^w_frac the perturbation,
    sigma_p^2 = E[q^2] / 2^(2 w_frac) its variance per weight), and in the forward-gradient modes the
    exact rule's ``-c (D >> shift) u`` (:meth:`FixedNetConfig.update_scale` of ``layer``) with u
    replaced by q, rescaled to q's variance. The learning-rate schedule lives in g, which the host
    writes before each batch."""
    f, e = cfg.fmt, cfg.learning_exp
    if cfg.mode == "weight":
        lr = cfg.lr * cfg.lr_decay ** (update // cfg.updates_per_epoch)
        n = cfg.batch * cfg.sizes[-1] * cfg.steps ** 2 * 2.0 ** (2 * f.v_frac)
        gain = lr * 2.0 ** (2 * f.w_frac - e) / (LOIHI2_DIR_VAR * n)
    else:  # c u (D >> shift) with u -> 2^6 q and E[u^2] -> E[(2^6 q)^2]
        c = cfg.update_scale(update, layer) * DIR_VAR / (2 ** (2 * LOIHI2_DIR_SHIFT) * LOIHI2_DIR_VAR)
        gain = c * 2.0 ** (LOIHI2_DIR_SHIFT - cfg.third_factor_shift - e)
    shift = GAIN_BITS - 1 - math.floor(math.log2(gain))
    return round(gain * 2.0 ** shift), shift


def loihi2_third_factor(D: int, gain: tuple[int, int], r: float) -> int:
    """Rule 'loihi2': ``d = clip(floor(D g / 2^shift) + [r < frac], -127, 127)``, the loss neuron's
    stochastically rounded third factor (|d| is sent as y3 or y2 by its sign); D in Python integers."""
    g, shift = gain
    scaled = int(D) * g
    d = (scaled >> shift) + int(r < (scaled & ((1 << shift) - 1)) / 2.0 ** shift)
    return max(-THIRD_FACTOR_MAX, min(THIRD_FACTOR_MAX, d))


def loihi2_round_random(cfg: FixedNetConfig, update: int) -> torch.Tensor:
    """Rule 'loihi2': the loss neuron's random numbers (n_dirs,) for rounding the d's of update ``update``."""
    return hash_uniform((cfg.n_dirs,), cfg.seed, D_ROUND_TAG, update)


def loihi2_factors(d: int) -> tuple[int, int]:
    """(y2, y3) of an update: the negative and the positive part of d (the rule adds 2^e (y2 - y3) q)."""
    return max(-d, 0), max(d, 0)


def loihi2_batch_steps(cfg: FixedNetConfig, n_samples: int) -> int:
    """Rule 'loihi2': Lava steps of a batch: T steps per run of a sample (two runs in weight mode), L
    idle steps while the last sample passes the layers' one-step synaptic delays, and the update step."""
    return cfg.passes * cfg.steps * n_samples + cfg.n_layers + 1


def loihi2_tangent(q: LayerParams, x: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    """Rule 'loihi2': the tangent a direction q starts at its layer, ``(2 q x_aug) << start_exp``, the
    output of a plain Dense with weights 2 q (even: Lava's MIXED sign mode keeps no lowest bit) and
    weight_exp = start_exp (:func:`loihi2_start_exp`): :func:`weight_tangent` after the layer's
    shift, with u ~ 2^6 q."""
    return (x @ (2 * q.weights).T + 2 * q.bias * fmt.one) << loihi2_start_exp(fmt)


def loihi2_start_exp(fmt: FixedFormat) -> int:
    """weight_exp of the start synapses 2 q: ``w_frac - dir_frac + tan_frac - a_shift + 5`` (2 q ~ u / 2^5)."""
    return fmt.w_frac - fmt.dir_frac + fmt.tan_frac - fmt.a_shift + LOIHI2_DIR_SHIFT - 1


def learning_dense_step(layer: LayerParams, start: torch.Tensor, x: torch.Tensor, x_dot: torch.Tensor,
                        fmt: FixedFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Rule 'loihi2': :func:`dense_step` as three Dense outputs summed in the neuron: ``a = W x_aug >>
    a_shift`` and ``a_dot = (W x_dot >> a_shift) + start`` (a copy of W carries the tangents, whose
    bias input is 0; ``start`` from :func:`loihi2_tangent`)."""
    a = (x @ layer.weights.T + layer.bias * fmt.one) >> fmt.a_shift
    return a, ((x_dot @ layer.weights.T) >> fmt.a_shift) + start


class FixedForwardGradEngine:
    """Batched fixed-point forward-gradient training: samples of a batch run side by side."""

    def __init__(self, cfg: FixedNetConfig, layers: list[LayerParams], updates: int = 0) -> None:
        if [tuple(l.weights.shape) for l in layers] != [(b, a) for a, b in zip(cfg.sizes[:-1], cfg.sizes[1:])]:
            raise UserError(f"layer shapes {[tuple(l.weights.shape) for l in layers]} do not match sizes {cfg.sizes}")
        self.cfg, self.layers, self.updates = cfg, list(layers), updates
        self.table = surrogate_table(cfg)
        if cfg.rule == "loihi2":  # the Lava run's step count and LearningDense rounding stream
            self.lava_step, self.synaptic_random = 0, le.SynapticRandom()

    def derivatives(self, n_samples: int) -> list[list[Callable[[torch.Tensor], torch.Tensor]]]:
        """phi of every hidden layer (outer) and time step (inner) for this update's samples."""
        cfg = self.cfg
        if cfg.grad == "surrogate":
            return [[spike_derivative(cfg, self.table)] * cfg.steps for _ in cfg.sizes[1:-1]]
        if n_samples > cfg.batch:
            raise UserError(f"a training batch holds at most cfg.batch = {cfg.batch} samples, got {n_samples}")
        noise = [stein_noise(cfg, l, self.updates)[:, :n_samples] for l in range(cfg.n_layers - 1)]
        return [[spike_derivative(cfg, self.table, xi[t]) for t in range(cfg.steps)] for xi in noise]

    def directions(self, draw: int = 0) -> list[LayerParams]:
        """Every layer's direction of draw ``draw`` at this update."""
        return [direction(self.cfg, l, self.updates, tuple(layer.weights.shape), draw)
                for l, layer in enumerate(self.layers)]

    def node_noises(self, n_samples: int, draw: int = 0) -> list[torch.Tensor]:
        """Activity mode: every layer's perturbation xi (T', n_samples, n) of draw ``draw`` for this
        update's samples."""
        if n_samples > self.cfg.batch:
            raise UserError(f"a training batch holds at most cfg.batch = {self.cfg.batch} samples, got {n_samples}")
        return [node_noise(self.cfg, l, self.updates, draw)[:, :n_samples] for l in range(self.cfg.n_layers)]

    def forward(self, x: torch.Tensor, with_tangents: bool = True, events: dict | None = None,
                directions: list[list[LayerParams]] | None = None, layers: list[LayerParams] | None = None,
                noise: list[list[torch.Tensor]] | None = None, record: list[list[torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed readout y_acc (B, n_out) and its tangents (D, B, n_out) for real inputs x (B, n_in),
        along ``directions`` (per draw, per layer; default: this update's, :meth:`directions`) or, in
        activity mode, the neuron perturbations ``noise`` (per draw, per layer; default:
        :meth:`node_noises`), with ``layers`` (default: the current weights). ``record``, if given,
        receives every layer's input at every step.

        ``events``, if given, receives the synaptic operations an event-driven chip performs:
        ``forward`` (non-zero inputs times fan-out, summed over steps and layers) and ``tangent``
        (the same events once more for each direction that moves the layer: U x, or in activity mode
        the eligibility xi x^T, plus the non-zero input tangents times fan-out, W x_dot)."""
        cfg, f = self.cfg, self.cfg.fmt
        xq = torch.round(torch.as_tensor(x, dtype=torch.float64) * f.one).to(torch.int64)
        layers = layers if layers is not None else self.layers
        D = cfg.n_dirs if with_tangents and cfg.mode != "weight" else 0
        draws = range(cfg.directions)
        activity = bool(D) and cfg.mode == "activity"
        if activity:
            noise = noise if noise is not None else [self.node_noises(len(xq), j) for j in draws]
        elif D:
            u = directions if directions is not None else [self.directions(j) for j in draws]
        states = [NeuronState(torch.zeros(len(xq), n, dtype=torch.int64), torch.zeros(D, len(xq), n, dtype=torch.int64))
                  for n in cfg.sizes[1:-1]]
        phi = self.derivatives(len(xq)) if D else None
        y_acc = torch.zeros(len(xq), cfg.sizes[-1], dtype=torch.int64)
        y_dot_acc = torch.zeros(D, len(xq), cfg.sizes[-1], dtype=torch.int64)
        for t in range(cfg.steps):
            s, s_dot = xq, torch.zeros(D, *xq.shape, dtype=torch.int64)
            for l in range(cfg.n_layers):
                if events is not None:
                    fan_out, inputs = cfg.sizes[l + 1], int((s != 0).sum())
                    events["forward"] = events.get("forward", 0) + inputs * fan_out
                    events["tangent"] = (events.get("tangent", 0) + (cfg.directions if D else 0) * inputs * fan_out
                                         + int((s_dot != 0).sum()) * fan_out)
                if record is not None:
                    record[l].append(s)
                if not D:
                    start = torch.zeros(0, len(xq), cfg.sizes[l + 1], dtype=torch.int64)
                elif activity:
                    start = cfg.tangent_start(l, [node_tangent(n[l][t % len(n[l])], f) for n in noise])
                elif cfg.rule == "loihi2":
                    start = cfg.tangent_start(l, [loihi2_tangent(loihi2_direction(ul[l]), s, f) for ul in u])
                else:
                    start = cfg.tangent_start(l, [weight_tangent(ul[l], s, f) for ul in u])
                step = learning_dense_step if cfg.rule == "loihi2" else dense_step
                a, a_dot = step(layers[l], start, s, s_dot, f)
                if l < cfg.n_layers - 1:
                    s, s_dot, states[l] = lif_step(a, a_dot, states[l], cfg, phi[l][t] if D else torch.zeros_like)
            y_acc, y_dot_acc = y_acc + a, y_dot_acc + a_dot
        return y_acc, y_dot_acc

    def step(self, x: torch.Tensor, target: torch.Tensor, events: dict | None = None) -> float:
        """One training step on a batch; returns its loss mean((y - t)^2) before the update
        (``events``: see :meth:`forward`)."""
        if self.cfg.mode == "activity":
            return self._activity_step(x, target_int(target, self.cfg), events)
        if self.cfg.rule == "loihi2" and self.cfg.mode == "weight":
            return self._loihi2_step(x, target_int(target, self.cfg), events)
        if self.cfg.rule == "loihi2":
            return self._loihi2_forward_grad_step(x, target_int(target, self.cfg), events)
        cfg, t_int = self.cfg, target_int(target, self.cfg)
        dirs = [self.directions(j) for j in range(cfg.directions)]
        sum_e2, D = loss_terms(*self.forward(x, events=events, directions=dirs), t_int, cfg)
        if cfg.mode == "weight":
            shifted = [perturbed_layer(layer, u, cfg.fmt) for layer, u in zip(self.layers, dirs[0])]
            D = D + loss_terms(*self.forward(x, events=events, layers=shifted), t_int, cfg, perturbed=True)[1]
        d = third_factor(D, cfg.third_factor_shift)
        self.layers = [update_layer(layer, *draw_terms([du[l] for du in dirs], [int(d[k]) for k in cfg.directions_of(l)]),
                                    cfg, l, self.updates)
                       for l, layer in enumerate(self.layers)]
        self.updates += 1
        return mse_real(int(sum_e2), len(x), self.cfg)

    def _activity_step(self, x: torch.Tensor, t_int: torch.Tensor, events: dict | None) -> float:
        """Activity mode: per sample b, layer l and draw j the third factor d_jl,b, then
        ``G_l = sum_j,b d_jl,b sum_t xi_jl,b,t x_l,b,t^T`` (:func:`eligibility`) and w <- clip(w + SR(-c G))."""
        cfg, inputs = self.cfg, [[] for _ in self.layers]
        noise = [self.node_noises(len(x), j) for j in range(cfg.directions)]
        sum_e2, D = loss_terms(*self.forward(x, events=events, noise=noise, record=inputs), t_int, cfg)
        d = third_factor(D, cfg.third_factor_shift)  # (D, B)
        new = []
        for l, layer in enumerate(self.layers):
            weighted = sum(d[k][None, :, None] * n[l].expand(cfg.steps, -1, -1)
                           for k, n in zip(cfg.directions_of(l), noise))
            new.append(update_layer(layer, eligibility(weighted, torch.stack(inputs[l]), cfg.fmt), 1, cfg, l,
                                    self.updates))
        self.layers = new
        self.updates += 1
        return mse_real(int(sum_e2), len(x), cfg)

    def _loihi2_update(self, ws: list[torch.Tensor], tags: list[torch.Tensor], D: torch.Tensor, n_samples: int
                       ) -> list[LayerParams]:
        """Rule 'loihi2''s update step after a batch of ``n_samples`` (augmented weights ws): the loss
        neuron rounds each direction's d, every synapse of layer l takes ``-2^e d_k q`` with the step's
        one random number."""
        cfg = self.cfg
        self.lava_step += loihi2_batch_steps(cfg, n_samples)
        r, r_d = self.synaptic_random.at(self.lava_step), loihi2_round_random(cfg, self.updates)
        new = []
        for l, (w, tag) in enumerate(zip(ws, tags)):
            (k,) = cfg.directions_of(l)
            d = loihi2_third_factor(int(D[k]), loihi2_gain(cfg, self.updates, l), float(r_d[k]))
            new.append(split_augmented(le.perturbation_rule_step(w, tag, *loihi2_factors(d), cfg.learning_exp, r)))
        self.updates += 1
        return new

    def _loihi2_step(self, x: torch.Tensor, t_int: torch.Tensor, events: dict | None) -> float:
        """Weight perturbation as Lava's LearningDense runs it (rule 'loihi2'): each sample runs with w,
        the learning engine adds q (``clip(w + q)``), the sample runs again, the engine removes q
        (``clip(w + q) - q``: w unless the addition clipped, so from the second sample on the plain
        runs may see the restored weights), and after the batch every synapse takes ``-2^e d q``."""
        cfg = self.cfg
        y, tags = 2 ** -cfg.learning_exp, [loihi2_tag(u) for u in self.directions()]
        plain = [augmented(l) for l in self.layers]
        moved = [le.perturbation_rule_step(w, t, y, 0, cfg.learning_exp, 0.0) for w, t in zip(plain, tags)]
        restored = [le.perturbation_rule_step(w, t, 0, y, cfg.learning_exp, 0.0) for w, t in zip(moved, tags)]
        as_layers = lambda ws: [split_augmented(w) for w in ws]  # noqa: E731
        y_plain, _ = self.forward(x[:1], with_tangents=False, events=events, layers=as_layers(plain))
        if len(x) > 1:
            y_rest, _ = self.forward(x[1:], with_tangents=False, events=events, layers=as_layers(restored))
            y_plain = torch.cat([y_plain, y_rest])
        y_moved, _ = self.forward(x, with_tangents=False, events=events, layers=as_layers(moved))
        sum_e2, D = loss_terms(y_plain, y_plain, t_int, cfg)
        D = D + loss_terms(y_moved, y_moved, t_int, cfg, perturbed=True)[1]
        self.layers = self._loihi2_update(restored, tags, D, len(x))
        return mse_real(int(sum_e2), len(x), cfg)

    def _loihi2_forward_grad_step(self, x: torch.Tensor, t_int: torch.Tensor, events: dict | None) -> float:
        """Global or layer-wise forward gradients as Lava's LearningDense learns them (rule 'loihi2'):
        one run per sample with the tangents of :func:`learning_dense_step`, then every synapse of
        layer l takes ``-2^e d_k q`` with its direction's d_k."""
        u = self.directions()
        sum_e2, D = loss_terms(*self.forward(x, events=events, directions=[u]), t_int, self.cfg)
        self.layers = self._loihi2_update([augmented(l) for l in self.layers], [loihi2_tag(ul) for ul in u], D, len(x))
        return mse_real(int(sum_e2), len(x), self.cfg)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Real outputs y (B, n_out)."""
        y_acc, _ = self.forward(x, with_tangents=False)
        return y_acc.double() / (self.cfg.steps * 2 ** self.cfg.fmt.v_frac)
