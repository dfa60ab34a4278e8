"""The neuron, trace and error-neuron equations on hand-computed cases."""

import pytest
import torch

from lavasnn import fixed as fx
from lavasnn.engine import steps

I64 = torch.int64


def t(*v):
    return torch.tensor(v, dtype=I64)


def params(**kw):
    base = dict(du=4095, dv=0, dd=0, vth=10, bias=t(0), soft_reset=False, grad_win=2, grad_amp=1.0,
                v_frac_bits=16)
    base.update(kw)
    return steps.MCLIFParams(**base)


def zero_state(n=1):
    return steps.MCLIFState(torch.zeros(n, dtype=I64), torch.zeros(n, dtype=I64), torch.zeros(n, dtype=I64))


def test_decay_rounds_towards_zero_and_wrap_saturate():
    assert fx.decay(t(5, -5, 4096), 2048).tolist() == [2, -2, 2048]
    assert fx.decay(t(7), 0).tolist() == [7]  # d = 0 keeps the value
    assert fx.wrap_state(t(2**23 + 5, -(2**23) - 5, 2**23)).tolist() == [5 - 2**23, 2**23 - 5, 2**23]
    assert fx.saturate(t(2**24, -(2**24), 3)).tolist() == [2**23 - 1, -(2**23 - 1), 3]
    assert fx.scale_by_exp(t(-5), -1).tolist() == [-3]  # arithmetic shift, as Lava's Dense
    assert fx.scale_by_exp(t(5), 2).tolist() == [20]


def test_one_spike_hard_and_soft_reset_with_learning_outputs():
    # u = 11 << 6 = 704 > vth << 6 = 640: one spike; |704 - 640| = 64 < win << 6 = 128: g = 1;
    # c = 4096 (1 - 1) - rz(704 * 4096 / 2^16) = -44.
    out, st = steps.mclif_step_fixed(t(11), t(0), zero_state(), params())
    assert (out.s.item(), out.g.item(), out.c.item(), out.v.item()) == (1, 1, -44, 704)  # v before reset
    assert (st.u.item(), st.v.item()) == (704, 0)
    out, st = steps.mclif_step_fixed(t(11), t(0), zero_state(), params(soft_reset=True))
    assert st.v.item() == 64
    # Below threshold and outside the window: no spike, g = 0, c = 1.0
    out, st = steps.mclif_step_fixed(t(5), t(0), zero_state(), params())
    assert (out.s.item(), out.g.item(), out.c.item(), st.v.item()) == (0, 0, 4096, 320)


def test_dendrite_integrates_without_driving_the_soma():
    state = zero_state()
    for _ in range(3):
        out, state = steps.mclif_step_fixed(t(0), t(100), state, params(dd=0))
    assert state.d.item() == 3 * (100 << 6)
    assert state.v.item() == 0 and out.s.item() == 0
    _, leaky = steps.mclif_step_fixed(t(0), t(0), state, params(dd=2048))
    assert leaky.d.item() == 3 * (100 << 6) // 2


def test_voltage_saturates_and_matches_lava_decay_offset():
    # A saturated positive voltage exceeds even the largest threshold, so test the negative side.
    low = steps.MCLIFState(t(0), t(-(2**23) + 10), t(0))
    _, st = steps.mclif_step_fixed(t(-5), t(0), low, params())
    assert st.v.item() == -(2**23 - 1)
    # du = 0 still decays the current by 1/4096: Lava adds ds_offset = 1 to du.
    _, st = steps.mclif_step_fixed(t(0), t(0), steps.MCLIFState(t(8192), t(0), t(0)), params(du=0, vth=10**5))
    assert st.u.item() == 8190


