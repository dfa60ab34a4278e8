"""Step functions: the one arithmetic shared by the Lava ProcessModels and the batched engine.

Each function maps ``(input, state, params) -> (output, new state)`` on torch tensors whose
leading dimensions are a batch (the engine) or absent (a Lava ProcessModel, one sample).
``*_fixed`` functions use integer tensors and reproduce Loihi's fixed-point arithmetic
(:mod:`lavasnn.fixed`); ``*_float`` functions are the same equations in floating point.
Decay constants follow Lava's convention: a decay d removes the fraction d per step
(float: ``x (1 - d)``; fixed: ``x (4096 - d) / 4096``).

Neuron, traces and error neurons come from BioGrad (Tang, Kumar, Polykretis, Michmizos 2021,
"BioGrad: Biologically plausible gradient-based learning for spiking neural networks",
arXiv 2110.14092).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from lavasnn import fixed as fx


# --------------------------------------------------------------------------------------------
# Dense connection
# --------------------------------------------------------------------------------------------

def dense_fixed(weights: torch.Tensor, x: torch.Tensor, weight_exp: int = 0) -> torch.Tensor:
    """Synaptic input ``a = (W x) * 2^weight_exp`` (int64), as Lava's bit-accurate Dense.

    ``W`` is (n_post, n_pre) int, ``x`` is (..., n_pre) spikes. The product is taken in float32,
    exact because every partial sum is an integer below 2^24 (:func:`check_dense_exact`).
    """
    a = (x.to(torch.float32) @ weights.to(torch.float32).T).to(torch.int64)
    return fx.scale_by_exp(a, weight_exp)


def dense_float(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Synaptic input ``a = W x``."""
    return x.to(weights.dtype) @ weights.T


def check_dense_exact(weights, max_input: int = 1) -> None:
    """Refuse weights whose integer sums could exceed float32's exact range (2^24)."""
    import numpy as np

    from lavasnn.errors import UserError

    worst = float(np.abs(np.asarray(weights, dtype=np.float64)).sum(axis=-1).max(initial=0)) * max_input
    if worst >= fx.MATMUL_EXACT_LIMIT:
        raise UserError(f"a row of the weights sums to {worst:g} in absolute value; "
                        f"fixed-point sums must stay below 2^24 = {fx.MATMUL_EXACT_LIMIT}")


# --------------------------------------------------------------------------------------------
# Multi-compartment LIF neuron
# --------------------------------------------------------------------------------------------

class MCLIFState(NamedTuple):
    u: torch.Tensor  # somatic current
    v: torch.Tensor  # somatic voltage (after reset)
    d: torch.Tensor  # dendritic voltage (integrated feedback / error input)


class MCLIFParams(NamedTuple):
    du: float  # current decay
    dv: float  # voltage decay
    dd: float  # dendrite decay (0: the dendrite integrates without leak, as in BioGrad)
    vth: float  # threshold (fixed: unshifted, compared with v against vth << 6)
    bias: torch.Tensor | float  # effective bias (fixed: bias_mant << bias_exp)
    soft_reset: bool  # False: v <- 0 after a spike; True: v <- v - threshold
    grad_win: float  # half-width of the pseudo-derivative window, in threshold units
    grad_amp: float = 1.0  # height of the window (float); fixed point uses 1
    v_frac_bits: int = 16  # fixed: v_real = v / 2^v_frac_bits, used by the carry factor


class MCLIFOut(NamedTuple):
    s: torch.Tensor  # spikes
    g: torch.Tensor  # pseudo-derivative of the spike at the pre-reset voltage
    c: torch.Tensor  # trace carry factor 1 - s - v g (fixed: Q12, 4096 = 1.0)
    v: torch.Tensor | None = None  # the pre-reset voltage the three above were computed from


