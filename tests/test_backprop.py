"""The backprop baseline: surrogate gradient, Lava timing, agreement with BioGrad's traces,
learning, determinism."""

import numpy as np
import pytest
import torch

from lavasnn.data import load_dataset
from lavasnn.engine.network import LayerSpec, TraceNetwork
from lavasnn.errors import UserError
from lavasnn.learning.backprop import (BackpropConfig, SpikingMLP, lif_sequence,
                                       train_backprop)

NEURON = dict(decay=0.3, vth=0.3, win=0.3, amp=1.0)


@pytest.mark.parametrize("a, grad", [
    # v'0 = 0.2 (no spike, in window), v'1 = 0.06 + 0.4 (spike, in window):
    # dL/da0 = g0 + g1 0.3 (1 - s0 - v'0 g0) = 1 + 0.3 * 0.8
    ((0.2, 0.4), (1.24, 1.0)),
    # v'0 = 0.5 (spike, in window), reset to 0, v'1 = 0.4: dL/da0 = 1 + 0.3 (1 - 1 - 0.5)
    ((0.5, 0.4), (0.85, 1.0)),
    # v'0 = 0.7 (spike, outside the window), v'1 = 0.1 (in window): nothing flows back to a0
    ((0.7, 0.1), (0.0, 1.0)),
    # v'0 = 0.2 (in window), v'1 = 0.06 - 0.4 (outside)
    ((0.2, -0.4), (1.0, 0.0)),
])
def test_surrogate_gradient_through_time_and_reset(a, grad):
    a = torch.tensor(a, dtype=torch.float64).reshape(2, 1, 1).requires_grad_()
    lif_sequence(a, **NEURON).sum().backward()
    np.testing.assert_allclose(a.grad.flatten().numpy(), grad, rtol=0, atol=1e-12)


def test_surrogate_window_and_amplitude():
    v = torch.tensor([0.0, 0.01, 0.29, 0.31, 0.59, 0.61], dtype=torch.float64).reshape(1, 1, 6)
    v.requires_grad_()
    s = lif_sequence(v, decay=0.3, vth=0.3, win=0.3, amp=2.5)
    s.sum().backward()
    assert s.flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert v.grad.flatten().tolist() == [0, 2.5, 2.5, 2.5, 2.5, 0]


@pytest.mark.parametrize("hidden", [(1,), (1, 1)])
def test_one_step_delay_per_layer(hidden):
    model = SpikingMLP(1, 1, BackpropConfig(hidden=hidden))
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.fill_(1.0)
            layer.bias.zero_()
    x = torch.zeros(5, 1, 1)
    x[0] = 1  # one input spike at step 0
    for depth, s in enumerate(model(x), start=1):  # layer `depth` fires at step `depth` only
        assert s.flatten().tolist() == [float(t == depth) for t in range(5)]


def test_spikes_equal_engine_and_output_gradient_equals_biograd_trace():
    """Same weights: the same spikes as the engine's float network (Lava timing), and BPTT's
    gradient of the output counts w.r.t. the output layer equals BioGrad's exact trace E."""
    rng = np.random.default_rng(3)
    cfg = BackpropConfig(hidden=(12,))
    model = SpikingMLP(20, 4, cfg).double()
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.from_numpy(rng.normal(0.05, 0.12, (12, 20))))
        model.layers[1].weight.copy_(torch.from_numpy(rng.normal(0.08, 0.15, (4, 12))))
    x = (rng.random((30, 6, 20)) < 0.3).astype(np.uint8)
    spikes = model(torch.from_numpy(x).double())
    layers = [LayerSpec(weights=lin.weight.detach().numpy(), bias_mant=lin.bias.detach().numpy(),
                        du=1.0, dv=0.7, vth=0.3, grad_win=0.3, trace_decay=0.7)
              for lin in model.layers]
    engine = TraceNetwork(layers, 20, "float").run(x)
    for ours, theirs in zip(spikes, engine["spikes"]):
        assert ours.sum() > 0 and (ours.to(torch.uint8) == theirs).all()
    spikes[-1].sum().backward()
    trace = engine["traces"][-1]
    np.testing.assert_allclose(model.layers[-1].weight.grad.numpy(), trace.E.sum(0).numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.layers[-1].bias.grad.numpy(), trace.Eb.sum(0).numpy(),
                               rtol=1e-12, atol=1e-12)


def test_learns_digits():
    # measured: 0.77 after 3 epochs (chance 0.1); lr 1e-3 for this small, short run
    cfg = BackpropConfig(hidden=(32,), steps=8, epochs=3, batch=32, lr=1e-3)
    result = train_backprop(load_dataset("digits"), cfg)
    assert result["test_accuracy"] > 0.6
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert result["samples_per_s"] > 0


def test_same_seed_same_run_other_seed_other_run():
    data = load_dataset("digits", limit=200)
    run = lambda seed, opt: train_backprop(data, BackpropConfig(  # noqa: E731
        hidden=(16,), steps=8, epochs=2, batch=50, seed=seed, optimizer=opt, lr=0.1 if opt == "sgd" else 1e-3))
    strip = lambda r: [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]  # noqa: E731
    for opt in ("adam", "sgd"):
        assert strip(run(0, opt)) == strip(run(0, opt))
    assert strip(run(0, "adam")) != strip(run(1, "adam"))


@pytest.mark.parametrize("change", [dict(hidden=()), dict(steps=0), dict(lr=0.0),
                                    dict(optimizer="rmsprop"), dict(device="gpu")])
def test_bad_config_is_refused(change):
    with pytest.raises(UserError):
        train_backprop(load_dataset("digits", limit=20), BackpropConfig(**change))
