"""Weight perturbation in Loihi 2's learning-engine form (rule 'loihi2'): arithmetic, Lava versus engine, CLI."""

from __future__ import annotations

import json

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
    fmt = pf.FixedFormat()
    y = pf.perturb_y(fmt)
    w = torch.tensor([[0, 250, -250, 100, -3]])
    p = torch.tensor([[5, 10, -10, -7, 31]])
    t = p << fmt.le_tag_shift
    moved = le.weight_perturbation_step(w, t, 0, y, 0, 0, r)
    assert moved.tolist() == [[5, 255, -256, 93, 28]]  # 250 + 10 and -250 - 10 clip
    restored = le.weight_perturbation_step(moved, t, 0, 0, y, 0, r)
    assert restored.tolist() == [[0, 245, -246, 100, -3]]  # clipped ones come back short of w
    assert le.weight_perturbation_step(restored, t, 0, y, 0, 0, r).tolist() == moved.tolist()


def test_update_is_minus_d_t_with_the_hidden_shift_and_shared_rounding():
    """dw = -2^e floor(d t / 32) / 128 on average over the step's random number (e = -7)."""
    t = torch.tensor([[40, -40, 124, 0, 8]])
    w = torch.zeros_like(t)
    d = 37
    rs = np.linspace(0.0005, 0.9995, 1000)
    mean = torch.stack([le.weight_perturbation_step(w, t, d, 0, 0, -7, float(r)) for r in rs]).double().mean(dim=0)
    expected = torch.floor(-d * t.double() / 32) / 128
    assert torch.allclose(mean, expected, atol=2e-3)
    one = le.weight_perturbation_step(w, t, d, 0, 0, -7, 0.3)
    assert bool(((one - expected).abs() < 1).all())  # one r rounds every synapse to floor or ceil
    assert one.tolist() == [[0, 1, -1, 0, 0]]  # -47, 46, -144, 0, -10 (in 1/128) rounded up where frac > r = 0.3


def test_tag_holds_the_perturbation_shifted_within_nine_bits():
    fmt = pf.FixedFormat()
    cfg = pf.FixedNetConfig((2, 8, 1), mode="weight", rule="loihi2")
    u = pf.direction(cfg, 0, 0, (8, 2))
    tag = pf.weight_tag(u, fmt)
    assert tag.shape == (8, 3)
    assert bool((tag % (1 << fmt.le_tag_shift) == 0).all())
    assert int(tag.abs().max()) <= le.TAG_RANGE[1]
    moved = pf.perturbed_layer(pf.LayerParams(torch.zeros(8, 2, dtype=torch.int64), torch.zeros(8, dtype=torch.int64)),
                               u, fmt)
    assert torch.equal((pf.perturb_y(fmt) * tag) >> 5, pf.augmented(moved))  # the exact rule's perturbation


def test_third_factor_carries_the_learning_rate():
    """The update -2^e d t / 32 equals -lr (L(w + p) - L(w)) p / sigma_p^2 up to d's rounding."""
    cfg = pf.FixedNetConfig((2, 8, 1), mode="weight", rule="loihi2", lr=0.01, batch=10, steps=8,
                            lr_decay=0.5, updates_per_epoch=3)
    f = cfg.fmt
    D = 3_000_000
    d = pf.loihi2_third_factor(D, pf.loihi2_gain(cfg, 0))
    delta_loss = D / (cfg.batch * cfg.steps ** 2 * 2 ** (2 * f.v_frac))
    sigma2 = pf.DIR_VAR / 2 ** (2 * f.sigma_shift + 2 * f.w_frac)
    p = 1 / 2 ** f.w_frac
    real = cfg.lr * delta_loss * p / sigma2 * 2 ** f.w_frac  # in weight units, per unit perturbation p = 1
    assert d * 2 ** (f.le_lr_exp + f.le_tag_shift) / 32 == pytest.approx(real, rel=0.02)
    assert pf.loihi2_third_factor(D, pf.loihi2_gain(cfg, 3)) == pytest.approx(d / 2, abs=1)  # lr halves after an epoch
    assert pf.loihi2_third_factor(100 * D, pf.loihi2_gain(cfg, 0)) == 127
    assert pf.loihi2_third_factor(-100 * D, pf.loihi2_gain(cfg, 0)) == -127


def test_rule_needs_weight_perturbation():
    with pytest.raises(UserError, match="use it with --mode weight"):
        pf.FixedNetConfig((2, 8, 1), mode="layerwise", rule="loihi2")
    with pytest.raises(UserError, match="rule 'hash' is not one of"):
        pf.FixedNetConfig((2, 8, 1), mode="weight", rule="hash")