def soma_step_float(v: torch.Tensor, u: torch.Tensor, p: MCLIFParams,
                    spike: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The LIF soma, floating point: (v'_t, s_t, v_t) of :func:`mclif_step_float` for current u_t."""
    v_pre = v * (1 - p.dv) + u + p.bias
    s = (v_pre > p.vth).to(v_pre.dtype) if spike is None else spike(v_pre)
    return v_pre, s, v_pre - p.vth * s if p.soft_reset else v_pre * (1 - s)


def mclif_step_float(a_in: torch.Tensor, d_in: torch.Tensor, state: MCLIFState, p: MCLIFParams,
                     spike: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[MCLIFOut, MCLIFState]:
    """One step of the multi-compartment LIF neuron, floating point::

        u_t = u_{t-1} (1 - du) + a_t
        v'_t = v_{t-1} (1 - dv) + u_t + b            (pre-reset voltage)
        s_t = [v'_t > vth]
        g_t = amp [|v'_t - vth| < win]               (rectangular pseudo-derivative)
        c_t = 1 - s_t - v'_t g_t                      (BioGrad's reset-aware trace carry)
        v_t = v'_t (1 - s_t)  or  v'_t - vth s_t      (hard or soft reset)
        d_t = d_{t-1} (1 - dd) + d_in_t               (dendrite: never drives the soma)

    ``spike`` replaces the step [v > vth] by a function with the same forward value, e.g. one
    with a surrogate derivative for backpropagation through time.
    """
    u = state.u * (1 - p.du) + a_in
    v, s, v_reset = soma_step_float(state.v, u, p, spike)
    g = (torch.abs(v - p.vth) < p.grad_win).to(v.dtype) * p.grad_amp
    c = 1 - s - v * g
    d = state.d * (1 - p.dd) + d_in
    return MCLIFOut(s, g, c, v), MCLIFState(u, v_reset, d)


def mclif_step_fixed(a_in: torch.Tensor, d_in: torch.Tensor, state: MCLIFState,
                     p: MCLIFParams) -> tuple[MCLIFOut, MCLIFState]:
    """One step of the multi-compartment LIF neuron, Loihi fixed point (int64 out)::

        u_t  = wrap24( decay(u_{t-1}, du + 1) + (a_t << 6) )      (as Lava's LIF)
        v'_t = sat24( decay(v_{t-1}, dv) + u_t + bias )
        s_t  = [v'_t > vth << 6]
        g_t  = [|v'_t - (vth << 6)| < win << 6]                     (0 or 1)
        c_t  = 4096 (1 - s_t) - g_t rz(v'_t 2^12 / 2^v_frac_bits)   (Q12; rz rounds to zero)
        v_t  = 0 if s_t (hard)  or  v'_t - (vth << 6) s_t (soft)
        d_t  = sat24( decay(d_{t-1}, dd) + (d_in_t << 6) )

    With dd, d_in and the learning outputs unused this is Lava's ``PyLifModelBitAcc``.
    """
    vth = int(p.vth) << fx.VTH_SHIFT
    state = MCLIFState(*(x.to(torch.int64) for x in state))
    u = fx.wrap_state(fx.decay(state.u, int(p.du) + 1) + (a_in.to(torch.int64) << fx.ACT_SHIFT))
    v = fx.saturate(fx.decay(state.v, int(p.dv)) + u + p.bias)
    s = (v > vth).to(torch.int64)
    g = (torch.abs(v - vth) < (int(p.grad_win) << fx.VTH_SHIFT)).to(torch.int64)
    c = fx.DECAY_UNITY * (1 - s) - g * fx.shift_round_to_zero(v << fx.DECAY_BITS, p.v_frac_bits)
    v_reset = v - vth * s if p.soft_reset else v * (1 - s)
    d = fx.saturate(fx.decay(state.d, int(p.dd)) + (d_in.to(torch.int64) << fx.ACT_SHIFT))
    return MCLIFOut(s, g, c, v), MCLIFState(u, v_reset, d)


# --------------------------------------------------------------------------------------------
# Error neurons: a signed pair of integrate-and-fire neurons with soft reset
# --------------------------------------------------------------------------------------------

class ErrorPairState(NamedTuple):
    v_pos: torch.Tensor
    v_neg: torch.Tensor


def error_pair_step_float(a_in: torch.Tensor, state: ErrorPairState, vth: float
                          ) -> tuple[tuple[torch.Tensor, torch.Tensor], ErrorPairState]:
    """Turn a graded error a_t into spikes of a positive and a negative IF neuron::

        v+_t = v+_{t-1} + a_t,   s+_t = [v+_t > vth],   v+_t <- v+_t - vth s+_t
        v-_t = v-_{t-1} - a_t,   s-_t = [v-_t > vth],   v-_t <- v-_t - vth s-_t

    Over many steps the spike-count difference s+ - s- approximates sum(a) / vth.
    """
    v_pos = state.v_pos + a_in
    v_neg = state.v_neg - a_in
    s_pos = (v_pos > vth).to(v_pos.dtype)
    s_neg = (v_neg > vth).to(v_neg.dtype)
    return (s_pos, s_neg), ErrorPairState(v_pos - vth * s_pos, v_neg - vth * s_neg)


def error_pair_step_fixed(a_in: torch.Tensor, state: ErrorPairState, vth: int
                          ) -> tuple[tuple[torch.Tensor, torch.Tensor], ErrorPairState]:
    """Fixed point: as the float version with a_t << 6 and vth << 6; v saturates at 24 bits."""
    a = a_in.to(torch.int64) << fx.ACT_SHIFT
    vth_eff = int(vth) << fx.VTH_SHIFT
    state = ErrorPairState(*(x.to(torch.int64) for x in state))
    v_pos = fx.saturate(state.v_pos + a)
    v_neg = fx.saturate(state.v_neg - a)
    s_pos = (v_pos > vth_eff).to(torch.int64)
    s_neg = (v_neg > vth_eff).to(torch.int64)
    return (s_pos, s_neg), ErrorPairState(v_pos - vth_eff * s_pos, v_neg - vth_eff * s_neg)


# --------------------------------------------------------------------------------------------
# Eligibility traces (BioGrad), per synapse
# --------------------------------------------------------------------------------------------

class TraceState(NamedTuple):
    e_hat: torch.Tensor  # (..., n_post, n_pre) presynaptic trace after the carry-over
    E: torch.Tensor  # (..., n_post, n_pre) accumulated gradient trace of the weights
    eb_hat: torch.Tensor  # (..., n_post) the same for the bias, whose "input" is 1 every step
    Eb: torch.Tensor  # (..., n_post)


def trace_step_float(x: torch.Tensor, post: MCLIFOut, state: TraceState, decay: float) -> TraceState:
    """BioGrad's eligibility traces for synapses (i post, j pre)::

        e_t,ij   = (1 - decay) e^_{t-1,ij} + x_t,j
        E_t,ij   = E_{t-1,ij} + g_t,i e_t,ij
        e^_t,ij  = e_t,ij c_t,i            with c = 1 - s - v g from the post neuron

    and the same for the bias with x = 1. ``x`` pairs with the post values its input caused.
    """
    e = (1 - decay) * state.e_hat + x.to(state.e_hat.dtype)[..., None, :]
    E = state.E + post.g[..., :, None] * e
    e_hat = e * post.c[..., :, None]
    eb = (1 - decay) * state.eb_hat + 1
    Eb = state.Eb + post.g * eb
    return TraceState(e_hat, E, eb * post.c, Eb)


def trace_step_fixed(x: torch.Tensor, post: MCLIFOut, state: TraceState, decay: int) -> TraceState:
    """Fixed point, traces in Q12 (a presynaptic spike adds 2^12 = 1.0)::

        e_t  = sat16( decay(e^_{t-1}, decay) + (x_t << 12) )
        E_t  = sat24( E_{t-1} + g_t e_t )                     (g is 0 or 1)
        e^_t = rz(e_t c_t / 2^12)                              (c in Q12, |c| <= 2^13)

    Computed in the dtype of the state: int32 suffices (|e c| < 2^15 2^13 = 2^28).
    """
    dt = state.e_hat.dtype
    g, c = post.g.to(dt), post.c.to(dt)
    one = 1 << fx.TRACE_FRAC_BITS
    e = fx.saturate(fx.decay(state.e_hat, decay) + x.to(dt)[..., None, :] * one, fx.TRACE_MAX)
    E = fx.saturate(state.E + g[..., :, None] * e, fx.GRAD_TRACE_MAX)
    e_hat = fx.shift_round_to_zero(e * c[..., :, None], fx.DECAY_BITS)
    eb = fx.saturate(fx.decay(state.eb_hat, decay) + one, fx.TRACE_MAX)
    Eb = fx.saturate(state.Eb + g * eb, fx.GRAD_TRACE_MAX)
    return TraceState(e_hat, E, fx.shift_round_to_zero(eb * c, fx.DECAY_BITS), Eb)


def gradient_trace_factorised(x: torch.Tensor, g: torch.Tensor, c: torch.Tensor, decay: float
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The float traces' final E and Eb from whole sequences, without per-synapse state.

    Unrolling :func:`trace_step_float`, e_t = sum_{tau<=t} x_tau prod_{k=tau}^{t-1} (1-decay) c_k,
    so E = sum_t g_t e_t = sum_tau K_tau x_tau^T with the per-neuron backward recursion

        K_T = g_T,   K_tau = g_tau + (1 - decay) c_tau K_{tau+1}

    and Eb = sum_tau K_tau. Equal in exact arithmetic; x is (T, ..., n_pre), g and c are
    (T, ..., n_post); returns E (..., n_post, n_pre) and Eb (..., n_post).
    """
    K = torch.empty_like(g)
    k = torch.zeros_like(g[0])
    for t in range(g.shape[0] - 1, -1, -1):
        k = g[t] + (1 - decay) * c[t] * k
        K[t] = k
    E = torch.einsum("t...i,t...j->...ij", K, x.to(K.dtype))
    return E, K.sum(dim=0)


def zeros_like_trace(batch: tuple[int, ...], n_post: int, n_pre: int, dtype: torch.dtype,
                     device: torch.device | str = "cpu") -> TraceState:
    z = lambda *shape: torch.zeros(*batch, *shape, dtype=dtype, device=device)  # noqa: E731
    return TraceState(z(n_post, n_pre), z(n_post, n_pre), z(n_post), z(n_post))
