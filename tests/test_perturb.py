"""Perturbation learning: directional derivatives, directions, Stein estimator, costs, workflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import jvp

from lavasnn.data.sciml import mexican_hat
from lavasnn.engine.perturb import PerturbConfig, PerturbEngine, step_cost
from lavasnn.errors import UserError
from lavasnn.learning import perturb as pt
from lavasnn.models.operator import NeuronConfig, SpikingDeepONet, SpikingMLP, SpikingSepONet, add_tangents
from lavasnn.train import runs
from lavasnn.train.perturb import SETTINGS, rel_l2, rel_l2_per_function, target_scale, train_perturb

NEURON = NeuronConfig(steps=6)
SURROGATE = pt.SpikeGrad("surrogate")


def tiny_models():
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    mlp = SpikingMLP((2, 5, 4, 1), NEURON)
    deeponet = SpikingDeepONet(SpikingMLP((3, 5, 4), NEURON), SpikingMLP((1, 5, 4), NEURON))
    seponet = SpikingSepONet(SpikingMLP((3, 5, 4), NEURON), (SpikingMLP((1, 5, 4), NEURON), SpikingMLP((1, 4, 4), NEURON)))
    return [(mlp, mlp.init(rng), randn(7, 2)),
            (deeponet, deeponet.init(rng), (randn(3, 3), randn(6, 1))),
            (seponet, seponet.init(rng), (randn(3, 3), (randn(5, 1), randn(4, 1))))]


@pytest.mark.parametrize("case", range(3))
def test_dual_numbers_match_exact_jvp(case):
    model, params, inputs = tiny_models()[case]
    v = pt.directions(0, 3, params)
    y_ref, y_dot_ref = jvp(lambda q: model.forward(q, inputs, SURROGATE), (params,), (v,))
    y, y_dot = model.forward_dual(params, pt.global_tangents(v), inputs, SURROGATE.derivative)
    assert torch.equal(y, y_ref)
    assert torch.allclose(y_dot[0], y_dot_ref, atol=1e-5)
    _, y_dot_l = model.forward_dual(params, pt.layerwise_tangents(v), inputs, SURROGATE.derivative)
    assert y_dot_l.shape[0] == len(params)
    assert torch.allclose(y_dot_l.sum(dim=0), y_dot_ref, atol=1e-5)


def test_tangents_carry_only_the_directions_that_reach_them():
    """A direction that is zero on every group is never carried, and the full tangent is zero
    there; overlapping directions add up (global and layer-wise share the code)."""
    model, params, x = tiny_models()[0]
    tangents = pt.layerwise_tangents(pt.directions(0, 3, params))
    for q in tangents[0]:
        q.zero_()  # direction 0 lived only on the first layer
    _, live, y_dot = model.forward_live(params, tangents, x, SURROGATE.derivative)
    assert live.tolist() == [1, 2]
    _, full = model.forward_dual(params, tangents, x, SURROGATE.derivative)
    assert not full[0].any() and torch.equal(full[1:], y_dot)
    live, total = add_tangents([(torch.tensor([0, 2]), torch.ones(2, 3)), (torch.tensor([2, 3]), 2 * torch.ones(2, 3))])
    assert live.tolist() == [0, 2, 3] and total[:, 0].tolist() == [1.0, 3.0, 2.0]


def test_seponet_is_the_grid_sum_of_products():
    """G[f, (a, b)] = sum_k b_k(f) t1_k(x_a) t2_k(t_b) + b_0, b fastest (the trunk_axes order);
    forward and forward_dual (which combine the trunks by one matrix product) agree with it."""
    model, params, inputs = tiny_models()[2]
    params[-1][0] = torch.tensor([0.25])
    none = pt.SpikeGrad("none")
    nb, nt = model.branch.n_groups, model.trunks[0].n_groups
    b = model.branch.forward(params[:nb], inputs[0], none)
    t1 = model.trunks[0].forward(params[nb:nb + nt], inputs[1][0], none)
    t2 = model.trunks[1].forward(params[nb + nt:-1], inputs[1][1], none)
    ref = torch.einsum("fk,ak,bk->fab", b, t1, t2).reshape(len(b), -1) + 0.25
    assert torch.allclose(model.forward(params, inputs, none), ref, atol=1e-6)
    y, y_dot = model.forward_dual(params, pt.layerwise_tangents(pt.directions(0, 1, params)), inputs,
                                  SURROGATE.derivative)
    assert torch.allclose(y, ref, atol=1e-6) and y_dot.shape == (len(params), *ref.shape)


def test_global_and_layerwise_shapes_and_backprop_agree():
    model, params, x = tiny_models()[0]
    target = torch.zeros(7, 1)
    v = pt.directions(0, 0, params)
    y, y_dot = model.forward_dual(params, pt.global_tangents(v), x, SURROGATE.derivative)
    _, d = pt.mse_derivative(y, y_dot, target)
    y, y_dot = model.forward_dual(params, pt.layerwise_tangents(v), x, SURROGATE.derivative)
    _, d_l = pt.mse_derivative(y, y_dot, target)
    assert d.shape == (1,) and d_l.shape == (len(params),)
    _, grads = pt.backprop_gradient(lambda q: ((model.forward(q, x, SURROGATE) - target) ** 2).mean(), params)
    per_layer = torch.stack([sum((g * q).sum() for g, q in zip(gl, vl)) for gl, vl in zip(grads, v)])
    assert torch.allclose(d_l, per_layer, atol=1e-5) and torch.allclose(d, per_layer.sum(), atol=1e-5)
    for estimate in (pt.forward_gradient(d, v), pt.forward_gradient(d_l, v)):
        assert [[g.shape for g in layer] for layer in estimate] == [[p.shape for p in layer] for layer in params]
    assert torch.allclose(pt.forward_gradient(d_l, v)[1][0], d_l[1] * v[1][0])


def test_forward_gradient_is_unbiased():
    """E[(grad . v) v] = grad: averaged over many directions (one batched forward pass)."""
    model, params, x = tiny_models()[0]
    target = torch.zeros(7, 1)
    n = 4000
    gen = torch.Generator().manual_seed(0)
    v = [[torch.randn((n, *p.shape), generator=gen) for p in layer] for layer in params]
    y, y_dot = model.forward_dual(params, v, x, SURROGATE.derivative)
    _, d = pt.mse_derivative(y, y_dot, target)
    estimate = torch.cat([(d.reshape(-1, *[1] * (q.dim() - 1)) * q).mean(0).flatten() for vl in v for q in vl])
    _, grads = pt.backprop_gradient(lambda q: ((model.forward(q, x, SURROGATE) - target) ** 2).mean(), params)
    exact = torch.cat([g.flatten() for gl in grads for g in gl])
    cosine = float(estimate @ exact / (estimate.norm() * exact.norm()))
    assert cosine > 0.95


def _layer_inputs(model, params, inputs):
    """Each group's input in a plain pass (the ``record`` of forward_dual)."""
    record = []
    model.forward_dual(params, pt.layerwise_tangents([[torch.zeros_like(p) for p in g] for g in params]),
                       inputs, SURROGATE.derivative, record=record)
    return record


