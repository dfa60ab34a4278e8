"""The BioGrad training workflow: data in, run folder out, resumable epoch by epoch.

Per epoch: shuffle, train batch by batch (each batch followed by a sleep phase unless
disabled), evaluate on the test split, measure the feedback angles, then write the checkpoint,
``history.json`` and ``metrics.json`` atomically. The checkpoint holds the weights, feedback
weights, biases, the configuration (neuron parameters included), the data spec, the training
RNG state, the update counter and the history, so ``--resume`` ends with the same weights as a
run that was never interrupted. Test-time encoding uses its own RNG per epoch, so evaluation
never shifts the training randomness.

Backends: ``engine`` trains with :class:`BioGradEngine`; ``lava-sim`` trains on chip with
:class:`lavasnn.backends.biograd_lava.LavaBioGrad` (weights learn inside the Lava processes) and
evaluates the weights it reads out at each epoch end with the engine, which computes the same
integers (``lavasnn crosscheck biograd``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from lavasnn.data import load_dataset
from lavasnn.engine.biograd import BioGradEngine, init_params, real_params
from lavasnn.errors import UserError
from lavasnn.learning import biograd as bg
from lavasnn.train import runs

BACKENDS = ("engine", "lava-sim")
EVAL_BATCH = 256


def quantized_init(cfg: bg.BioGradConfig, n_in: int, n_out: int, rng: np.random.Generator) -> dict:
    p = init_params(cfg, n_in, n_out, rng)
    if cfg.precision == "float":
        return p
    fmt = bg.FixedFormat(cfg.v_frac_bits, cfg.error_scale)
    # rule "loihi2": a bias is the weight of a synapse from an always-on neuron (weight units)
    quantize_bias = fmt.quantize_weights if cfg.rule == "loihi2" else fmt.quantize_bias
    return {"weights": [fmt.quantize_weights(w) for w in p["weights"]],
            "biases": [quantize_bias(b) for b in p["biases"]],
            "feedback": [fmt.quantize_weights(B) for B in p["feedback"]]}


def feedback_angles(params: dict, cfg: bg.BioGradConfig) -> list[float]:
    rp = real_params(params, cfg)
    return [bg.feedback_angle_deg(rp["feedback"][l], rp["weights"][l + 1:]) for l in range(len(cfg.hidden))]


def evaluate(engine: BioGradEngine, data, steps: int, seed: int, epoch: int) -> float:
    rng = np.random.default_rng([seed, epoch, 1])
    correct = 0
    for start in range(0, len(data.y_test), EVAL_BATCH):
        idx = np.arange(start, min(start + EVAL_BATCH, len(data.y_test)))
        pred = engine.predict(torch.as_tensor(data.spikes("test", idx, steps, rng)))
        correct += int((pred.cpu().numpy() == data.y_test[idx]).sum())
    return correct / len(data.y_test)


def check_device(device: str, backend: str) -> None:
    """Raise UserError unless ``backend`` can compute on ``device`` here."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r} is not a torch device; use cpu or cuda (cuda:N)") from None
    if kind not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: lavasnn computes on cpu or cuda, not {kind}")
    if kind != "cpu" and backend != "engine":
        raise UserError(f"--device {device} applies to the engine backend; {backend} runs on the CPU")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: torch finds no usable CUDA GPU here; use --device cpu")
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def train_biograd(cfg: bg.BioGradConfig | None = None, data_spec: str = "mnist5k", out: str | Path | None = None,
                  backend: str = "engine", resume: str | Path | None = None, device: str = "cpu",
                  limit: int | None = None,
                  compile: bool | None = None, progress: bool = True,
                  log: Callable[[str], None] = print, epochs: int | None = None) -> dict:
    """Train BioGrad and return the metrics written to ``<run>/metrics.json``.

    ``limit`` keeps at most that many samples per split (classes balanced), for quick runs;
    ``epochs`` replaces a resumed run's number of epochs.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if resume is not None:
        arrays, attrs = runs.load_checkpoint(resume)
        if attrs.get("algorithm") != "biograd":
            raise UserError(f"{resume} holds a {attrs.get('algorithm')!r} run, not a BioGrad run")
        cfg = bg.BioGradConfig(**{**attrs["config"], "hidden": tuple(attrs["config"]["hidden"]),
                                  **({"epochs": epochs} if epochs else {})})
        data_spec, backend, limit = attrs["data"], attrs["backend"], attrs["limit"]
        check_device(device, backend)
        run_dir, params = Path(resume), arrays
        rng = np.random.default_rng()
        rng.bit_generator.state = attrs["rng_state"]
        start_epoch, updates, history = attrs["epoch"], attrs["updates"], attrs["history"]
        data = load_dataset(data_spec, limit=limit)
        log(runs.resume_message(run_dir, start_epoch, cfg.epochs))
    else:
        if out is None:
            raise UserError("--out DIR is required for a new run")
        cfg = cfg or bg.BioGradConfig()
        if cfg.rule != "exact" and backend != "engine":
            raise UserError(f"rule {cfg.rule!r} trains with backend 'engine' only (lava-sim runs rule 'exact')")
        if cfg.lr_decay != 1.0 and backend != "engine":
            raise UserError(f"lr_decay = {cfg.lr_decay} trains with backend 'engine' only: the Lava processes take "
                            "one fixed lr (use lr_decay 1 with lava-sim)")
        check_device(device, backend)
        data_spec = runs.absolute_data_path(data_spec)  # the checkpoint keeps it: --resume works from any folder
        data = load_dataset(data_spec, limit=limit)
        run_dir = runs.new_run_dir(out)
        rng = np.random.default_rng(cfg.seed)
        params = quantized_init(cfg, data.n_inputs, data.n_classes, rng)
        start_epoch, updates, history = 0, 0, []
    fixed = cfg.precision == "fixed"
    compile = fixed if compile is None else compile
    if backend == "lava-sim":
        from lavasnn.backends.biograd_lava import LavaBioGrad
        batches = -(-len(data.y_train) // cfg.batch)
        sleep_steps = batches * len(cfg.hidden) * cfg.sleep_batch * cfg.sleep_steps if cfg.sleep else 0
        log(f"on chip: each epoch streams {len(data.y_train) * cfg.steps} training and {sleep_steps} sleep "
            "time steps through Lava's simulator (see the README for its speed; --limit, --sleep-batch and "
            "--sleep-steps shorten a run)")
        with LavaBioGrad(cfg, data.n_inputs, data.n_classes, params, updates=updates) as trainer:
            return _epochs(trainer, cfg, data, data_spec, limit, backend, run_dir, rng, start_epoch, history, device,
                           progress, log)
    trainer = BioGradEngine(cfg, data.n_inputs, data.n_classes, params, device=device, compile=compile)
    trainer.updates = updates
    return _epochs(trainer, cfg, data, data_spec, limit, backend, run_dir, rng, start_epoch, history, device,
                   progress, log)


def _epochs(trainer, cfg, data, data_spec, limit, backend, run_dir, rng, start_epoch, history, device,
            progress, log) -> dict:
    n_train = len(data.y_train)
    train_seconds, trained = 0.0, 0
    for epoch in range(start_epoch, cfg.epochs):
        order = rng.permutation(n_train)
        lr = cfg.lr_at(epoch)
        if backend == "engine":
            trainer.set_epoch(epoch)
        correct = seen = 0
        t0 = time.perf_counter()
        bar = tqdm(total=n_train, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="sample", disable=not progress,
                   leave=False)
        for start in range(0, n_train, cfg.batch):
            idx = order[start:start + cfg.batch]
            x = torch.as_tensor(data.spikes("train", idx, cfg.steps, rng))
            pred = trainer.train_batch(x, torch.as_tensor(data.y_train[idx]))
            if cfg.sleep:
                trainer.sleep(rng)
            correct += int((pred.cpu().numpy() == data.y_train[idx]).sum())
            seen += len(idx)
            bar.update(len(idx))
            bar.set_postfix(acc=f"{correct / seen:.3f}", samples_s=f"{seen / (time.perf_counter() - t0):.0f}")
        bar.close()
        seconds = time.perf_counter() - t0
        train_seconds, trained = train_seconds + seconds, trained + n_train
        params_np = trainer.params.numpy()
        evaluator = trainer if backend == "engine" else BioGradEngine(cfg, data.n_inputs, data.n_classes, params_np,
                                                                      device=device)
        test_acc = evaluate(evaluator, data, cfg.steps, cfg.seed, epoch)
        angles = feedback_angles(params_np, cfg)
        history.append({"epoch": epoch + 1, "train_accuracy": correct / n_train, "test_accuracy": test_acc,
                        "feedback_angle_deg": angles, "lr": lr, "seconds": seconds,
                        "samples_per_s": n_train / seconds})
        runs.save_checkpoint(run_dir, params_np, {
            "algorithm": "biograd", "config": cfg.to_dict(), "data": data_spec, "limit": limit,
            "backend": backend,
            "epoch": epoch + 1, "updates": trainer.updates, "rng_state": rng.bit_generator.state,
            "history": history})
        metrics = {"test_accuracy": test_acc, "train_accuracy": correct / n_train, "epochs": epoch + 1,
                   "train_samples": n_train, "test_samples": len(data.y_test),
                   "samples_per_s": trained / train_seconds, "backend": backend, "precision": cfg.precision,
                   "rule": cfg.rule, "sleep": cfg.sleep, "feedback_angle_deg": angles, "data": data_spec,
                   "hidden": list(cfg.hidden), "seed": cfg.seed, "lr": cfg.lr, "lr_decay": cfg.lr_decay,
                   "config": cfg.to_dict()}
        runs.write_json(run_dir / "history.json", history)
        runs.write_json(run_dir / "metrics.json", metrics)
        log(f"epoch {epoch + 1}/{cfg.epochs}: train {correct / n_train:.4f}, test {test_acc:.4f}, "
            f"{n_train / seconds:.0f} samples/s, feedback angle {', '.join(f'{a:.1f}' for a in angles)} deg")
    if start_epoch >= cfg.epochs:
        metrics = runs.load_metrics(run_dir)
    return metrics
