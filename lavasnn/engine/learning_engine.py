"""BioGrad's eligibility traces in the form Loihi 2's learning engine offers, batched in torch.

This is a bit-exact re-implementation of Lava 0.10's fixed-point ``LearningDense``
(``PyLearningDenseModelBitApproximate``, ``lava/magma/core/model/py/connection.py`` and
``learning/learning_rule_applier.py``) for exactly one rule, the one that
:func:`lavasnn.procs.loihi2.process.biograd_loihi2_rule` writes (t_epoch = 1, ``u0`` = every
step), and of the third factors that :class:`lavasnn.procs.loihi2.process.Loihi2TraceNeuron`
sends. The Lava ProcessModel calls :func:`loihi2_neuron_step_fixed` too; the crosscheck
:mod:`lavasnn.crosscheck_loihi2` proves that Lava and this engine agree bit for bit.

Per synapse (i post, j pre), per time step n, with 2^a = 2^tag_exp and 2^k = 2^lr_exp::

    x1_j  <- SR(e^{-1/tau} x1_j) + imp s_j          (7 bits, [0, 127], one x1 per pre neuron)
    t_ij  <- t_ij + 2^a x1_j y1_i / 8 - y0_i t_ij    (tag = gradient trace, 9 bits, [-257, 255])
    w_ij  <- w_ij - 2^k y2_i t_ij / 32 + 2^k y3_i t_ij / 32     (8 bits + sign, [-256, 255])

where y1 = grad_amp * g (the quantized pseudo-derivative, 0..127) on ordinary steps, and on the
last step of a sample y1 = 0, y0 = 1 (a bAP, used only to reset the tag) and y2 / y3 = the
positive / negative part of the error delta = d / feedback_steps (7 bits each). So at the end of
a sample ``dw = -lr delta E`` with ``E = sum_n g_n x1_n`` (BioGrad: ``dW = -lr delta E`` with
its exact trace E). The update uses the tag of the previous step: every rule reads the old
w and t.

Fixed-point details of Lava's learning engine (all reproduced here):

- a product ``m 2^e * dep * f1 * f2`` multiplies the factors clipped to their widths (x1, y*:
  7 bits; t: 9 bits + sign), times the mantissa (4 bits), shifts right (floor) by
  ``max(0, sum(widths) + 4 - 15)`` (x1 y1: 3, y2 t: 5, t: 0 -- the /8 and /32 above), then
  left by ``e + 7``; products and their sum saturate at the 16-bit accumulator
  [-(2^15) - 1, 2^15 - 1], where w and t sit shifted left by 7;
- the sum is rounded stochastically to an integer: ``floor(acc / 128) + [r < frac]``, with ONE
  random number r per step shared by all synapses and by w and t, from
  ``default_rng(2)`` (``ConnVarRandom``'s hard-coded seed), draw n at step n;
- x1 decays stochastically: ``floor(e^{-1/tau} x1) + [r_x < frac]``, one r_x per step shared
  by all pre neurons, from ``default_rng(rng_seed)``, draw 2n at step n (``TraceRandom``
  advances twice per time step); the impulse is an integer, so adding it needs no rounding;
- a bAP clips the y values to [0, 127]; y is otherwise used as the neuron sent it (the rule's
  y taus are 2^60, where e^{-1/tau} == 1.0, see ``biograd_loihi2_rule``);
- weights start as even values (Lava's MIXED sign mode drops the LSB); learning makes them any
  integer in [-256, 255].

Batching: leading dimensions of the tensors are independent networks that share the random
streams, as separate Lava runs with the same ``rng_seed`` would, unless the random numbers are
given per network (tensors, see :func:`learning_step_fixed`). BioGrad training with this rule:
``BioGradConfig(rule="loihi2")`` (:mod:`lavasnn.engine.biograd`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from lavasnn import fixed as fx
from lavasnn.engine import steps
from lavasnn.errors import UserError

TRACE_MAX = (1 << 7) - 1  # x1, y1, y2, y3: 7-bit unsigned traces
FACTOR_BITS = {"trace": 7, "tag": 9}  # widths the learning engine clips factors to (+ sign)
MANT_BITS = 4  # mantissa of the product's scaling constant m 2^e
ACC_BITS = 15  # accumulator: 15 bits + sign
ACC_MIN, ACC_MAX = -(1 << ACC_BITS) - 1, (1 << ACC_BITS) - 1
SYN_SHIFT = 7  # w and t sit in the accumulator shifted left by 16 - 9 bits
LEARNED_W_RANGE = (-256, 255)  # 8 bits + sign after a learning update
TAG_RANGE = (-257, 255)  # Lava's tag_1: -(2^8) - 1 .. 2^8 - 1
EXP_RANGE = (-7, 8)  # exponent e of a product's scaling constant m 2^e
X1_TAU_RANGE = (1, (1 << 16) - 1)
ERR_SHIFT_RANGE = (0, 23)
W_ROUND_SEED = 2  # lava.magma.core.learning.random.ConnVarRandom's default seed
Y_TAU = 1 << 60  # e^{-1/2^60} == 1.0: the neuron's y values reach the rule unchanged


class Loihi2RuleParams(NamedTuple):
    """Parameters of the rule written by ``biograd_loihi2_rule`` (all integers)."""

    lr_exp: int  # learning rate 2^lr_exp (times the hidden 1/32 of y2 t)
    tag_exp: int  # tag gain 2^tag_exp (times the hidden 1/8 of x1 y1)
    x1_impulse: int  # x1 increment per pre spike, 0..127
    x1_tau: int  # x1 decays by e^{-1/x1_tau} per step
    rng_seed: int  # seed of Lava's trace random streams (rng_seed .. rng_seed + 3)


def check_rule_params(p: Loihi2RuleParams) -> Loihi2RuleParams:
    """Raise UserError naming the parameter unless it fits Loihi 2's learning engine."""
    if p.rng_seed is None:
        raise UserError("rng_seed must be an integer in [0, 2^31 - 4]: without a fixed seed, "
                        "Lava's stochastic rounding differs from run to run")
    fx.check_range("lr_exp", p.lr_exp, *EXP_RANGE)
    fx.check_range("tag_exp", p.tag_exp, *EXP_RANGE)
    fx.check_range("x1_impulse", p.x1_impulse, 0, TRACE_MAX)
    fx.check_range("x1_tau", p.x1_tau, *X1_TAU_RANGE)
    fx.check_range("rng_seed", p.rng_seed, 0, (1 << 31) - 4)
    return Loihi2RuleParams(*(int(v) for v in p))


