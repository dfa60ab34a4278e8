"""Weight perturbation in Loihi 2's learning-engine form (rule 'loihi2'): arithmetic, Lava versus engine, CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from lavasnn.cli import main
from lavasnn.engine import learning_engine as le
from lavasnn.engine import perturb_fixed as pf
from lavasnn.errors import UserError
from lavasnn.models.operator import NeuronConfig, SpikingMLP


@pytest.mark.parametrize("r", [0.0, 0.5, 0.999])
def test_learning_engine_adds_and_removes_the_perturbation_exactly(r):
    e = pf.FixedNetConfig((2, 4, 1), mode="weight", rule="loihi2").learning_exp
    y = 2 ** -e
    assert y <= 127  # fits the 7-bit y2 / y3
    w = torch.tensor([[0, 250, -250, 100, -3]])
    t = torch.tensor([[5, 7, -7, -7, 1]]) << le.TAG_SHIFT
    moved = le.perturbation_rule_step(w, t, y, 0, e, r)
    assert moved.tolist() == [[5, 255, -256, 93, -2]]  # 250 + 7 and -250 - 7 clip
    restored = le.perturbation_rule_step(moved, t, 0, y, e, r)
    assert restored.tolist() == [[0, 248, -249, 100, -3]]  # the clipped ones come back short of w
    assert le.perturbation_rule_step(restored, t, y, 0, e, r).tolist() == moved.tolist()
    assert le.perturbation_rule_step(w, t, 0, 0, e, r).tolist() == w.tolist()


def test_update_is_minus_d_q_rounded_with_the_steps_one_random_number():
    """With the tag q << 5 the products are exact: dw = SR(2^e (y2 - y3) q), unbiased over r."""
    q = torch.tensor([[5, -5, 7, 0, 1]])
    t, w = q << le.TAG_SHIFT, torch.zeros_like(q)
    d, e = 37, -7
    y2, y3 = pf.loihi2_factors(d)
    assert (y2, y3) == (0, 37) and pf.loihi2_factors(-5) == (5, 0)
    rs = np.linspace(0.0005, 0.9995, 1000)
    mean = torch.stack([le.perturbation_rule_step(w, t, y2, y3, e, float(r)) for r in rs]).double().mean(dim=0)
    assert torch.allclose(mean, -d * q.double() / 128, atol=2e-3)
    one = le.perturbation_rule_step(w, t, y2, y3, e, 0.3)
    assert one.tolist() == [[-1, 2, -2, 0, 0]]  # -185, 185, -259, 0, -37 (in 1/128) rounded up where frac > r = 0.3


def test_tag_holds_the_direction_exactly_within_nine_bits():
    cfg = pf.FixedNetConfig((2, 8, 1), mode="weight", rule="loihi2")
    u = pf.direction(cfg, 0, 0, (8, 2))
    tag = pf.loihi2_tag(u)
    q = pf.loihi2_direction(u)
    assert tag.shape == (8, 3) and torch.equal(tag >> le.TAG_SHIFT, pf.augmented(q))
    assert int(tag.abs().max()) <= le.TAG_RANGE[1] and int(pf.augmented(q).abs().max()) <= le.DIRECTION_MAX
    assert torch.equal(pf.augmented(q), torch.clamp(torch.round(pf.augmented(u) / 64), -7, 7).to(torch.int64))
    big = pf.LayerParams(torch.tensor([[510, -510, 470]]), torch.tensor([-470]))
    assert pf.loihi2_direction(big).weights.tolist() == [[7, -7, 7]]  # 8, -8 and 7.3 clip or round to 7
    assert 5.0 < pf.LOIHI2_DIR_VAR < 5.6  # (148 / 64)^2 plus the rounding's 1/12


def test_third_factor_carries_the_learning_rate():
    """Averaged over the loss neuron's rounding, the update -2^e d q is -lr (L(w + p) - L(w)) p / sigma_p^2
    (weight units; three outputs), and the learning-rate decay scales d."""
    cfg = pf.FixedNetConfig((2, 8, 3), mode="weight", rule="loihi2", lr=0.01, batch=10, steps=8,
                            lr_decay=0.5, updates_per_epoch=3)
    f = cfg.fmt
    D = 4_000_000  # the summed e_pert^2 - e^2 in the readout's units (T 2^v_frac)^2
    rs = np.linspace(0.0005, 0.9995, 2000)
    d_mean = np.mean([pf.loihi2_third_factor(D, pf.loihi2_gain(cfg, 0), float(r)) for r in rs])
    delta_loss = D / (cfg.batch * 3 * cfg.steps ** 2 * 2 ** (2 * f.v_frac))
    p = 3  # weight units
    real_step = -cfg.lr * delta_loss * (p / 2 ** f.w_frac) / (pf.LOIHI2_DIR_VAR / 2 ** (2 * f.w_frac)) * 2 ** f.w_frac
    w = torch.zeros(1, 1, dtype=torch.int64)
    t = torch.tensor([[p]]) << le.TAG_SHIFT
    step = np.mean([float(le.perturbation_rule_step(w, t, *pf.loihi2_factors(round(d_mean)), cfg.learning_exp,
                                                    float(r))) for r in rs])
    assert step == pytest.approx(real_step, rel=0.03) and step < 0
    assert -d_mean * 2 ** cfg.learning_exp * p == pytest.approx(real_step, rel=1e-3)  # d > 0 lowers w
    d_later = np.mean([pf.loihi2_third_factor(D, pf.loihi2_gain(cfg, 3), float(r)) for r in rs])
    assert d_later == pytest.approx(d_mean / 2, rel=1e-3)  # lr halves after an epoch
    assert pf.loihi2_third_factor(100 * D, pf.loihi2_gain(cfg, 0), 0.5) == 127
    assert pf.loihi2_third_factor(-100 * D, pf.loihi2_gain(cfg, 0), 0.5) == -127


def test_rule_takes_what_the_learning_engine_can_do():
    with pytest.raises(UserError, match="takes --mode weight, global or layerwise, not activity"):
        pf.FixedNetConfig((2, 8, 1), mode="activity", rule="loihi2")
    with pytest.raises(UserError, match="one direction per update in the tags"):
        pf.FixedNetConfig((2, 8, 1), mode="layerwise", rule="loihi2", directions=2)
    with pytest.raises(UserError, match="--input-lr-scale needs --mode layerwise"):
        pf.FixedNetConfig((2, 8, 1), mode="global", rule="loihi2", input_lr_scale=3.0)
    with pytest.raises(UserError, match="rule 'hash' is not one of"):
        pf.FixedNetConfig((2, 8, 1), mode="weight", rule="hash")


def test_forward_gradient_tangents_follow_the_exact_rule():
    """The learning-dense tangent (direction q = round(u / 64) on the start synapses, shifts applied per
    Dense) points where the exact rule's does: cosine above 0.98, same size within 10 %."""
    fmt = pf.FixedFormat()
    cfg = pf.FixedNetConfig((6, 16, 1), mode="layerwise", rule="loihi2")
    u = pf.direction(cfg, 0, 3, (16, 6))
    x = torch.as_tensor(np.random.default_rng(0).integers(-128, 129, (50, 6)))
    zero = pf.LayerParams(torch.zeros(16, 6, dtype=torch.int64), torch.zeros(16, dtype=torch.int64))
    exact = pf.dense_step(zero, pf.weight_tangent(u, x, fmt)[None], x, torch.zeros(1, 50, 6, dtype=torch.int64),
                          fmt)[1][0].double().flatten()
    learned = pf.loihi2_tangent(pf.loihi2_direction(u), x, fmt).double().flatten()
    assert float(learned @ exact / (learned.norm() * exact.norm())) > 0.98
    assert float(learned.norm() / exact.norm()) == pytest.approx(1.0, abs=0.1)