@pytest.mark.parametrize("case", range(3))
def test_activity_tangent_is_the_weight_tangent_it_equals(case):
    """Perturbing layer k's pre-activations by u = W_dot x moves the output as the weight direction
    W_dot does: the per-sample scalars add up to the layer-wise d_k; a u on one sample moves only
    that sample's scalar (the sample axis of ``sample_sums``)."""
    model, params, inputs = tiny_models()[case]
    target = torch.zeros_like(model.forward(params, inputs, pt.SpikeGrad("none")))
    record = _layer_inputs(model, params, inputs)
    v = pt.directions(0, 2, params)
    for k in model.node_groups:
        W_dot = v[k][0]
        weight_only = [[q if (l, j) == (k, 0) else torch.zeros_like(q) for j, q in enumerate(g)]
                       for l, g in enumerate(v)]
        _, d_weight = pt.mse_derivative(*model.forward_dual(params, pt.layerwise_tangents(weight_only), inputs,
                                                            SURROGATE.derivative), target)
        u = record[k] @ W_dot.T
        zero = pt.layerwise_tangents([[torch.zeros_like(q) for q in g] for g in params])

        def scalars(u):
            y, y_dot = model.forward_dual(params, zero, inputs, SURROGATE.derivative,
                                          [(k, u) if l == k else None for l in range(len(params))])
            return model.sample_sums(2 * (y - target) * y_dot[k] / y.numel(), k, inputs)

        d = scalars(u)
        assert u.shape == model.node_shapes(inputs)[k]
        assert torch.allclose(d.sum(), d_weight[k], atol=1e-6)
        one = torch.zeros_like(u)
        one[..., 1, :] = torch.randn(one[..., 1, :].shape, generator=torch.Generator().manual_seed(k))
        d_one = scalars(one)
        assert d_one[1] != 0 and not torch.cat([d_one[:1], d_one[2:]]).any()


