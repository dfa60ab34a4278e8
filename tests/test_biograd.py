"""BioGrad: the learning math, the engine, on-chip training in Lava, and the training workflow."""

import json

import h5py
import numpy as np
import pytest
import torch

from lavasnn.cli import main
from lavasnn.crosscheck import crosscheck_biograd
from lavasnn.data.classification import load_dataset
from lavasnn.engine.biograd import BioGradEngine
from lavasnn.errors import UserError
from lavasnn.learning import biograd as bg
from lavasnn.train import runs
from lavasnn.train.biograd import quantized_init, train_biograd

SMALL = dict(hidden=(16,), steps=20, error_start=5, batch=16, epochs=2, sleep_batch=8, sleep_steps=10)


def test_hash_uniform_is_deterministic_uniform_and_key_dependent():
    a = bg.hash_uniform((1000,), 1, 2, 3)
    assert torch.equal(a, bg.hash_uniform((1000,), 1, 2, 3))
    assert not torch.equal(a, bg.hash_uniform((1000,), 1, 2, 4))
    big = bg.hash_uniform((200_000,), 7)
    assert 0 <= big.min() and big.max() < 1
    assert abs(big.mean().item() - 0.5) < 0.005 and abs(big.var().item() - 1 / 12) < 0.002


def test_stochastic_rounding_is_unbiased():
    x = torch.full((100_000,), -2.3, dtype=torch.float64)
    r = bg.stochastic_round(x, 5)
    assert set(r.unique().tolist()) == {-3, -2}
    assert r.double().mean().item() == pytest.approx(-2.3, abs=0.01)


def test_fixed_update_is_the_float_update_in_weight_units_on_average():
    torch.manual_seed(0)
    d = torch.randint(-3000, 3000, (16, 5), dtype=torch.int64)
    E = torch.randint(0, 40000, (16, 5, 7), dtype=torch.int64)
    Eb = torch.randint(0, 40000, (16, 5), dtype=torch.int64)
    fmt = bg.FixedFormat(15)
    G, Gb = bg.gradient_sums(d, E, Eb)
    real_dW, real_db = bg.weight_update_float(G.double() / 2**15 / 2**12, Gb.double() / 2**15 / 2**12, 16, 30, 0.5)
    trials = torch.stack([bg.weight_update_fixed(G, Gb, 16, 30, 0.5, (k,))[0] for k in range(400)]).double()
    np.testing.assert_allclose(trials.mean(0) * fmt.w_unit, real_dW, atol=0.25 * fmt.w_unit)  # ~5 sigma
    assert (trials % 2 == 0).all()  # weights stay even (8-bit mantissa stored as 2m)
    db = torch.stack([bg.weight_update_fixed(G, Gb, 16, 30, 0.5, (k,))[1] for k in range(400)]).double()
    np.testing.assert_allclose(db.mean(0) / 2**15, real_db, atol=0.15 / 2**15)


def test_output_error_is_softmax_minus_onehot():
    err = bg.output_error(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0, 1, 0]]))
    p = np.exp([2.0, 0, 0]) / np.exp([2.0, 0, 0]).sum()
    np.testing.assert_allclose(err.numpy()[0], p - [0, 1, 0])
    assert bg.quantize_error(err, bg.FixedFormat(15, 64)).tolist() == [[50, -57, 7]]


def test_feedback_starts_aligned_and_sleep_keeps_it_aligned():
    cfg = bg.BioGradConfig(hidden=(20, 12), steps=10, error_start=2, sleep_batch=64, sleep_steps=30, sleep_lr=1e-3)
    rng = np.random.default_rng(0)
    p = quantized_init(cfg, 8, 4, rng)
    assert bg.feedback_angle_deg(p["feedback"][0], p["weights"][1:]) < 1e-6
    # Rotate B away from the forward product; sleep must pull it back.
    p["feedback"] = [B + rng.normal(0, 2 * np.abs(B).mean(), B.shape) for B in p["feedback"]]
    engine = BioGradEngine(cfg, 8, 4, p)
    before = [bg.feedback_angle_deg(engine.params.feedback[l].numpy(), [w.numpy() for w in engine.params.weights[l + 1:]])
              for l in range(2)]
    for _ in range(30):
        engine.sleep(rng)
    after = [bg.feedback_angle_deg(engine.params.feedback[l].numpy(), [w.numpy() for w in engine.params.weights[l + 1:]])
             for l in range(2)]
    assert after[0] < before[0] - 10 and after[1] < before[1] - 10


def test_config_errors_name_the_parameter():
    with pytest.raises(UserError, match="error_start = 60 must lie in"):
        bg.BioGradConfig(steps=50, error_start=60)
    with pytest.raises(UserError, match="precision 'double'"):
        bg.BioGradConfig(precision="double")
    with pytest.raises(UserError, match="lr = -1"):
        bg.BioGradConfig(lr=-1)


def test_batch_defaults_per_rule_and_an_explicit_batch_wins():
    assert bg.BioGradConfig().batch == 32
    assert bg.BioGradConfig(rule="loihi2", precision="fixed").batch == 128
    assert bg.BioGradConfig(rule="loihi2", precision="fixed", batch=16).batch == 16
    with pytest.raises(UserError, match="batch must be a positive integer"):
        bg.BioGradConfig(batch=0)


