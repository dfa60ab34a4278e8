"""The Loihi-2-expressible BioGrad traces: Lava's LearningDense against the engine, by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lavasnn.crosscheck_loihi2 import compare, crosscheck_loihi2, random_net, run_engine, run_lava
from lavasnn.engine import learning_engine as le
from lavasnn.engine import steps
from lavasnn.errors import UserError
from lavasnn.procs.loihi2.process import biograd_loihi2_rule


@pytest.mark.lava
def test_crosscheck_is_bit_exact():
    report = crosscheck_loihi2(steps=60, seed=0)
    for key in ("spike_mismatches", "state_mismatches", "weight_mismatches", "tag_mismatches",
                "trace_mismatches", "max_abs_state_diff"):
        assert report[key] == 0, (key, report)
    assert report["steps"] == 60
    activity = report["activity"]
    assert activity["spikes"] > 0 and activity["weight_changes"] > 0 and activity["nonzero_errors"] > 0


@pytest.fixture(scope="module")
def net_and_lava():
    net = random_net(60, seed=3)
    return net, run_lava(net)


@pytest.mark.lava
def test_crosscheck_detects_a_perturbed_engine(net_and_lava):
    net, lava = net_and_lava
    assert compare(lava, run_engine(net))["weight_mismatches"] == 0
    wrong_gain = dataclasses.replace(net, rule=net.rule._replace(tag_exp=net.rule.tag_exp - 1))
    report = compare(lava, run_engine(wrong_gain))
    assert report["tag_mismatches"] > 0 and report["weight_mismatches"] > 0
    wrong_stream = dataclasses.replace(net, rule=net.rule._replace(rng_seed=net.rule.rng_seed + 1))
    assert compare(lava, run_engine(wrong_stream))["trace_mismatches"] > 0


def test_random_streams_follow_lavas_generators():
    from lava.magma.core.learning.random import ConnVarRandom, TraceRandom

    randoms = le.learning_randoms(rng_seed=11, n_steps=5)
    x_random, conn_random = TraceRandom(11, 12), ConnVarRandom()
    for n in range(5):
        x_random.advance()  # recv_traces advances twice per time step
        x_random.advance()
        conn_random.advance()  # run_lrn advances once per epoch
        assert randoms.x_decay[n] == x_random.random_trace_decay
        assert randoms.syn_round[n] == conn_random.random_stochastic_round


def _single_synapse_run(y1: list[int], y2: int, y3: int) -> list[le.LearningState]:
    """One pre neuron that spikes every step (impulse 127 keeps x1 at 127) onto one post neuron."""
    p = le.Loihi2RuleParams(lr_exp=0, tag_exp=0, x1_impulse=127, x1_tau=4, rng_seed=0)
    randoms = le.learning_randoms(p.rng_seed, len(y1) + 1)
    state = le.init_learning_state(np.array([[100]]))
    one, zero = torch.ones(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    history = []
    for n, g in enumerate(y1):
        y = le.ThirdFactors(g * one, zero, zero, zero)
        state = le.learning_step_fixed(one, y, state, p, randoms.x_decay[n], randoms.syn_round[n])
        history.append(state)
    end = le.ThirdFactors(zero, y2 * one, y3 * one, one)
    history.append(le.learning_step_fixed(one, end, state, p, randoms.x_decay[-1], randoms.syn_round[-1]))
    return history


def test_tag_accumulation_and_update_by_hand():
    # tag step = (x1 y1 >> 3) << 7 in the accumulator = floor(127 * 4 / 8) = 63 per step (exact,
    # so no stochastic rounding); the fifth step saturates at 255.
    history = _single_synapse_run([4] * 5, y2=4, y3=0)
    assert [int(s.x1) for s in history] == [127] * 6
    assert [int(s.t) for s in history[:5]] == [63, 126, 189, 252, 255]
    assert all(int(s.w) == 100 for s in history[:5])
    # End of sample: dw = -(y2 t) >> 5 = floor(-4 * 255 / 32) = -32 from the previous tag; bAP resets t.
    assert (int(history[-1].w), int(history[-1].t)) == (68, 0)
    # The negative channel: +(y3 t) >> 5 = floor(+31.875) = +31 (the shift rounds down, not to zero).
    last = _single_synapse_run([4] * 5, y2=0, y3=4)[-1]
    assert (int(last.w), int(last.t)) == (131, 0)


def test_neuron_sends_the_error_split_and_resets():
    soma = steps.MCLIFParams(du=0, dv=0, dd=0, vth=100, bias=0, soft_reset=False, grad_win=50)
    p = le.Loihi2NeuronParams(soma, grad_amp=90, feedback_steps=5, err_shift=6)
    zero = torch.zeros(2, dtype=torch.int64)
    a = torch.tensor([80, 0])  # v = 80 << 6: inside the window |v - vth| < 50 << 6 for neuron 0 only
    _, y, state = le.loihi2_neuron_step_fixed(a, zero, steps.MCLIFState(zero, zero, zero), p, end=False)
    assert y.y1.tolist() == [90, 0] and y.bap.tolist() == [0, 0] and y.y2.tolist() == [0, 0]
    # d = +-50 << 6 = +-3200; delta = 3200 / (5 << 6) = 10, split into y2 / y3.
    _, y, state = le.loihi2_neuron_step_fixed(zero, torch.tensor([50, -50]), state, p, end=True)
    assert y.y1.tolist() == [0, 0] and y.y2.tolist() == [10, 0] and y.y3.tolist() == [0, 10]
    assert y.bap.tolist() == [1, 1]
    assert all(v.tolist() == [0, 0] for v in state)


def test_learning_step_is_batched():
    net = random_net(8, seed=5, n_in=4, n_out=3)
    rng = np.random.default_rng(0)
    p, r_x, r_syn = net.rule, 0.3, 0.7
    xs = torch.as_tensor(rng.integers(0, 2, size=(2, 4)))
    ys = le.ThirdFactors(*(torch.as_tensor(rng.integers(0, 128, size=(2, 3))) for _ in range(3)),
                         torch.tensor([[0, 1, 0], [1, 0, 0]]))
    state = le.init_learning_state(net.weights, batch=(2,))
    state = state._replace(t=torch.as_tensor(rng.integers(-257, 256, size=(2, 3, 4))),
                           x1=torch.as_tensor(rng.integers(0, 128, size=(2, 4))))
    batched = le.learning_step_fixed(xs, ys, state, p, r_x, r_syn)
    for b in range(2):
        single = le.learning_step_fixed(xs[b], le.ThirdFactors(*(v[b] for v in ys)),
                                        le.LearningState(*(v[b] for v in state)), p, r_x, r_syn)
        assert all(torch.equal(u[b], v) for u, v in zip(batched, single))


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr_exp=9), "lr_exp"), (dict(lr_exp=-8), "lr_exp"), (dict(tag_exp=12), "tag_exp"),
    (dict(x1_impulse=2.5), "x1_impulse"), (dict(x1_impulse=128), "x1_impulse"), (dict(x1_tau=0), "x1_tau"),
    (dict(rng_seed=None), "rng_seed"),
])
def test_rule_refuses_out_of_range_parameters(kwargs, name):
    args = dict(lr_exp=-3, tag_exp=-2, x1_impulse=16, x1_tau=4, rng_seed=1) | kwargs
    with pytest.raises(UserError, match=name) as info:
        biograd_loihi2_rule(**args)
    if name.endswith("_exp"):
        assert "[-7, 8]" in str(info.value)


def test_rule_strings():
    rule = biograd_loihi2_rule(lr_exp=-3, tag_exp=2, x1_impulse=16, x1_tau=4, rng_seed=1)
    assert rule.dw_str == "-2^-3 * u0 * y2 * t + 2^-3 * u0 * y3 * t"
    assert rule.dt_str == "2^2 * u0 * x1 * y1 - y0 * t"
    assert rule.t_epoch == 1 and rule.rng_seed == 1 and rule.y2_tau == le.Y_TAU