def _mean_estimate_cosine(case: int, cfg: PerturbConfig, draws: int) -> float:
    """Cosine between the sum of ``draws`` estimates (steps 0 .. draws-1) and backprop's gradient."""
    model, params, inputs = tiny_models()[case]
    y = model.forward(params, inputs, pt.SpikeGrad("none"))
    target = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    engine = PerturbEngine(model, params, cfg, 1)
    total = 0
    for step in range(draws):
        engine.updates = step
        total = total + torch.cat([g.flatten() for gl in engine.gradient(inputs, target)[1] for g in gl])
    _, grads = pt.backprop_gradient(lambda q: ((model.forward(q, inputs, SURROGATE) - target) ** 2).mean(), params)
    exact = torch.cat([g.flatten() for gl in grads for g in gl])
    return float(total @ exact / (total.norm() * exact.norm()))


@pytest.mark.parametrize("case", range(3))
def test_activity_gradient_is_unbiased(case):
    """Averaged over neuron perturbations, the activity estimate is backprop's gradient."""
    assert _mean_estimate_cosine(case, PerturbConfig(mode="activity"), 150) > 0.95


def _one_sample(model, inputs, target, k, s):
    """The inputs and targets of sample s of group k's sub-network alone: an MLP input, a
    function (branch), a query point (DeepONet trunk) or an axis point (SepONet trunk i)."""
    if isinstance(model, SpikingMLP):
        return inputs[s:s + 1], target[s:s + 1]
    nb, (branch, trunk) = model.branch.n_groups, inputs
    if k < nb:
        return (branch[s:s + 1], trunk), target[s:s + 1]
    if isinstance(model, SpikingDeepONet):
        return (branch, trunk[s:s + 1]), target[:, s:s + 1]
    axis = int(np.searchsorted(np.cumsum([t.n_groups for t in model.trunks]), k - nb, "right"))
    grid = target.reshape(len(branch), *(len(a) for a in trunk)).select(1 + axis, s).reshape(len(branch), -1)
    return (branch, tuple(a[s:s + 1] if i == axis else a for i, a in enumerate(trunk))), grid


@pytest.mark.parametrize("case", range(3))
def test_per_sample_directions_sum_each_samples_directional_derivative(case):
    """Layer-wise with per-sample directions: g_k = sum_s (grad_k L_s . v_k,s) v_k,s, with L_s
    the sample's share of the loss and its gradient by backprop on that sample alone."""
    model, params, inputs = tiny_models()[case]
    y = model.forward(params, inputs, pt.SpikeGrad("none"))
    target = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    engine = PerturbEngine(model, params, PerturbConfig(mode="layerwise", per_sample=True), 1, updates=5)
    _, grads = engine.gradient(inputs, target)
    shapes = model.node_shapes(inputs)
    for k in model.node_groups:
        v = pt.sample_directions(0, 5, k, shapes[k][-2], [p.shape for p in params[k]])
        expected = [torch.zeros_like(p) for p in params[k]]
        for s in range(shapes[k][-2]):
            x_s, t_s = _one_sample(model, inputs, target, k, s)
            _, g_s = pt.backprop_gradient(lambda q: ((model.forward(q, x_s, SURROGATE) - t_s) ** 2).sum() / y.numel(),
                                          params)
            d_s = sum(float((g * q[s]).sum()) for g, q in zip(g_s[k], v))
            expected = [e + d_s * q[s] for e, q in zip(expected, v)]
        for got, want in zip(grads[k], expected):
            assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("case", range(3))
def test_per_sample_global_estimate_is_unbiased(case):
    """Averaged over draws, one direction per sample over all layers gives backprop's gradient
    (the mean of 1,000 draws has cosine 0.90-0.98 with it; 3,000 draws 0.976-0.991)."""
    assert _mean_estimate_cosine(case, PerturbConfig(mode="global", per_sample=True), 1000) > 0.85


