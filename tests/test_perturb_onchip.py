"""On-chip forward-gradient learning: fixed-point arithmetic, Lava versus engine, workflow."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from lavasnn.cli import main
from lavasnn.engine import perturb_fixed as pf
from lavasnn.errors import UserError
from lavasnn.learning import perturb as pt
from lavasnn.models.operator import NeuronConfig, SpikingMLP


def _engine(mode: str = "global", seed: int = 1, width: float = 0.05
            ) -> tuple[pf.FixedForwardGradEngine, SpikingMLP, list]:
    model = SpikingMLP((2, 16, 16, 1), NeuronConfig(steps=16, dv=410 / 4096))
    cfg = pf.FixedNetConfig(model.sizes, mode=mode, seed=seed, surrogate_width=width)
    layers = pf.quantize_params(model.init(np.random.default_rng(seed)))
    return pf.FixedForwardGradEngine(cfg, layers), model, layers


def test_fixed_point_tangents_match_float_forward_mode():
    """The integer network and its tangent compartments follow the float dual-number model."""
    engine, model, layers = _engine("global", width=0.3)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(np.round(rng.uniform(-1, 1, (200, 2)) * 128) / 128)
    y_acc, y_dot_acc = engine.forward(x)
    scale = engine.cfg.steps * 2 ** engine.cfg.fmt.v_frac
    y_fixed = y_acc.double() / scale
    y_dot_fixed = y_dot_acc.double() / (scale * 2 ** engine.cfg.fmt.tan_frac)
    tangents = [[(u.weights.double() / 128).unsqueeze(0), (u.bias.double() / 128).unsqueeze(0)]
                for u in engine.directions()]
    params = [[p.double() for p in layer] for layer in pf.real_params(layers)]
    y, y_dot = model.forward_dual(params, tangents, x.double(), lambda z: pt.gaussian_surrogate(z, 0.3))
    assert float((y_fixed - y).norm() / y.norm()) < 0.15
    assert float((y_dot_fixed - y_dot).norm() / y_dot.norm()) < 0.15
    assert np.corrcoef(y_dot_fixed.flatten(), y_dot.flatten())[0, 1] > 0.98


def test_layerwise_directions_move_only_their_layer():
    engine, _, _ = _engine("layerwise")
    x = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (20, 2)))
    _, y_dot = engine.forward(x)
    assert y_dot.shape == (3, 20, 1)
    for k in range(3):  # zero out layer k's direction: its tangent row must vanish
        zeroed = [pf.LayerParams(torch.zeros_like(d.weights), torch.zeros_like(d.bias)) if l == k else d
                  for l, d in enumerate(engine.directions())]
        _, y_dot_k = engine.forward(x, directions=[zeroed])
        assert torch.all(y_dot_k[k] == 0) and torch.any(y_dot[k] != 0)
        assert torch.equal(y_dot_k[[i for i in range(3) if i != k]], y_dot[[i for i in range(3) if i != k]])


def test_each_draw_has_its_own_tangent_rows():
    """With K draws the tangents carry K L rows; draw 0 is the one-draw rule's, and zeroing one
    draw's direction of one layer clears that row alone."""
    one, _, layers = _engine("layerwise")
    two = pf.FixedForwardGradEngine(replace(one.cfg, directions=2), layers)
    x = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (20, 2)))
    _, y_dot_one = one.forward(x)
    _, y_dot = two.forward(x)
    assert y_dot.shape == (6, 20, 1) and two.cfg.directions_of(1) == [1, 4]
    assert torch.equal(y_dot[:3], y_dot_one) and not torch.equal(y_dot[3:], y_dot_one)
    dirs = [two.directions(0), two.directions(1)]
    dirs[1][1] = pf.LayerParams(torch.zeros_like(dirs[1][1].weights), torch.zeros_like(dirs[1][1].bias))
    _, y_dot_zeroed = two.forward(x, directions=dirs)
    assert torch.all(y_dot_zeroed[4] == 0) and torch.any(y_dot[4] != 0)
    assert torch.equal(y_dot_zeroed[[0, 1, 2, 3, 5]], y_dot[[0, 1, 2, 3, 5]])


