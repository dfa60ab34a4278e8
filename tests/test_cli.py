import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from lavasnn.cli import main
from lavasnn.train import runs

from conftest import REPO


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lavasnn.cli", *args], capture_output=True, text=True, cwd=REPO)


def test_info_json_lists_chips_and_backends(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"versions", "backends", "chips"}
    assert {"loihi1", "loihi2"} <= set(report["chips"])
    assert report["chips"]["loihi1"]["cores_per_chip"]["value"] == 128
    assert report["backends"]["sim"]["available"] is True
    hw = report["backends"]["hw"]
    assert hw["available"] is False and "lava-loihi" in hw["reason"]
    assert report["versions"]["lava-nc"].startswith("0.10")


def test_info_text(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "loihi2" in out and "hw   unavailable" in out


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("lavasnn ")
    r = run_cli("--help")
    assert r.returncode == 0 and "info" in r.stdout and "smoke" in r.stdout


def test_bad_chips_dir_is_one_line_error_without_traceback(tmp_path):
    (tmp_path / "x.toml").write_text("schema = 1\nname = 'x'\nkind = 'gpu'\ntitle = 'x'\n")
    r = run_cli("info", "--chips-dir", str(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "sources" in r.stderr


def test_bad_argument_is_one_line_and_nonzero():
    r = run_cli("smoke", "--steps", "-3")
    assert r.returncode == 2 and "must be a positive integer" in r.stderr
    assert r.stderr.count("\n") == 1 and "--help" in r.stderr
    r = run_cli("train", "perturb", "--seed", "-1", "--out", "unused")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "[0, 2^32 - 1]" in r.stderr


def test_run_files_are_readable_as_the_umask_allows(tmp_path):
    runs.write_json(tmp_path / "m.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o666 & ~umask


def test_cli_train_perturb_one_epoch_writes_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "perturb", "--task", "mexican-hat", "--mode", "layerwise", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("rel_l2", "task", "mode", "grad", "backend", "steps", "forward_passes_per_step",
                "macs_per_step", "seconds_per_step"):
        assert key in metrics
    assert metrics["mode"] == "layerwise" and 0 < metrics["rel_l2"] < 1.5
    assert metrics["n_params"] == (2 + 1) * 128 + (128 + 1) * 128 + 128 + 1  # the float default, 2-128-128-1
    on_chip = tmp_path / "fixed"
    assert main(["train", "perturb", "--task", "mexican-hat", "--precision", "fixed", "--epochs", "1",
                 "--batch", "5000", "--out", str(on_chip), "--no-progress"]) == 0
    assert json.loads((on_chip / "metrics.json").read_text())["n_params"] == 1185  # on chip: 2-32-32-1
    assert main(["train", "perturb", "--backend", "lava-sim", "--precision", "float", "--out", str(tmp_path / "x")]) == 2
    assert "fixed point only" in capsys.readouterr().err


def test_cli_train_perturb_lr_and_batch_and_divergence(tmp_path, capsys):
    """--lr and --batch reach the run's configuration; a diverging run stops with a one-line
    error before it writes the diverged epoch."""
    out = tmp_path / "div"
    assert main(["train", "perturb", "--task", "mexican-hat", "--mode", "global", "--epochs", "2", "--lr", "10",
                 "--batch", "1000", "--hidden", "32,32", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "diverged in epoch 2" in err and "keeps epoch 1" in err and "smaller --lr (this run's: 10)" in err
    assert "--input-lr-scale (this run's: 10)" in err
    assert "Traceback" not in err
    arrays, attrs = runs.load_checkpoint(out)
    assert attrs["epoch"] == 1 and all(np.isfinite(a).all() for layer in arrays.values() for a in layer)
    ok = tmp_path / "ok"
    assert main(["train", "perturb", "--task", "mexican-hat", "--mode", "layerwise", "--epochs", "1", "--lr", "0.02",
                 "--batch", "2500", "--input-lr-scale", "2", "--out", str(ok), "--no-progress"]) == 0
    assert json.loads((ok / "metrics.json").read_text())["steps"] == 4
    config = runs.load_checkpoint(ok)[1]["config"]
    assert config["lr"] == 0.02 and config["batch"] == 2500 and config["optimizer"] == "sgd"
    assert config["input_lr_scale"] == 2
    assert main(["train", "perturb", "--resume", str(ok), "--lr", "0.1"]) == 2
    assert "a resumed run keeps its own" in capsys.readouterr().err


def test_cli_train_perturb_per_sample_directions(tmp_path, capsys):
    """--per-sample reaches the run, costs its sums per weight and sample, survives a resume;
    modes and precisions it does not apply to get a one-line error."""
    run = tmp_path / "ps"
    common = ["--task", "mexican-hat", "--epochs", "1", "--batch", "2500", "--hidden", "8", "--no-progress"]
    assert main(["train", "perturb", *common, "--per-sample", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["per_sample"] is True and runs.load_checkpoint(run)[1]["config"]["per_sample"] is True
    assert main(["train", "perturb", *common, "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert metrics["macs_per_step"] - plain["macs_per_step"] == 2500 * (8 * 2 + 8 + 8 + 1)
    assert metrics["rel_l2"] != plain["rel_l2"]
    assert main(["train", "perturb", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert runs.load_checkpoint(run)[1]["config"]["per_sample"] is True
    capsys.readouterr()
    for extra in (["--mode", "activity"], ["--precision", "fixed"]):
        assert main(["train", "perturb", *common, "--per-sample", *extra, "--out", str(tmp_path / "no")]) == 2
        err = capsys.readouterr().err
        assert "per-sample" in err and "Traceback" not in err
    big = ["train", "perturb", "--task", "mexican-hat", "--per-sample", "--hidden", "4096,4096", "--batch", "5000",
           "--out", str(tmp_path / "no")]
    assert main(big) == 2  # about 335 GB of directions per batch
    err = capsys.readouterr().err
    assert "GiB for one batch's directions" in err and "smaller --batch" in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()


def test_cli_train_perturb_hidden_sets_the_network_and_resumes(tmp_path, capsys):
    """--hidden and --input-lr-scale reach the model (float and fixed point); a resumed run keeps them."""
    run = tmp_path / "wide"
    common = ["--task", "mexican-hat", "--epochs", "1", "--batch", "5000", "--no-progress"]
    assert main(["train", "perturb", *common, "--hidden", "8", "--out", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["n_params"] == 2 * 8 + 8 + 8 + 1
    assert main(["train", "perturb", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["n_params"] == 33
    fixed = tmp_path / "fixed"
    assert main(["train", "perturb", *common, "--precision", "fixed", "--hidden", "6,5", "--input-lr-scale", "2",
                 "--out", str(fixed)]) == 0
    assert runs.load_checkpoint(fixed)[1]["config"]["input_lr_scale"] == 2
    first = json.loads((fixed / "metrics.json").read_text())
    assert first["n_params"] == (2 + 1) * 6 + (6 + 1) * 5 + 5 + 1
    assert main(["train", "perturb", "--resume", str(fixed), "--epochs", "2", "--no-progress"]) == 0
    resumed = json.loads((fixed / "metrics.json").read_text())
    assert resumed["epochs"] == 2 and resumed["macs_per_step"] == first["macs_per_step"]
    assert main(["train", "perturb", "--resume", str(fixed), "--hidden", "4", "--no-progress"]) == 2
    assert "a resumed run keeps its own" in capsys.readouterr().err
    for option in (["--mode", "bp"], ["--task", "poisson"], ["--seed", "3"], ["--limit", "5"], ["--precision", "float"]):
        assert main(["train", "perturb", "--resume", str(fixed), "--epochs", "3", *option]) == 2
        assert f"{option[0]} set up a new run" in capsys.readouterr().err
    assert json.loads((fixed / "metrics.json").read_text())["epochs"] == 2  # nothing ran


def test_cli_train_stdout_is_only_the_metrics_json(tmp_path, capsys):
    """Progress lines go to stderr, so the output can be piped into a JSON reader."""
    assert main(["train", "perturb", "--epochs", "2", "--batch", "5000", "--hidden", "4", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["epochs"] == 2
    assert "epoch 2/2" in captured.err


def test_cli_train_perturb_directions(tmp_path, capsys):
    """--directions K reaches the run (K forward-mode passes a step; on chip one pass with K
    tangents) and its checkpoint; modes without forward gradients refuse K > 1 before they write
    anything."""
    run = tmp_path / "k3"
    common = ["--task", "mexican-hat", "--epochs", "1", "--batch", "5000", "--hidden", "8", "--no-progress"]
    assert main(["train", "perturb", *common, "--mode", "activity", "--directions", "3", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["directions"] == 3 and metrics["forward_passes_per_step"] == 3
    assert main(["train", "perturb", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert runs.load_checkpoint(run)[1]["config"]["directions"] == 3
    capsys.readouterr()
    assert main(["train", "perturb", *common, "--mode", "bp", "--directions", "2", "--out", str(tmp_path / "bp")]) == 2
    assert "mode 'bp' takes 1" in capsys.readouterr().err
    assert main(["train", "perturb", *common, "--precision", "fixed", "--mode", "weight", "--directions", "2",
                 "--out", str(tmp_path / "weight")]) == 2
    assert "weight perturbation draws one direction" in capsys.readouterr().err
    assert not (tmp_path / "bp").exists() and not (tmp_path / "weight").exists()
    fixed = tmp_path / "fixed"
    assert main(["train", "perturb", *common, "--precision", "fixed", "--limit", "40", "--batch", "20",
                 "--directions", "2", "--out", str(fixed)]) == 0
    metrics = json.loads((fixed / "metrics.json").read_text())
    assert metrics["directions"] == 2 and metrics["forward_passes_per_step"] == 1
    assert main(["train", "perturb", "--resume", str(fixed), "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((fixed / "metrics.json").read_text())
    assert metrics["directions"] == 2 and metrics["epochs"] == 2


@pytest.mark.lava
def test_crosscheck_that_compared_nothing_fails(capsys):
    assert main(["crosscheck", "neurons", "--steps", "1"]) == 1  # no neuron spikes in one step
    out = capsys.readouterr().out
    assert "spike_mismatches: 0" in out and "NOTHING TESTED" in out


def test_crosscheck_refuses_options_of_other_checks(capsys):
    assert main(["crosscheck", "neurons", "--precision", "float", "--samples", "3"]) == 2
    assert "--precision, --samples do not apply to crosscheck neurons" in capsys.readouterr().err
    assert main(["crosscheck", "biograd", "--steps", "5"]) == 2
    assert "--steps does not apply to crosscheck biograd" in capsys.readouterr().err