def test_per_sample_directions_cost_a_sum_per_weight_and_sample_and_need_weight_modes():
    model, params, inputs = tiny_models()[1]  # DeepONet: 3 functions, 6 points
    engine = PerturbEngine(model, params, PerturbConfig(mode="layerwise", per_sample=True), 1)
    ops = model.ops(3, 6)
    plain = step_cost("layerwise", ops, engine.n_params, len(params)).macs
    per_layer = [sum(p.numel() for p in g) for g in params]
    nb = model.branch.n_groups
    assert engine.cost(ops, [3] * nb + [6] * (len(params) - 1 - nb) + [0]).macs == (
        plain + 3 * sum(per_layer[:nb]) + 6 * sum(per_layer[nb:-1]))
    for mode in ("activity", "weight", "bp"):
        with pytest.raises(UserError, match="per-sample"):
            PerturbConfig(mode=mode, per_sample=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_surrogate_is_the_density_and_zero_where_it_underflows(dtype):
    """phi_w(x) = exp(-x^2 / (2 w^2)) / (sqrt(2 pi) w), bit for bit, where the exponential is at
    least 3x the dtype's smallest normal number; 0 below 2x; never subnormal."""
    w = 0.05
    x = torch.linspace(-3, 3, 6001, dtype=dtype)
    phi = pt.gaussian_surrogate(x, w)
    formula = torch.exp(-0.5 * (x / w) ** 2) / (np.sqrt(2 * np.pi) * w)
    gauss, tiny = torch.exp(-0.5 * (x.double() / w) ** 2), torch.finfo(dtype).tiny
    assert phi.dtype == dtype and torch.equal(phi[gauss >= 3 * tiny], formula[gauss >= 3 * tiny])
    assert (phi[gauss < 2 * tiny] == 0).all() and (gauss < 2 * tiny).sum() > 1000
    assert not ((phi != 0) & (phi.abs() < tiny)).any()


def test_stein_estimator_converges_to_the_gaussian_surrogate():
    x = torch.linspace(-1, 1, 41)
    exact = pt.gaussian_surrogate(x, 0.3)
    gen = torch.Generator().manual_seed(0)
    errors = [float((pt.stein_derivative(x, 0.3, k, gen) - exact).abs().mean()) for k in (10, 100, 10000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 * float(exact.max())


def test_stein_directional_derivative_converges():
    model, params, x = tiny_models()[0]
    target = torch.zeros(7, 1)
    v = pt.directions(0, 0, params)
    tangents = pt.global_tangents(v)
    _, d_exact = pt.mse_derivative(*model.forward_dual(params, tangents, x, SURROGATE.derivative), target)
    gen = torch.Generator().manual_seed(0)
    errors = []
    for k in (2, 4096):
        stein = pt.SpikeGrad("stein", samples=k, generator=gen)
        _, d = pt.mse_derivative(*model.forward_dual(params, tangents, x, stein.derivative), target)
        errors.append(float((d - d_exact).abs()))
    assert errors[1] < errors[0] and errors[1] < 0.1 * float(d_exact.abs())


def test_weight_perturbation_matches_jvp_where_the_loss_is_smooth():
    """Perturbing only the linear readout, the loss difference is the exact derivative (O(sigma))."""
    model, params, x = tiny_models()[0]
    target = torch.zeros(7, 1)
    v = [[torch.zeros_like(p) for p in layer] for layer in params]
    v[-1] = pt.directions(0, 0, params)[-1]
    loss_fn = lambda q: ((model.forward(q, x, SURROGATE) - target) ** 2).mean()  # noqa: E731
    _, d_exact = jvp(loss_fn, (params,), (v,))
    _, d = pt.weight_derivative(loss_fn, [[p.double() for p in layer] for layer in params],
                                [[q.double() for q in layer] for layer in v], 1e-6)
    assert abs(float(d) - float(d_exact)) < 1e-3 * abs(float(d_exact))


def test_directions_are_counter_based():
    shapes = [torch.Size((3, 2)), torch.Size((3,))]
    a = pt.direction(7, 5, 1, shapes)
    assert all(torch.equal(p, q) for p, q in zip(a, pt.direction(7, 5, 1, shapes)))
    for other in (pt.direction(7, 6, 1, shapes), pt.direction(7, 5, 2, shapes), pt.direction(8, 5, 1, shapes)):
        assert not torch.equal(a[0], other[0])
    params = [[torch.zeros(3, 2), torch.zeros(3)], [torch.zeros(1, 3), torch.zeros(1)]]
    assert torch.equal(pt.directions(7, 5, params)[1][0], pt.direction(7, 5, 1, [(1, 3), (1,)])[0])


def test_macs_by_hand():
    """MLP 2-3-4-1, T = 5, batch 2: input current once (12), hidden 5*2*3*4 (120), readout 8."""
    model = SpikingMLP((2, 3, 4, 1), NeuronConfig(steps=5))
    ops = model.ops(2)
    assert [o.macs for o in ops] == [12, 120, 8]
    n_params = 9 + 16 + 5
    # reverse / global forward mode: weights 12 + 120 + 8, inputs of layers 2, 3: 120 + 8
    assert step_cost("bp", ops, n_params, 3).macs == 140 + 268 + 30
    assert step_cost("global", ops, n_params, 3).macs == 140 + 268 + 30
    # layer-wise tangents: layer 1 -> 12 + 120 + 8, layer 2 -> 120 + 8, layer 3 -> 8; activity's
    # local products sum a_hat x^T replace the tangents' W_dot x
    assert step_cost("layerwise", ops, n_params, 3).macs == 140 + 276 + 30
    assert step_cost("activity", ops, n_params, 3).macs == 140 + 276 + 30
    assert step_cost("weight", ops, n_params, 3).macs == 280 + 30
    assert step_cost("weight", ops, n_params, 3).forward_passes == 2
    # K = 3 directions repeat the forward-mode pass three times; the update stays one per parameter
    assert step_cost("layerwise", ops, n_params, 3, directions=3).macs == 3 * (140 + 276) + 30
    assert step_cost("global", ops, n_params, 3, directions=3).forward_passes == 3


@pytest.mark.parametrize("mode", ["layerwise", "activity"])
def test_more_directions_divide_the_estimates_variance(mode):
    """K = 4 independent draws per step: the squared error of the estimate against backprop's
    gradient, summed over 60 steps, is about 1/4 of one draw's; draw 0 is the K = 1 estimate."""
    model, params, inputs = tiny_models()[1]
    y = model.forward(params, inputs, pt.SpikeGrad("none"))
    target = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    _, grads = pt.backprop_gradient(lambda q: ((model.forward(q, inputs, SURROGATE) - target) ** 2).mean(), params)
    exact = torch.cat([g.flatten() for gl in grads for g in gl])
    errors = {}
    for k in (1, 4):
        engine = PerturbEngine(model, params, PerturbConfig(mode=mode, directions=k), 1)
        errors[k] = 0.0
        for step in range(60):
            engine.updates = step
            estimate = torch.cat([g.flatten() for gl in engine.gradient(inputs, target)[1] for g in gl])
            errors[k] += float(((estimate - exact) ** 2).sum())
    assert 0.15 < errors[4] / errors[1] < 0.4
    one, four = (PerturbEngine(model, params, PerturbConfig(mode=mode, directions=k), 1) for k in (1, 4))
    assert all(torch.equal(a, b) for al, bl in zip(one.gradient(inputs, target)[1], four._estimate(inputs, target, 0)[1])
               for a, b in zip(al, bl))


def test_directions_are_for_forward_gradient_modes():
    for mode in ("weight", "bp"):
        with pytest.raises(UserError, match="directions > 1 averages forward-gradient estimates"):
            PerturbConfig(mode=mode, directions=2)


def test_activation_memory_only_for_backprop_and_activity():
    """Backprop keeps its graph; activity keeps each layer's input (x, T*B spikes per hidden
    layer, the readout's rates), 4 bytes each; the weight-direction modes keep nothing."""
    model, params, x = tiny_models()[0]
    held = {}
    for mode in pt.MODES:
        engine = PerturbEngine(model, params, PerturbConfig(mode=mode), steps_per_epoch=1)
        engine.step(x, torch.zeros(7, 1))
        held[mode] = engine.last_activation_bytes
    assert held["bp"] > 0 and held["global"] == held["layerwise"] == held["weight"] == 0
    assert held["activity"] == 4 * (7 * 2 + 6 * 7 * 5 + 7 * 4)


@pytest.mark.parametrize("case", range(3))
def test_input_lr_scale_steps_only_the_layers_fed_by_the_data(case):
    model, params, x = tiny_models()[case]
    ops = model.ops(*[(7,), (3, 6), (3, (5, 4))][case])
    assert set(model.input_groups) == {o.group for o in ops if o.weight and not o.sources}
    y = model.forward(params, x, SURROGATE).detach() + 0.5
    deltas = []
    for scale in (1.0, 4.0):
        engine = PerturbEngine(model, params, PerturbConfig(optimizer="sgd", lr=1e-2, input_lr_scale=scale), 1)
        engine.step(x, y)
        deltas.append([[a - b for a, b in zip(new, old)] for new, old in zip(engine.params, params)])
    for k, (plain, scaled) in enumerate(zip(*deltas)):
        factor = 4.0 if k in model.input_groups else 1.0
        assert any(d.abs().max() > 0 for d in plain)
        assert all(torch.allclose(b, factor * a, rtol=1e-3, atol=1e-7) for a, b in zip(plain, scaled))


def write_tiny_hat(path, n=10):
    d = mexican_hat(n=n)
    np.savez(path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    return f"npz:{path}"


@pytest.mark.parametrize("mode", ["layerwise", "activity", "bp"])
def test_training_reduces_the_loss(tmp_path, mode):
    task = write_tiny_hat(tmp_path / "hat.npz")
    metrics = train_perturb(task, mode, "surrogate", "engine", tmp_path / mode, 8, 0, progress=False,
                            log=lambda s: None, overrides={"batch": 10, "lr": 1e-2, "lr_decay": 1.0})
    history = json.loads((tmp_path / mode / "loss_curve.json").read_text())
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    for key in ("rel_l2", "task", "mode", "grad", "backend", "steps", "forward_passes_per_step",
                "macs_per_step", "seconds_per_step"):
        assert key in metrics
    assert "rel_l2_per_function" not in metrics  # a regression task has no functions
    assert (tmp_path / mode / "loss_curve.png").exists() and (tmp_path / mode / "prediction.png").exists()


@pytest.mark.parametrize("task", ["poisson", "reaction-diffusion"])
def test_operator_tasks_train_end_to_end(tmp_path, task):
    """The operator tasks' whole path (data, DeepONet / SepONet, outputs) with narrow networks."""
    metrics = train_perturb(task, "layerwise", "surrogate", "engine", tmp_path / "run", 2, 0, progress=False,
                            log=lambda s: None, hidden=(8, 8))
    assert metrics["steps"] == 2 * -(-SETTINGS[task].n_train // SETTINGS[task].train.batch)
    per_function = metrics["rel_l2_per_function"]
    assert 0 < per_function["median"] and 0 < metrics["rel_l2"] < 2
    assert all((tmp_path / "run" / f).exists() for f in ("loss_curve.png", "prediction.png", "metrics.json"))


def test_resume_equals_uninterrupted(tmp_path):
    task = write_tiny_hat(tmp_path / "hat.npz", n=6)
    opts = dict(progress=False, log=lambda s: None, overrides={"batch": 12, "stein_samples": 4})
    train_perturb(task, "global", "stein", "engine", tmp_path / "full", 3, 1, **opts)
    train_perturb(task, "global", "stein", "engine", tmp_path / "part", 2, 1, **opts)
    train_perturb(task, "global", "stein", "engine", None, 3, 1, resume=tmp_path / "part", **opts)
    full, _ = runs.load_checkpoint(tmp_path / "full")
    part, attrs = runs.load_checkpoint(tmp_path / "part")
    assert attrs["epoch"] == 3 and full.keys() == part.keys()
    assert all(np.array_equal(a, b) for k in full for a, b in zip(full[k], part[k]))


def test_bad_input_is_a_user_error(tmp_path):
    d = mexican_hat(n=4)
    good = dict(x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    cases = {"missing": {k: v for k, v in good.items() if k != "y_test"},
             "nan": {**good, "y_train": np.full_like(d.y_train, np.nan)},
             "rows": {**good, "y_train": d.y_train[:-1]},
             "cols": {**good, "x_test": d.x_test[:, :1]},
             "no_columns": {**good, "x_train": d.x_train[:, :0], "x_test": d.x_test[:, :0]},
             "float32_overflow": {**good, "y_train": np.full(d.y_train.shape, 1e300)},
             "zero_reference": {**good, "y_test": np.zeros_like(d.y_test)},
             "complex": {**good, "x_train": d.x_train + 1j}}
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(UserError):
            train_perturb(f"npz:{tmp_path / name}.npz", "global", "surrogate", "engine", tmp_path / name, 1, 0,
                          progress=False, log=lambda s: None)
    (tmp_path / "junk.npz").write_text("not a zip")
    np.savez(tmp_path / "truncated.npz", **good)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "truncated.npz").read_bytes()[:200])
    np.save(tmp_path / "plain.npy", d.x_train)
    for task, mode, grad, backend in [(f"npz:{tmp_path / 'junk.npz'}", "global", "surrogate", "engine"),
                                      (f"npz:{tmp_path / 'truncated.npz'}", "global", "surrogate", "engine"),
                                      (f"npz:{tmp_path / 'plain.npy'}", "global", "surrogate", "engine"),
                                      ("mexican-hat", "weight", "stein", "engine"),
                                      ("poisson", "global", "surrogate", "lava-sim"),
                                      ("nope", "global", "surrogate", "engine"),
                                      ("mexican-hat", "sideways", "surrogate", "engine"),
                                      ("mexican-hat", "global", "magic", "engine")]:
        with pytest.raises(UserError):
            train_perturb(task, mode, grad, backend, tmp_path / "x", 1, 0, progress=False, log=lambda s: None)


def test_per_function_error_is_each_rows_relative_error():
    y = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
    pred = y + np.array([[0.0, 5.0], [0.0, 0.5], [0.0, 0.0]])  # row errors 1, 0.5, 0
    assert rel_l2_per_function(pred, y) == pytest.approx({"mean": 0.5, "median": 0.5})
    assert rel_l2(pred, y) == pytest.approx(np.sqrt(25.25 / 27))  # the whole set's differs


def test_out_must_be_a_folder_we_can_create(tmp_path):
    (tmp_path / "afile").write_text("kept")
    for out in ["", " ", tmp_path / "afile", tmp_path / "afile" / "sub"]:
        with pytest.raises(UserError):
            runs.new_run_dir(out)
    assert (tmp_path / "afile").read_text() == "kept"


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(tmp_path):
    task = write_tiny_hat(tmp_path / "hat.npz", n=6)
    opts = dict(progress=False, log=lambda s: None, overrides={"batch": 12, "lr": 1e30})
    for out in (tmp_path / "new" / "run", tmp_path / "mine"):
        if out.name == "mine":
            out.mkdir()  # a folder the user made is kept, empty as it was
        with pytest.raises(UserError, match="nothing was written"):
            train_perturb(task, "layerwise", "surrogate", "engine", out, 2, 0, **opts)
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_npz_path_is_kept_absolute_so_resume_works_from_elsewhere(tmp_path, monkeypatch):
    write_tiny_hat(tmp_path / "hat.npz", n=6)
    monkeypatch.chdir(tmp_path)
    opts = dict(progress=False, log=lambda s: None, overrides={"batch": 12})
    train_perturb("npz:hat.npz", "layerwise", "surrogate", "engine", "run", 1, 0, **opts)
    monkeypatch.chdir(tmp_path.parent)
    train_perturb("ignored", "layerwise", "surrogate", "engine", None, 2, 0, resume=tmp_path / "run", **opts)
    _, attrs = runs.load_checkpoint(tmp_path / "run")
    assert attrs["epoch"] == 2 and attrs["task"] == f"npz:{tmp_path / 'hat.npz'}"


def test_a_finished_run_without_its_metrics_is_a_user_error(tmp_path):
    task = write_tiny_hat(tmp_path / "hat.npz", n=6)
    opts = dict(progress=False, log=lambda s: None, overrides={"batch": 12})
    train_perturb(task, "layerwise", "surrogate", "engine", tmp_path / "run", 1, 0, **opts)
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(UserError, match="nothing to resume"):
        train_perturb(task, "layerwise", "surrogate", "engine", None, 1, 0, resume=tmp_path / "run", **opts)


def test_target_scale_is_the_training_targets_std_for_operators_only():
    y = np.array([[0.0, 2.0], [4.0, 6.0]])
    task = type("T", (), {"y_train": y})()
    assert target_scale(SETTINGS["poisson"], task) == pytest.approx(np.std(y))
    assert target_scale(SETTINGS["mexican-hat"], task) == 1.0
    task.y_train = np.zeros((2, 2))
    assert target_scale(SETTINGS["poisson"], task) == 1.0  # constant targets are not divided by 0