def test_float_neuron_equations():
    p = params(du=1.0, dv=0.7, vth=0.3, bias=torch.tensor([0.0], dtype=torch.float64), grad_win=0.3, grad_amp=0.5)
    z = torch.zeros(1, dtype=torch.float64)
    out, st = steps.mclif_step_float(torch.tensor([0.4], dtype=torch.float64), z, steps.MCLIFState(z, z, z), p)
    assert out.s.item() == 1 and out.g.item() == 0.5
    assert out.c.item() == pytest.approx(1 - 1 - 0.4 * 0.5)
    assert st.v.item() == 0.0
    out, st = steps.mclif_step_float(torch.tensor([0.1], dtype=torch.float64), z, st, p)
    out, st = steps.mclif_step_float(torch.tensor([0.1], dtype=torch.float64), z, st, p)
    assert st.v.item() == pytest.approx(0.1 * 0.3 + 0.1)


def test_fixed_trace_decay_accumulation_and_carry():
    post = steps.MCLIFOut(s=t(0), g=t(1), c=t(2048))  # c = 0.5
    state = steps.zeros_like_trace((), 1, 2, torch.int32)
    state = steps.trace_step_fixed(t(1, 0), post, state, decay=2048)  # keep half per step
    assert state.E.tolist() == [[4096, 0]]  # E += g e, e = 1.0 for the spiking input
    assert state.e_hat.tolist() == [[2048, 0]]  # e^ = e c
    assert state.Eb.tolist() == [4096] and state.eb_hat.tolist() == [2048]
    state = steps.trace_step_fixed(t(0, 1), post, state, decay=2048)
    assert state.E.tolist() == [[4096 + 1024, 4096]]
    assert state.Eb.tolist() == [4096 + 4096 + 1024]


def test_fixed_trace_saturates():
    post = steps.MCLIFOut(s=t(0), g=t(1), c=t(4096))
    state = steps.TraceState(torch.full((1, 1), fx.TRACE_MAX, dtype=torch.int32),
                             torch.full((1, 1), fx.GRAD_TRACE_MAX - 5, dtype=torch.int32),
                             torch.zeros(1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32))
    state = steps.trace_step_fixed(t(1), post, state, decay=0)
    assert state.e_hat.item() == fx.TRACE_MAX and state.E.item() == fx.GRAD_TRACE_MAX


def test_float_trace_matches_biograd_recursion():
    x = [1.0, 0.0, 1.0]
    g = [1.0, 0.0, 1.0]
    c = [0.5, 1.0, -0.2]
    state = steps.zeros_like_trace((), 1, 1, torch.float64)
    e_hat, E = 0.0, 0.0
    for xt, gt, ct in zip(x, g, c):
        post = steps.MCLIFOut(torch.tensor([0.0]), torch.tensor([gt], dtype=torch.float64),
                              torch.tensor([ct], dtype=torch.float64))
        state = steps.trace_step_float(torch.tensor([xt]), post, state, decay=0.7)
        e = 0.3 * e_hat + xt
        E += gt * e
        e_hat = e * ct
    assert state.E.item() == pytest.approx(E) and state.e_hat.item() == pytest.approx(e_hat)


def test_error_pair_turns_a_constant_error_into_proportional_spikes():
    state = steps.ErrorPairState(t(0), t(0))
    pos = neg = 0
    for _ in range(100):
        (sp, sn), state = steps.error_pair_step_fixed(t(3), state, vth=10)
        pos, neg = pos + sp.item(), neg + sn.item()
    # 100 * 3 / 10 = 30, but v must exceed the threshold strictly: the 30th crossing lands exactly on it.
    assert neg == 0 and pos == 29
    state = steps.ErrorPairState(t(0), t(0))
    for _ in range(100):
        (sp, sn), state = steps.error_pair_step_fixed(t(-7), state, vth=10)
        neg += sn.item()
    assert neg == 69  # likewise 70 - 1


def test_dense_fixed_applies_weight_exponent():
    w = t(100, -50).reshape(1, 2)
    assert steps.dense_fixed(w, t(1, 1), 0).tolist() == [50]
    assert steps.dense_fixed(w, t(1, 1), 2).tolist() == [200]
    assert steps.dense_fixed(w, t(0, 1), -1).tolist() == [-25]