# --------------------------------------------------------------------------------------------
# The neuron: multi-compartment LIF that sends its third factors
# --------------------------------------------------------------------------------------------

class Loihi2NeuronParams(NamedTuple):
    soma: steps.MCLIFParams  # fixed point; its grad_amp is unused
    grad_amp: int  # y1 = grad_amp * g, 0..127
    feedback_steps: int  # delta = d / feedback_steps
    err_shift: int  # delta = d / (feedback_steps 2^err_shift); 6 undoes the dendrite's << 6


class ThirdFactors(NamedTuple):
    y1: torch.Tensor  # quantized pseudo-derivative, 0..127
    y2: torch.Tensor  # positive part of the error, 0..127
    y3: torch.Tensor  # negative part of the error, 0..127
    bap: torch.Tensor  # 1 on the update step: resets the tags


def loihi2_neuron_step_fixed(a_in: torch.Tensor, d_in: torch.Tensor, state: steps.MCLIFState,
                             p: Loihi2NeuronParams, end: bool
                             ) -> tuple[steps.MCLIFOut, ThirdFactors, steps.MCLIFState]:
    """One step of the neuron (int64 out): :func:`steps.mclif_step_fixed`, then::

        ordinary step:  y1 = grad_amp g,  y2 = y3 = 0,  bap = 0
        last step of a sample (end):
            delta = clamp(rz(d / (feedback_steps 2^err_shift)), -127, 127)   (rz: to zero)
            y1 = 0,  y2 = max(delta, 0),  y3 = max(-delta, 0),  bap = 1
            u, v, d <- 0                                  (the next sample starts afresh)
    """
    out, new = steps.mclif_step_fixed(a_in, d_in, state, p.soma)
    zero = torch.zeros_like(out.g)
    if not end:
        return out, ThirdFactors(p.grad_amp * out.g, zero, zero, zero), new
    delta = torch.div(new.d, p.feedback_steps << p.err_shift, rounding_mode="trunc")
    delta = torch.clamp(delta, -TRACE_MAX, TRACE_MAX)
    y = ThirdFactors(zero, torch.clamp(delta, min=0), torch.clamp(-delta, min=0), torch.ones_like(zero))
    return out, y, steps.MCLIFState(*(torch.zeros_like(v) for v in new))


# --------------------------------------------------------------------------------------------
# The synapses: Lava's LearningDense, fixed point
# --------------------------------------------------------------------------------------------

class LearningRandoms(NamedTuple):
    """Lava's random numbers, index n - 1 for time step n (n = 1, 2, ...)."""

    x_decay: np.ndarray  # stochastic rounding of x1's decay
    syn_round: np.ndarray  # stochastic rounding of the new w and t


def learning_randoms(rng_seed: int, n_steps: int) -> LearningRandoms:
    """Precompute the streams: ``TraceRandom(rng_seed, ...)`` draws once when built and twice per
    time step, so step n uses draw 2n; ``ConnVarRandom()`` (seed 2) draws once when built and
    once per learning epoch, so step n uses draw n."""
    x = np.random.default_rng(rng_seed).random(2 * n_steps + 1)[2::2]
    w = np.random.default_rng(W_ROUND_SEED).random(n_steps + 1)[1:]
    return LearningRandoms(x, w)