@pytest.mark.lava
@pytest.mark.parametrize("precision", ["fixed", "float"])
def test_on_chip_training_ends_with_the_engines_weights(precision):
    report = crosscheck_biograd(samples=8, seed=2, precision=precision)
    assert report["weight_mismatches"] == 0 and report["prediction_mismatches"] == 0
    assert report["weights_changed"] > report["parameters"] // 2  # training and sleep really changed them


def test_engine_learns_digits_and_writes_the_run_folder(tmp_path):
    cfg = bg.BioGradConfig(**{**SMALL, "epochs": 3}, lr=5e-3)
    metrics = train_biograd(cfg, "digits", tmp_path / "run", limit=300, progress=False, log=lambda s: None)
    assert metrics["test_accuracy"] > 0.45  # measured 0.65; chance is 0.1
    for key in ("test_accuracy", "train_accuracy", "epochs", "samples_per_s", "backend", "precision", "sleep",
                "feedback_angle_deg"):
        assert key in metrics
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 3
    arrays, attrs = runs.load_checkpoint(tmp_path / "run")
    assert attrs["epoch"] == 3 and len(arrays["weights"]) == 2 and len(arrays["feedback"]) == 1
    with pytest.raises(UserError, match="already holds a run"):
        train_biograd(cfg, "digits", tmp_path / "run", progress=False)


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path, precision):
    cfg = bg.BioGradConfig(**SMALL, precision=precision)
    train_biograd(cfg, "digits", tmp_path / "full", limit=64, progress=False, log=lambda s: None, compile=False)

    def interrupt_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_biograd(cfg, "digits", tmp_path / "cut", limit=64, progress=False, log=interrupt_after_first_epoch,
                      compile=False)
    assert runs.load_checkpoint(tmp_path / "cut")[1]["epoch"] == 1
    train_biograd(resume=tmp_path / "cut", progress=False, log=lambda s: None, compile=False)
    full, cut = runs.load_checkpoint(tmp_path / "full")[0], runs.load_checkpoint(tmp_path / "cut")[0]
    for key in full:
        for a, b in zip(full[key], cut[key]):
            assert np.array_equal(a, b)


def test_resume_takes_more_epochs_and_refuses_new_settings(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "biograd", "--data", "digits", "--limit", "20", "--hidden", "8", "--epochs", "1",
                 "--sleep-batch", "4", "--sleep-steps", "5", "--steps", "10", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    for option in (["--lr", "0.5"], ["--hidden", "4"], ["--rule", "loihi2"], ["--out", str(tmp_path / "b")],
                   ["--steps", "50"], ["--lr", "0.001"], ["--data", "mnist5k"], ["--seed", "0"]):  # also the defaults
        assert main(["train", "biograd", "--resume", str(run), "--epochs", "2", *option]) == 2
        err = capsys.readouterr().err
        assert option[0] in err and err.count("\n") == 1
    assert runs.load_checkpoint(run)[1]["epoch"] == 1  # nothing ran
    assert main(["train", "biograd", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert runs.load_checkpoint(run)[1]["epoch"] == 2


@pytest.mark.parametrize("device, backend, message", [("tpu9", "engine", "not a torch device"),
                                                      ("meta", "engine", "cpu or cuda"),
                                                      ("cuda", "engine", "no usable CUDA GPU"),
                                                      ("cuda", "lava-sim", "applies to the engine backend")])
def test_device_is_checked_before_anything_is_written(tmp_path, device, backend, message):
    if message == "no usable CUDA GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=message):
        train_biograd(bg.BioGradConfig(**SMALL), "digits", tmp_path / "run", backend=backend, device=device,
                      progress=False)
    assert not (tmp_path / "run").exists()


def test_data_path_is_kept_absolute_and_foreign_hdf5_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    d = load_dataset("digits", limit=20)
    np.savez("small.npz", x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    cfg = bg.BioGradConfig(**{**SMALL, "epochs": 1})
    for spec, out in (("npz:small.npz", "run"), ("npz:~/small.npz", "run_home")):
        train_biograd(cfg, spec, out, progress=False, log=lambda s: None, compile=False)
        assert runs.load_checkpoint(out)[1]["data"] == f"npz:{tmp_path / 'small.npz'}"
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.create_group("layer").create_group("0")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign.h5").rename(tmp_path / "foreign" / "checkpoint.h5")
    with pytest.raises(UserError, match="not a readable lavasnn checkpoint|not a lavasnn checkpoint"):
        train_biograd(resume=tmp_path / "foreign", progress=False)


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "biograd", "--data", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["train", "biograd", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint.h5" in capsys.readouterr().err
    assert main(["train", "biograd", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert "at least 2 time steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "biograd", "--hidden", "0", "--out", str(tmp_path / "r")])


@pytest.mark.lava
def test_cli_crosscheck_biograd_json(capsys):
    assert main(["crosscheck", "biograd", "--samples", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weight_mismatches"] == 0 and report["samples"] == 4


def test_ctrl_c_during_training_points_to_resume(tmp_path, capsys, monkeypatch):
    import lavasnn.train.biograd as tb

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tb, "train_biograd", interrupted)
    out = tmp_path / "run"
    assert main(["train", "biograd", "--data", "digits", "--out", str(out)]) == 130
    assert "nothing was saved" in capsys.readouterr().err  # no epoch had finished
    out.mkdir()
    (out / "checkpoint.h5").touch()  # stands for the last finished epoch's checkpoint
    assert main(["train", "biograd", "--data", "digits", "--out", str(out)]) == 130
    assert f"--resume {out}" in capsys.readouterr().err