def test_engine_training_lowers_the_loss():
    model = SpikingMLP((2, 16, 16, 1), NeuronConfig(steps=16, dv=410 / 4096))
    cfg = pf.FixedNetConfig(model.sizes, mode="weight", rule="loihi2", lr=0.01, batch=50, seed=1)
    engine = pf.FixedForwardGradEngine(cfg, pf.quantize_params(model.init(np.random.default_rng(1))))
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.uniform(-1, 1, (200, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    before = float(((engine.predict(x) - y) ** 2).mean())
    for _ in range(30):
        for i in range(0, 200, 50):
            engine.step(x[i:i + 50], y[i:i + 50])
    assert engine.lava_step == 30 * 4 * pf.loihi2_batch_steps(cfg, 50)
    assert float(((engine.predict(x) - y) ** 2).mean()) < 0.5 * before


@pytest.mark.parametrize("mode, grad", [("layerwise", "surrogate"), ("global", "surrogate"), ("layerwise", "stein")])
def test_forward_gradients_with_learning_dense_match_the_engine(mode, grad):
    """Both synapse groups of every layer learn in Lava's LearningDense; the tangent copies stay equal
    to the weights, and the first layer learns too (its direction's tangent crossed two layers).
    Stein's noise is keyed by update, step and sample slot, which the neurons read off their delayed
    control signals."""
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    report = crosscheck_perturb(mode=mode, rule="loihi2", grad=grad)
    assert report["weight_mismatches"] == 0 and report["tangent_copy_mismatches"] == 0
    assert report["engine_train_loss"] == pytest.approx(report["lava_train_loss"], rel=1e-12)
    first_layer = (report["sizes"][0] + 1) * report["sizes"][1]
    assert report["weights_changed"] > report["parameters"] - first_layer


def test_lava_learning_dense_and_engine_end_with_identical_weights():
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    report = crosscheck_perturb(samples=7, epochs=2, hidden=4, steps=4, batch=3, mode="weight", rule="loihi2")
    assert report["updates"] == 6 and report["rule"] == "loihi2"
    assert report["weight_mismatches"] == 0
    assert report["weights_changed"] > report["parameters"] // 2
    assert report["engine_train_loss"] == pytest.approx(report["lava_train_loss"], rel=1e-12)


def _checkpoint(run) -> dict:
    with h5py.File(run / "checkpoint.h5") as f:
        return {f"{g}/{k}": f[g][k][()] for g in f for k in f[g]}


@pytest.mark.parametrize("mode, grad, passes", [("weight", "surrogate", 2), ("layerwise", "stein", 1)])
def test_cli_trains_in_lava_as_in_the_engine_and_resumes(mode, grad, passes, small_npz, tmp_path):
    """A run and a resumed run: Lava and the engine end on the same integers (forward gradients: the
    tangent copies are rebuilt from the weights on resume, Stein's noise keyed by the update count).
    A resumed run starts Lava's rounding streams afresh (in the engine too), so it need not equal an
    unbroken run."""
    common = ["train", "perturb", "--task", f"npz:{small_npz}", "--mode", mode, "--grad", grad, "--rule", "loihi2",
              "--no-progress", "--hidden", "6,6", "--batch", "10", "--lr", "0.005", "--limit", "20"]
    for backend in (["--backend", "lava-sim"], ["--precision", "fixed"]):
        name = backend[1]
        assert main([*common, *backend, "--epochs", "1", "--out", str(tmp_path / name)]) == 0
        assert main(["train", "perturb", "--resume", str(tmp_path / name), "--epochs", "2", "--no-progress"]) == 0
    lava = json.loads((tmp_path / "lava-sim" / "metrics.json").read_text())
    engine = json.loads((tmp_path / "fixed" / "metrics.json").read_text())
    assert lava["rule"] == engine["rule"] == "loihi2" and lava["steps"] == engine["steps"] == 4
    assert lava["lava_steps_per_epoch"] == passes * 16 * 20 + 2 * 4  # runs of T = 16 per sample; L + 1 per batch
    a, b = _checkpoint(tmp_path / "lava-sim"), _checkpoint(tmp_path / "fixed")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert lava["rel_l2"] == engine["rel_l2"]


@pytest.mark.parametrize("args, message", [
    (["--precision", "fixed", "--mode", "activity", "--rule", "loihi2"], "takes --mode weight, global or layerwise"),
    (["--mode", "weight", "--rule", "loihi2"], "--rule applies to fixed-point runs"),
])
def test_cli_refuses_the_rule_where_it_does_not_apply(args, message, tmp_path, capsys):
    assert main(["train", "perturb", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_crosscheck_takes_the_rule_only_for_perturb(capsys):
    assert main(["crosscheck", "neurons", "--rule", "loihi2"]) == 2
    assert "--rule does not apply to crosscheck neurons" in capsys.readouterr().err


def test_lava_and_engine_agree_where_the_perturbation_saturates(monkeypatch):
    """Weights near the 8-bit limits: w + q clips, so removing q does not give w back; Lava's
    LearningDense and the engine must still agree (and the first batch's perturbation must clip)."""
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    quantize = pf.quantize_params
    scaled = lambda params, fmt=pf.FixedFormat(): [  # noqa: E731
        pf.LayerParams(*(torch.clamp(p * 8, pf.W_MIN, pf.W_MAX) for p in layer)) for layer in quantize(params, fmt)]
    monkeypatch.setattr(pf, "quantize_params", scaled)
    cfg = pf.FixedNetConfig((2, 4, 4, 1), mode="weight", rule="loihi2")
    init = scaled(SpikingMLP(cfg.sizes).init(np.random.default_rng(0)))  # the crosscheck's weights (seed 0)
    q = [pf.augmented(pf.loihi2_direction(pf.direction(cfg, l, 0, tuple(p.weights.shape)))) for l, p in enumerate(init)]
    clips = sum(int(((pf.augmented(p) + ql > pf.W_MAX) | (pf.augmented(p) + ql < pf.W_MIN)).sum())
                for p, ql in zip(init, q))
    assert clips > 0
    report = crosscheck_perturb(samples=7, epochs=2, hidden=4, steps=4, batch=3, mode="weight", rule="loihi2")
    assert report["weight_mismatches"] == 0
    assert report["engine_train_loss"] == pytest.approx(report["lava_train_loss"], rel=1e-12)


def test_forward_gradient_update_matches_the_exact_rule_on_average():
    """Averaged over 150 updates (the same hashed directions), the loihi2 layer-wise update (q = round(u /
    64), 7-bit d, learning-engine rounding) points where the exact rule's does, at the same size: the
    gain carries the scale (lr small enough that d rarely saturates)."""
    model = SpikingMLP((2, 12, 12, 1), NeuronConfig(steps=8, dv=410 / 4096))
    layers = pf.quantize_params(model.init(np.random.default_rng(2)))
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.uniform(-1, 1, (20, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    steps = {}
    for rule in ("exact", "loihi2"):
        cfg = pf.FixedNetConfig(model.sizes, steps=8, mode="layerwise", rule=rule, lr=0.005, batch=20, seed=5)
        total = None
        for update in range(150):
            engine = pf.FixedForwardGradEngine(cfg, layers, updates=update)
            engine.step(x, y)
            dw = torch.cat([(pf.augmented(a) - pf.augmented(b)).flatten() for a, b in zip(engine.layers, layers)])
            total = dw.double() if total is None else total + dw.double()
        steps[rule] = total / 150
    exact, learned = steps["exact"], steps["loihi2"]
    assert float(learned @ exact / (learned.norm() * exact.norm())) > 0.8  # 0.88 measured: rounding noise
    assert float(learned.norm() / exact.norm()) == pytest.approx(1.0, abs=0.15)  # 0.98 measured