class LearningState(NamedTuple):
    w: torch.Tensor  # (..., n_post, n_pre) weights
    t: torch.Tensor  # (..., n_post, n_pre) tags
    x1: torch.Tensor  # (..., n_pre) presynaptic traces


def init_learning_state(weights, batch: tuple[int, ...] = (), device: torch.device | str = "cpu"
                        ) -> LearningState:
    """Start from even 8-bit weights (as Lava's Dense keeps them), zero tags and traces."""
    fx.check_weights("weights", weights)
    w = torch.as_tensor(np.asarray(weights), dtype=torch.int64, device=device)
    w = w.expand(*batch, *w.shape).clone()
    return LearningState(w, torch.zeros_like(w), torch.zeros(*w.shape[:-2], w.shape[-1], dtype=torch.int64,
                                                             device=device))


def _saturate_acc(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, ACC_MIN, ACC_MAX)


def _product(dep, factors: tuple[tuple[torch.Tensor, int], ...], mantissa: int, exp: int) -> torch.Tensor:
    """``dep * prod(clip(f, -2^b, 2^b - 1)) * m >> max(0, sum(b) + 4 - 15) << (e + 7)``, saturated."""
    mac = dep
    width = MANT_BITS
    for f, bits in factors:
        mac = mac * torch.clamp(f, -(1 << bits), (1 << bits) - 1)
        width += bits
    mac = (mac * mantissa) >> max(0, width - ACC_BITS)
    return _saturate_acc(mac << (exp + SYN_SHIFT))


def _round_synaptic(acc: torch.Tensor, r: float, low: int, high: int) -> torch.Tensor:
    """Stochastic rounding of the accumulator to the variable's units, then saturation."""
    frac = torch.remainder(acc, 1 << SYN_SHIFT).to(torch.float64) / (1 << SYN_SHIFT)
    return torch.clamp((acc >> SYN_SHIFT) + (r < frac).to(torch.int64), low, high)


def _decay_trace(x: torch.Tensor, tau: int, r: float) -> torch.Tensor:
    """``floor(e^{-1/tau} x) + [r < frac]`` in float64, as Lava."""
    decayed = x.to(torch.float64) * float(np.exp(-1.0 / tau))
    return (torch.floor(decayed) + (r < torch.remainder(decayed, 1.0)).to(torch.float64)).to(torch.int64)


def learning_step_fixed(x: torch.Tensor, y: ThirdFactors, state: LearningState, p: Loihi2RuleParams,
                        r_x, r_syn) -> LearningState:
    """One learning epoch (t_epoch = 1) after the pre spikes ``x`` (..., n_pre) of this step and the
    third factors ``y`` (..., n_post) that the post neurons sent in this step.

    Order as Lava's ``run_lrn``: decay x1 and add the impulses; clip y to [0, 127] where a bAP
    arrived; dw then dt, both from the old w and t (see the module docstring).

    ``r_x`` and ``r_syn`` are this step's random numbers: floats, or tensors that broadcast
    against x1 (..., n_pre) and w (..., n_post, n_pre), giving each batch element its own
    stream (as if the batch's samples ran one after another on the chip).
    """
    x1, y1, y0 = _pre_trace_and_factors(x, y, state.x1, p, r_x)
    bap = y.bap.to(torch.bool)
    y2, y3 = (torch.where(bap, torch.clamp(v, 0, TRACE_MAX), v)[..., :, None] for v in (y.y2, y.y3))
    trace, tag = FACTOR_BITS["trace"], FACTOR_BITS["tag"]
    t = state.t

    acc = state.w << SYN_SHIFT
    acc = _saturate_acc(acc + _product(1, ((y2, trace), (t, tag)), -1, p.lr_exp))
    acc = _saturate_acc(acc + _product(1, ((y3, trace), (t, tag)), 1, p.lr_exp))
    w = _round_synaptic(acc, r_syn, *LEARNED_W_RANGE)
    return LearningState(w, _tag_update(t, x1, y1, y0, p, r_syn), x1)


def tag_step_fixed(x: torch.Tensor, y: ThirdFactors, state: LearningState, p: Loihi2RuleParams,
                   r_x, r_syn) -> LearningState:
    """:func:`learning_step_fixed` for a step whose y2 = y3 = 0 (every step but a sample's last):
    then dw = 0 exactly (the accumulator holds w << 7, nothing to round), so only x1 and the tag
    are computed and ``state.w`` is returned unchanged. Refuses a step with y2 or y3 != 0."""
    if bool((y.y2 != 0).any()) or bool((y.y3 != 0).any()):
        raise ValueError("tag_step_fixed is for steps with y2 = y3 = 0; use learning_step_fixed")
    x1, y1, y0 = _pre_trace_and_factors(x, y, state.x1, p, r_x)
    return LearningState(state.w, _tag_update(state.t, x1, y1, y0, p, r_syn), x1)