def test_engine_training_lowers_the_loss():
    model = SpikingMLP((2, 16, 16, 1), NeuronConfig(steps=16, dv=410 / 4096))
    cfg = pf.FixedNetConfig(model.sizes, mode="weight", rule="loihi2", lr=0.01, batch=50, seed=1)
    engine = pf.FixedForwardGradEngine(cfg, pf.quantize_params(model.init(np.random.default_rng(1))))
    assert all(bool((pf.augmented(l) % 2 == 0).all()) for l in engine.layers)  # LearningDense drops the LSB
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.uniform(-1, 1, (200, 2)))
    y = torch.exp(-3 * (x ** 2).sum(dim=1, keepdim=True))
    before = float(((engine.predict(x) - y) ** 2).mean())
    for _ in range(30):
        for i in range(0, 200, 50):
            engine.step(x[i:i + 50], y[i:i + 50])
    assert engine.lava_step == 30 * 4 * pf.loihi2_batch_steps(cfg, 50)
    assert float(((engine.predict(x) - y) ** 2).mean()) < 0.5 * before


def test_lava_learning_dense_and_engine_end_with_identical_weights():
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    report = crosscheck_perturb(samples=7, epochs=2, hidden=4, steps=4, batch=3, mode="weight", rule="loihi2")
    assert report["updates"] == 6 and report["rule"] == "loihi2"
    assert report["weight_mismatches"] == 0
    assert report["weights_changed"] > report["parameters"] // 2
    assert report["engine_train_loss"] == report["lava_train_loss"]


@pytest.fixture
def small_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 2))
    y = np.sin(2 * x[:, :1]) * x[:, 1:]
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    return path


def test_cli_trains_in_lava_as_in_the_engine_and_resumes(small_npz, tmp_path):
    common = ["train", "perturb", "--task", f"npz:{small_npz}", "--mode", "weight", "--rule", "loihi2", "--no-progress",
              "--hidden", "6,6", "--batch", "10", "--lr", "0.005"]
    assert main([*common, "--backend", "lava-sim", "--epochs", "2", "--out", str(tmp_path / "lava")]) == 0
    assert main([*common, "--precision", "fixed", "--epochs", "2", "--out", str(tmp_path / "engine")]) == 0
    lava = json.loads((tmp_path / "lava" / "metrics.json").read_text())
    engine = json.loads((tmp_path / "engine" / "metrics.json").read_text())
    assert lava["rule"] == engine["rule"] == "loihi2" and lava["steps"] == 8
    assert lava["rel_l2"] == engine["rel_l2"] and lava["train_loss"] == engine["train_loss"]
    assert lava["lava_steps_per_epoch"] == 2 * 16 * 40 + 4 * 4  # two runs of T = 16 per sample; L + 1 per batch
    assert main(["train", "perturb", "--resume", str(tmp_path / "engine"), "--epochs", "3", "--no-progress"]) == 0
    assert json.loads((tmp_path / "engine" / "metrics.json").read_text())["steps"] == 12


@pytest.mark.parametrize("args, message", [
    (["--precision", "fixed", "--mode", "layerwise", "--rule", "loihi2"], "use it with --mode weight"),
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
    """Weights near the 8-bit limits: w + t clips, so removing t does not give w back; Lava's
    LearningDense and the engine must still agree (and the run must have clipped)."""
    from lavasnn.crosscheck_perturb import crosscheck_perturb

    quantize = pf.quantize_params
    monkeypatch.setattr(pf, "quantize_params", lambda params, fmt=pf.FixedFormat(): [
        pf.LayerParams(*(torch.clamp(p * 8, pf.W_MIN, pf.W_MAX) for p in layer)) for layer in quantize(params, fmt)])
    clipped = []
    step = le.weight_perturbation_step

    def spy(w, t, y1, y2, y3, lr_exp, r):
        out = step(w, t, y1, y2, y3, lr_exp, r)
        if y2:
            clipped.append(int((out != w + (t >> pf.FixedFormat().le_tag_shift)).sum()))
        return out

    monkeypatch.setattr(le, "weight_perturbation_step", spy)
    report = crosscheck_perturb(samples=7, epochs=2, hidden=4, steps=4, batch=3, mode="weight", rule="loihi2")
    assert sum(clipped) > 0
    assert report["weight_mismatches"] == 0 and report["engine_train_loss"] == report["lava_train_loss"]