@pytest.mark.parametrize("mode", ["layerwise", "activity"])
def test_four_draws_quarter_the_update_error(mode):
    """The K = 4 update before rounding, -c_4 times the sum of four draws' terms (``d_j u_j``;
    activity: ``sum_b d_jb e_jb``), is the mean of four one-draw updates: its squared distance
    from the mean of 64 draws is about (1/4 - 1/64) / (1 - 1/64) = 0.24 of one draw's, in every
    layer."""
    engine, _, layers = _engine(mode)
    many = pf.FixedForwardGradEngine(replace(engine.cfg, directions=64, batch=50), layers)
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.uniform(-1, 1, (50, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    if mode == "activity":
        noise, inputs = [many.node_noises(50, j) for j in range(64)], [[] for _ in range(3)]
        forward = many.forward(x, noise=noise, record=inputs)
    else:
        forward = many.forward(x)
    d = pf.third_factor(pf.loss_terms(*forward, pf.target_int(y, many.cfg), many.cfg)[1], many.cfg.third_factor_shift)
    one_cfg, four_cfg = replace(many.cfg, directions=1), replace(many.cfg, directions=4)
    for l in range(3):
        ks = many.cfg.directions_of(l)
        if mode == "activity":
            terms = [pf.eligibility(d[k][None, :, None] * noise[j][l].expand(many.cfg.steps, -1, -1),
                                    torch.stack(inputs[l]), many.cfg.fmt) for j, k in enumerate(ks)]
            group = lambda i: pf.LayerParams(*(sum(t[part] for t in terms[i:i + 4]) for part in range(2)))  # noqa: E731
        else:
            us, ds = [many.directions(j)[l] for j in range(64)], [int(d[k]) for k in ks]
            terms = [pf.LayerParams(u.weights * dj, u.bias * dj) for u, dj in zip(us, ds)]
            group = lambda i: pf.draw_terms(us[i:i + 4], ds[i:i + 4])[0]  # noqa: E731
        flat = lambda g, cfg: -cfg.update_scale(0, l) * torch.cat([p.double().flatten() for p in g])  # noqa: E731
        singles = torch.stack([flat(t, one_cfg) for t in terms])
        reference = singles.mean(dim=0)
        fours = torch.stack([flat(group(i), four_cfg) for i in range(0, 64, 4)])
        ratio = float(((fours - reference) ** 2).sum(dim=1).mean() / ((singles - reference) ** 2).sum(dim=1).mean())
        assert 0.12 < ratio < 0.4


def test_direction_is_reproducible_and_roughly_standard():
    cfg = pf.FixedNetConfig((2, 64, 64, 1))
    u = pf.direction(cfg, 1, 7, (64, 64))
    assert torch.equal(u.weights, pf.direction(cfg, 1, 7, (64, 64)).weights)
    assert not torch.equal(u.weights, pf.direction(cfg, 1, 8, (64, 64)).weights)
    values = u.weights.double().flatten()
    assert abs(float(values.mean())) < 10
    assert abs(float(values.var()) / pf.DIR_VAR - 1) < 0.1


def test_update_follows_minus_d_u_and_clips():
    cfg = pf.FixedNetConfig((2, 8, 8, 1), lr=0.05)
    layer = pf.LayerParams(torch.zeros(8, 2, dtype=torch.int64), torch.zeros(8, dtype=torch.int64))
    u = pf.direction(cfg, 0, 0, (8, 2))
    assert torch.equal(pf.update_layer(layer, u, 0, cfg, 0, 0).weights, layer.weights)
    moved = pf.update_layer(layer, u, 1 << 22, cfg, 0, 0)
    assert float((moved.weights.double() * u.weights.double()).sum()) < 0  # against the direction
    huge = pf.update_layer(layer, u, -pf.D_MAX, pf.FixedNetConfig((2, 8, 8, 1), lr=1e3), 0, 0)
    assert int(huge.weights.max()) == pf.W_MAX and int(huge.weights.min()) == pf.W_MIN
    assert torch.equal(pf.third_factor(torch.tensor([1 << 50, -(1 << 50)]), cfg.fmt.d_shift), torch.tensor([pf.D_MAX, -pf.D_MAX]))


def test_input_lr_scale_moves_only_layer_zero_further():
    plain = pf.FixedNetConfig((2, 64, 8, 1), lr=0.05)
    scaled = pf.FixedNetConfig((2, 64, 8, 1), lr=0.05, input_lr_scale=4)
    for index, shape, factor in [(0, (64, 2), 4.0), (1, (8, 64), 1.0)]:
        layer = pf.LayerParams(torch.zeros(shape, dtype=torch.int64), torch.zeros(shape[0], dtype=torch.int64))
        u = pf.direction(plain, index, 0, shape)
        steps = [pf.update_layer(layer, u, 1 << 22, cfg, index, 0).weights for cfg in (plain, scaled)]
        along = [float((w.double() * u.weights.double()).sum()) for w in steps]
        assert along[0] < 0 and along[1] == pytest.approx(factor * along[0], rel=0.05)
        assert factor != 1.0 or torch.equal(steps[0], steps[1])


@pytest.mark.parametrize("mode, lr", [("layerwise", 0.02), ("activity", 0.1)])
def test_fixed_engine_training_lowers_the_loss(mode, lr):
    engine, _, _ = _engine(mode)
    engine.cfg = pf.FixedNetConfig(engine.cfg.sizes, mode=mode, lr=lr, batch=50, seed=1)
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.uniform(-1, 1, (200, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    before = float(((engine.predict(x) - y) ** 2).mean())
    for _ in range(15):
        for i in range(0, 200, 50):
            engine.step(x[i:i + 50], y[i:i + 50])
    assert float(((engine.predict(x) - y) ** 2).mean()) < 0.5 * before


def _activity_case(batch: int = 100):
    """An activity-mode engine, inputs, targets, its noise, the float model's per-layer node
    perturbations u = xi / 2^dir_frac, and the float forward-mode pass along them."""
    engine, model, layers = _engine("activity", width=0.3)
    engine.cfg = pf.FixedNetConfig(model.sizes, mode="activity", seed=1, surrogate_width=0.3, batch=batch)
    x = torch.as_tensor(np.round(np.random.default_rng(0).uniform(-1, 1, (batch, 2)) * 128) / 128)
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    noise = engine.node_noises(batch)
    u = [xi.double() / 2 ** engine.cfg.fmt.dir_frac for xi in noise]
    u = [u[0][0], u[1], u[2][0]]  # the constant currents (first layer, readout) take one value per sample
    params = [[p.double() for p in layer] for layer in pf.real_params(layers)]
    tangents = [[torch.zeros(3, *p.shape, dtype=torch.float64) for p in layer] for layer in params]
    record: list = []
    y_float, y_dot = model.forward_dual(params, tangents, x, lambda z: pt.gaussian_surrogate(z, 0.3),
                                        [(k, u[k]) for k in range(3)], record)
    return engine, model, x, y, noise, u, y_float, y_dot, record


def test_activity_node_noise_per_step_only_in_hidden_layers():
    cfg = pf.FixedNetConfig((2, 16, 16, 1), mode="activity", batch=20)
    shapes = [tuple(pf.node_noise(cfg, l, 3).shape) for l in range(3)]
    assert shapes == [(1, 20, 16), (16, 20, 16), (1, 20, 1)]
    xi = pf.node_noise(cfg, 1, 3)
    assert torch.equal(xi, pf.node_noise(cfg, 1, 3)) and not torch.equal(xi, pf.node_noise(cfg, 1, 4))
    assert abs(float(xi.double().var()) / pf.DIR_VAR - 1) < 0.1


def test_activity_tangents_match_float_node_perturbation():
    """The integer tangents started by xi follow the float forward pass perturbed at the neurons by u."""
    engine, _, x, _, noise, _, y_float, y_dot, _ = _activity_case()
    y_acc, y_dot_acc = engine.forward(x, noise=[noise])
    scale = engine.cfg.steps * 2 ** engine.cfg.fmt.v_frac
    assert float((y_acc.double() / scale - y_float).norm() / y_float.norm()) < 0.15
    y_dot_fixed = y_dot_acc.double() / (scale * 2 ** engine.cfg.fmt.tan_frac)
    for k in range(3):
        assert np.corrcoef(y_dot_fixed[k].flatten(), y_dot[k].flatten())[0, 1] > 0.98


def test_activity_update_is_the_float_local_product():
    """-c G, the update before rounding, is the float activity gradient (divided by E[u^2] = 4/3)
    with its learning rate, for each layer: first, hidden (per step) and readout."""
    engine, model, x, y, noise, u, y_float, y_dot, record = _activity_case()
    cfg, inputs = engine.cfg, [[] for _ in range(3)]
    _, D = pf.loss_terms(*engine.forward(x, noise=[noise], record=inputs), pf.target_int(y, cfg), cfg)
    d = pf.third_factor(D, cfg.third_factor_shift)
    assert D.shape == (3, len(x)) and int(d.abs().max()) < pf.D_MAX
    c = 2 * (y_float - y) * y_dot / y.numel()
    for k in range(3):
        g = pt.activity_gradient(model.sample_sums(c[k], k, x), u[k], record[k])
        G = pf.eligibility(d[k][None, :, None] * noise[k].expand(cfg.steps, -1, -1), torch.stack(inputs[k]), cfg.fmt)
        for fixed, real in zip(G, g):
            step = -cfg.update_scale(0, k) * fixed.double() / 2 ** cfg.fmt.w_frac
            expected = -cfg.lr * real / (4 / 3)
            assert float(torch.nn.functional.cosine_similarity(step.flatten(), expected.flatten(), 0)) > 0.97
            assert float(step.norm() / expected.norm()) == pytest.approx(1.0, abs=0.15)


def test_activity_batch_holds_at_most_the_configured_samples():
    """The noise is keyed by the sample's slot in a batch of cfg.batch (100 here)."""
    engine, _, _ = _engine("activity")
    with pytest.raises(UserError, match="at most cfg.batch = 100"):
        engine.step(torch.zeros(101, 2), torch.zeros(101, 1))


def test_weight_perturbation_shifts_by_the_rounded_direction_and_clips():
    fmt = pf.FixedFormat(sigma_shift=4)
    layer = pf.LayerParams(torch.tensor([[0, 0, 250, -250]]), torch.tensor([10]))
    u = pf.LayerParams(torch.tensor([[7, 8, 160, -160]]), torch.tensor([-24]))
    moved = pf.perturbed_layer(layer, u, fmt)
    assert moved.weights.tolist() == [[0, 1, 255, -256]]  # 7/16 -> 0, 8/16 -> 1, 250 + 10 clips
    assert moved.bias.tolist() == [9]  # -24/16 = -1.5 rounds to -1
    cfg = pf.FixedNetConfig((2, 4, 1), mode="weight")
    assert cfg.passes == 2 and cfg.n_dirs == 1
    assert cfg.sigma == 2.0 ** (7 - 8 - 4)


def test_weight_perturbation_training_lowers_the_loss_without_tangents():
    model = SpikingMLP((2, 16, 16, 1), NeuronConfig(steps=16, dv=410 / 4096))
    cfg = pf.FixedNetConfig(model.sizes, mode="weight", lr=0.01, batch=50, seed=1)
    engine = pf.FixedForwardGradEngine(cfg, pf.quantize_params(model.init(np.random.default_rng(1))))
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.uniform(-1, 1, (200, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    before = float(((engine.predict(x) - y) ** 2).mean())
    events: dict = {}
    engine.step(x[:50], y[:50], events)
    one_run: dict = {}
    engine.forward(x[:50], events=one_run)
    assert events["tangent"] == 0 and events["forward"] > one_run["forward"]  # two runs, no tangents
    for _ in range(30):
        for i in range(0, 200, 50):
            engine.step(x[i:i + 50], y[i:i + 50])
    assert float(((engine.predict(x) - y) ** 2).mean()) < 0.5 * before


def test_fixed_stein_estimate_is_the_noise_smoothed_step():
    """Averaged over many noise draws, Stein's integer estimate is the Gaussian of the
    surrogate's width (the Irwin-Hall noise is close to normal), in the table's units."""
    cfg = pf.FixedNetConfig((2, 8, 8, 1), batch=3000, grad="stein")
    m, gain = pf.stein_noise_scale(cfg)
    xi = pf.stein_noise(cfg, 0, 0)[0, :, 0]  # (3000 draws of K)
    x = torch.arange(-200, 201, 10, dtype=torch.int64)
    mean = torch.stack([pf.stein_phi(x, row.expand(len(x), -1), m, gain) for row in xi]).double().mean(dim=0)
    width = cfg.surrogate_width * cfg.vth
    exact = torch.exp(-0.5 * (x / width) ** 2) / (np.sqrt(2 * np.pi) * width / 2 ** cfg.fmt.v_frac) * 2 ** cfg.fmt.phi_frac
    assert float((mean - exact).abs().max()) < 0.05 * float(exact.max())
    one = pf.stein_phi(x, xi[0].expand(len(x), -1), m, gain)
    assert bool((one >= 0).all()) and not torch.equal(one.double(), mean)  # one draw is noisy, never negative
    with pytest.raises(UserError, match="needs no spike derivative"):
        pf.FixedNetConfig((2, 8, 1), mode="weight", grad="stein")


@pytest.mark.parametrize("mode, grad, scale, draws", [
    ("layerwise", "surrogate", 1.0, 1), ("global", "surrogate", 1.0, 1), ("weight", "surrogate", 1.0, 1),
    ("layerwise", "stein", 1.0, 1), ("layerwise", "surrogate", 3.0, 1), ("activity", "surrogate", 1.0, 1),
    ("activity", "stein", 3.0, 1), ("layerwise", "stein", 1.0, 2), ("activity", "surrogate", 1.0, 3)])
def test_lava_and_engine_end_with_identical_weights(mode, grad, scale, draws):
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    report = crosscheck_perturb(samples=7, epochs=2, hidden=4, steps=4, batch=3, mode=mode, grad=grad,
                                input_lr_scale=scale, directions=draws)
    assert report["updates"] == 6  # batches of 3, 3, 1 per epoch
    assert report["weight_mismatches"] == 0
    assert report["weights_changed"] > report["parameters"] // 2
    assert report["engine_train_loss"] == report["lava_train_loss"]


@pytest.mark.parametrize("mode", ["layerwise", "activity"])
def test_fixed_run_resumes_to_the_same_weights(mode, small_npz, tmp_path, capsys):
    common = ["train", "perturb", "--task", f"npz:{small_npz}", "--precision", "fixed", "--no-progress", "--mode", mode]
    assert main([*common, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", "perturb", "--resume", str(tmp_path / "split"), "--epochs", "3", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert metrics["precision"] == "fixed" and metrics["epochs"] == 3 and metrics["steps"] == 3
    assert metrics["mode"] == mode
    with h5py.File(tmp_path / "straight" / "checkpoint.h5") as a, h5py.File(tmp_path / "split" / "checkpoint.h5") as b:
        for group in a:
            for key in a[group]:
                np.testing.assert_array_equal(a[group][key][()], b[group][key][()])


def test_fixed_run_trains_with_stein_derivative(small_npz, tmp_path):
    common = ["train", "perturb", "--task", f"npz:{small_npz}", "--precision", "fixed", "--no-progress", "--epochs", "2"]
    assert main([*common, "--grad", "stein", "--out", str(tmp_path / "stein")]) == 0
    assert main([*common, "--out", str(tmp_path / "surrogate")]) == 0
    stein = json.loads((tmp_path / "stein" / "metrics.json").read_text())
    surrogate = json.loads((tmp_path / "surrogate" / "metrics.json").read_text())
    assert stein["grad"] == "stein" and surrogate["grad"] == "surrogate"
    assert stein["train_loss"] != surrogate["train_loss"]


@pytest.mark.parametrize("args, message", [
    (["--precision", "fixed", "--mode", "bp"], "supports --mode global, layerwise, activity, weight"),
    (["--backend", "lava-sim", "--precision", "float"], "fixed point only"),
    (["--precision", "fixed", "--task", "poisson"], "trains spiking MLPs"),
])
def test_fixed_run_refuses_what_the_chip_cannot_do(args, message, tmp_path, capsys):
    assert main(["train", "perturb", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.h5").exists()


@pytest.mark.parametrize("big, message", [("x_train", r"inputs in \[-1, 1\]"), ("y_test", r"targets in \[-1, 1\]")])
def test_inputs_and_targets_outside_the_unit_interval_are_refused(tmp_path, big, message):
    arrays = dict(x_train=np.zeros((4, 2)), y_train=np.full((4, 1), 0.5), x_test=np.zeros((2, 2)), y_test=np.full((2, 1), 0.5))
    arrays[big] = arrays[big] + 3.0
    np.savez(tmp_path / "big.npz", **arrays)
    from lavasnn.train.perturb_fixed import train_perturb_fixed
    with pytest.raises(UserError, match=message):
        train_perturb_fixed(f"npz:{tmp_path / 'big.npz'}", "layerwise", "surrogate", "engine", tmp_path / "r", 1, 0)
    assert not (tmp_path / "r").exists()


def test_event_count_follows_the_spikes():
    """Silent hidden layers cost only the input events; active ones add spikes times fan-out."""
    cfg = pf.FixedNetConfig((2, 4, 3, 1), steps=5, mode="layerwise")
    zeros = lambda o, i: pf.LayerParams(torch.zeros(o, i, dtype=torch.int64), torch.zeros(o, dtype=torch.int64))  # noqa: E731
    engine = pf.FixedForwardGradEngine(cfg, [zeros(4, 2), zeros(3, 4), zeros(1, 3)])
    x = torch.full((6, 2), 0.5)
    events: dict = {}
    engine.forward(x, events=events)
    assert events["forward"] == 5 * 6 * 2 * 4  # steps * batch * inputs * fan-out, no hidden spikes
    bias = pf.LayerParams(torch.zeros(4, 2, dtype=torch.int64), torch.full((4,), 255, dtype=torch.int64))
    engine.layers = [bias, zeros(3, 4), zeros(1, 3)]
    more: dict = {}
    engine.forward(x, events=more)
    assert more["forward"] > events["forward"] and more["tangent"] > events["tangent"]


def test_narrower_surrogate_sends_fewer_tangent_events():
    """The lookup table is zero outside about 4 widths of the threshold, so a narrower surrogate
    leaves fewer non-zero graded tangents to send, while spikes and the table's peak follow phi."""
    engine, _, layers = _engine("global")
    x = torch.as_tensor(np.random.default_rng(3).uniform(-1, 1, (50, 2)))
    counts, peaks = {}, {}
    for width in (0.3, 0.05):
        cfg = pf.FixedNetConfig(engine.cfg.sizes, mode="global", seed=1, surrogate_width=width)
        table = pf.surrogate_table(cfg)
        peaks[width] = int(table.max())
        events: dict = {}
        pf.FixedForwardGradEngine(cfg, layers).forward(x, events=events)
        counts[width] = events
    assert counts[0.05]["forward"] == counts[0.3]["forward"]
    assert counts[0.05]["tangent"] < 0.8 * counts[0.3]["tangent"]
    assert peaks[0.05] == round(256 / (np.sqrt(2 * np.pi) * 0.05))
    with pytest.raises(UserError, match="surrogate_width"):
        pf.FixedNetConfig((2, 4, 1), surrogate_width=0)