def _pre_trace_and_factors(x, y: ThirdFactors, x1, p: Loihi2RuleParams, r_x):
    """x1 decayed and bumped by this step's pre spikes; y1 (clipped where a bAP arrived) and y0
    as (..., n_post, 1) columns."""
    spiked = x.to(torch.bool)
    x1 = _decay_trace(x1, p.x1_tau, r_x)
    x1 = torch.where(spiked, torch.clamp(x1 + p.x1_impulse, 0, TRACE_MAX), x1)
    bap = y.bap.to(torch.bool)
    y1 = torch.where(bap, torch.clamp(y.y1, 0, TRACE_MAX), y.y1)[..., :, None]
    return x1, y1, bap.to(torch.int64)[..., :, None]


def _tag_update(t, x1, y1, y0, p: Loihi2RuleParams, r_syn) -> torch.Tensor:
    """t <- SR(t + 2^tag_exp x1 y1 / 8 - y0 t), in the accumulator, from the old t."""
    trace, tag = FACTOR_BITS["trace"], FACTOR_BITS["tag"]
    acc = t << SYN_SHIFT
    acc = _saturate_acc(acc + _product(1, ((x1[..., None, :], trace), (y1, trace)), 1, p.tag_exp))
    acc = _saturate_acc(acc + _product(y0, ((t, tag),), -1, 0))
    return _round_synaptic(acc, r_syn, *TAG_RANGE)


# --------------------------------------------------------------------------------------------
# Perturbation learning (Wan, Zhang, Karniadakis 2024) with the direction held in the tag
# --------------------------------------------------------------------------------------------

TAG_SHIFT = 5  # the tag holds p << 5, so y t >> 5 (the product's hidden shift, 7 + 9 + 4 - 15) is exact
DIRECTION_MAX = TAG_RANGE[1] >> TAG_SHIFT  # |p| <= 7: the tag stays within its 9 bits


def perturbation_rule_string(exp: int) -> str:
    """``dw`` of the perturbation rule, for ``Loihi3FLearningRule`` (t_epoch = 1; the tag is not learned)::

        dw = 2^exp y0 y2 t - 2^exp y0 y3 t

    Every product is gated by the post neuron's bAP (dependency y0), which the neurons send only
    in the steps that learn, and y2, y3 >= 0 (a bAP clips them to [0, 127])."""
    return f"2^{exp} * y0 * y2 * t - 2^{exp} * y0 * y3 * t"


def perturbation_rule_step(w: torch.Tensor, t: torch.Tensor, y2, y3, exp: int, r: float) -> torch.Tensor:
    """One learning epoch of :func:`perturbation_rule_string` for post neurons that sent a bAP with
    y2, y3 (per post neuron (n_post,) or scalars) in Lava's fixed-point arithmetic (products,
    accumulator saturation, stochastic rounding with the step's shared random number ``r``, as
    :func:`learning_step_fixed`). With t = p << 5 the products are exact::

        w <- clip(SR(w + 2^exp (y2 - y3) p))

    so y2 = 2^-exp adds p and y3 = 2^-exp removes it exactly (``clip(w + p)``, ``clip(w + p) - p``),
    whatever r, and y2 / y3 = the negative / positive part of d give ``w - SR(2^exp d p)``."""
    col = lambda y: torch.clamp(torch.as_tensor(y, dtype=torch.int64), 0, TRACE_MAX).reshape(-1, 1)  # noqa: E731
    trace, tag = FACTOR_BITS["trace"], FACTOR_BITS["tag"]
    acc = w << SYN_SHIFT
    acc = _saturate_acc(acc + _product(1, ((col(y2), trace), (t, tag)), 1, exp))
    acc = _saturate_acc(acc + _product(1, ((col(y3), trace), (t, tag)), -1, exp))
    return _round_synaptic(acc, r, *LEARNED_W_RANGE)


class SynapticRandom:
    """Lava's ``ConnVarRandom`` of a LearningDense (seed 2): step n of a run (n = 1, 2, ..., one
    learning epoch per step) rounds with draw n, draw 0 being taken when the process is built."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(W_ROUND_SEED)
        self._rng.random()
        self._step = 0

    def at(self, step: int) -> float:
        """The random number of step ``step``; steps must come in increasing order."""
        if step <= self._step:
            raise ValueError(f"step {step} is not after step {self._step}")
        draws = self._rng.random(step - self._step)
        self._step = step
        return float(draws[-1])
