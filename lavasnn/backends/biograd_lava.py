"""BioGrad trained on chip, in Lava's simulator: the weights live and learn in Lava processes.

The network (:mod:`lavasnn.procs.process`)::

    ControlStream --spikes--> BioGradDense_0 --> MC-LIF_0 --> BioGradDense_1 --> ... --> MC-LIF_L
         |  ctrl (every process), label --> BioGradError <-- output spikes --> CountRecorder
         |  noise (sleep) --> BioGradDense_{l+1}, FeedbackDense_l
    BioGradError --> ErrorPair --> FeedbackDense_l (B_l) --> MC-LIF_l dendrites
                               --> FeedbackDense (identity) --> MC-LIF_L dendrites

The host only streams data in (spike trains, labels, sleep noise and the control vector that
marks sample and batch ends, written to chunk files) and reads the output spike counts back
(a memory-mapped file). Weights, biases and feedback weights change only inside the processes'
learning phases; they are read with ``Var.get`` only for checkpoints (Lava moves them one
element at a time: about 20,000 numbers per second). The timing and arithmetic equal the
engine's (:class:`lavasnn.engine.biograd.BioGradEngine`), so both end with the same integer
weights (``lavasnn crosscheck biograd``). The same random draws (data encoding, sleep noise)
are made in the same order by the host for both backends.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from lavasnn.backends import run_config
from lavasnn.backends.session import LavaSession
from lavasnn.errors import UserError
from lavasnn.learning import biograd as bg
from lavasnn.procs.process import (CTRL_BATCH, CTRL_BATCH_END, CTRL_PHASE, CTRL_SAMPLE_END, CTRL_SAMPLE_START,
                                   CTRL_SIZE, CTRL_STEP, PHASE_INFER, PHASE_TRAIN)


class _LavaParams:
    """Reads the learned parameters out of the processes (for checkpoints and evaluation)."""

    def __init__(self, trainer: "LavaBioGrad") -> None:
        self._t = trainer

    def numpy(self) -> dict[str, list[np.ndarray]]:
        """Weights, feedback weights and biases; a bias change computed at the last batch end
        is still in flight to its neuron (it arrives with the next step) and is added here."""
        t = self._t
        cast = (lambda a: np.rint(a).astype(np.int64)) if t.fixed else (lambda a: np.asarray(a, dtype=np.float64))
        biases = []
        for n, d in zip(t.neurons, t.dense):
            bias, pending = torch.as_tensor(cast(n.bias_mant.get())), torch.as_tensor(cast(d.bias_buff.get()))
            biases.append((bg.apply_bias_fixed(bias, pending) if t.fixed else bias + pending).numpy())
        return {"weights": [cast(d.weights.get()) for d in t.dense], "biases": biases,
                "feedback": [cast(f.weights.get()) for f in t.feedback]}


class LavaBioGrad:
    """On-chip BioGrad in ``Loihi2SimCfg``; use as a context manager (the runtime always stops)."""

    def __init__(self, cfg: bg.BioGradConfig, n_in: int, n_out: int, params: dict[str, list[np.ndarray]],
                 updates: int = 0, workdir: str | Path | None = None, capacity: int | None = None) -> None:
        from lavasnn.procs.process import (BioGradDense, BioGradError, ControlStream, CountRecorder, ErrorPair,
                                           FeedbackDense, MultiCompartmentLIF)

        self.cfg, self.n_in, self.n_out = cfg, n_in, n_out
        self.fixed = cfg.precision == "fixed"
        self.updates = updates
        self._tmp = tempfile.TemporaryDirectory(prefix="lavasnn-biograd-") if workdir is None else None
        self.folder = Path(workdir or self._tmp.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._chunks = 0
        self._recorded = 0
        self.capacity = capacity or max(cfg.batch, cfg.sleep_batch, 256)
        self.counts_path = self.folder / "counts.npy"
        np.save(self.counts_path, np.zeros((self.capacity, n_out), dtype=np.int32))
        self._cfg_run = run_config("sim", cfg.precision)

        n = bg.neuron_params(cfg)
        hidden = list(cfg.hidden)
        offsets = np.concatenate([[0], np.cumsum(hidden)]).astype(int)
        self.noise_size = int(offsets[-1])
        self.offsets = offsets
        self.stream = ControlStream(folder=str(self.folder), n_in=n_in, n_classes=n_out,
                                    noise_size=self.noise_size, name="stream")
        self.dense, self.neurons, self.feedback = [], [], []
        port = self.stream.spikes
        for l, (w, b) in enumerate(zip(params["weights"], params["biases"])):
            dense = BioGradDense(weights=np.asarray(w), index=l, trace_decay=n["trace_decay"], lr=cfg.lr,
                                 feedback_steps=cfg.feedback_steps, seed=cfg.seed, noise_size=self.noise_size,
                                 noise_offset=int(offsets[l - 1]) if l > 0 else 0, updates=updates, name=f"dense{l}")
            neuron = MultiCompartmentLIF(shape=(len(b),), du=n["du"], dv=n["dv"], dd=0, vth=n["vth"],
                                         bias_mant=np.asarray(b), bias_exp=0, soft_reset=False,
                                         grad_win=n["grad_win"], grad_amp=n["grad_amp"],
                                         v_frac_bits=n["v_frac_bits"], name=f"neuron{l}")
            port.connect(dense.s_in)
            dense.a_out.connect(neuron.a_in)
            dense.bias_out.connect(neuron.bias_in)
            neuron.learn_out.connect(dense.post_in)
            port = neuron.s_out
            self.dense.append(dense)
            self.neurons.append(neuron)
        self.stream.ctrl.connect([p.ctrl_in for p in self.dense + self.neurons])
        self.stream.noise.connect([d.noise_in for d in self.dense])
        output = self.neurons[-1]
        error = BioGradError(n_classes=n_out, error_start=cfg.error_start, error_scale=cfg.error_scale, name="error")
        pair = ErrorPair(shape=(n_out,), vth=n["error_vth"], name="error_pair")
        recorder = CountRecorder(path=str(self.counts_path), n=n_out, name="recorder")
        self.stream.label.connect(error.label_in)
        self.stream.ctrl.connect([error.ctrl_in, pair.ctrl_in, recorder.ctrl_in])
        error.err_out.connect(pair.a_in)
        targets = [error.s_in, recorder.s_in]
        for l, B in enumerate(params["feedback"]):
            fb = FeedbackDense(weights=np.asarray(B), learn=cfg.sleep, index=l, lr=cfg.sleep_lr, power=cfg.oja_power,
                               seed=cfg.seed, noise_size=self.noise_size, noise_offset=int(offsets[l]),
                               v_frac_bits=cfg.v_frac_bits, updates=updates, name=f"feedback{l}")
            self.feedback.append(fb)
            targets.append(fb.o_in)
        identity = FeedbackDense(weights=n["identity"] * np.eye(n_out), weight_exp=n["identity_exp"],
                                 noise_size=self.noise_size, name="feedback_out")
        fbs = self.feedback + [identity]
        pair.s_pos.connect([fb.s_pos for fb in fbs])
        pair.s_neg.connect([fb.s_neg for fb in fbs])
        self.stream.ctrl.connect([fb.ctrl_in for fb in fbs])
        self.stream.noise.connect([fb.noise_in for fb in fbs])
        for fb, neuron in zip(fbs, self.neurons[:len(self.feedback)] + [output]):
            fb.a_out.connect(neuron.d_in)
        output.s_out.connect(targets + [identity.o_in])
        self.params = _LavaParams(self)
        self._session = LavaSession(self.stream)  # last: a failed constructor leaves no open session

    # ---------------------------------------------------------------------------------------
    def __enter__(self) -> "LavaBioGrad":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        """Stop the runtime (``failed``: after an exception or Ctrl-C) and remove the temporary folder."""
        try:
            self._session.close(failed)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    # ---------------------------------------------------------------------------------------
    def _run_chunk(self, spikes: np.ndarray, labels: np.ndarray | None, noise: np.ndarray | None,
                   phase: int, learn: bool) -> np.ndarray:
        """Stream B samples (spikes (T, B, n_in)) through the network; return their output counts.

        ``labels`` (B,) for training, ``noise`` (T, B, noise_size) for sleep; ``learn`` marks the
        last step as a batch end, where the learning processes apply their updates.
        """
        from lava.magma.core.run_conditions import RunSteps

        T, B = spikes.shape[:2]
        if B > self.capacity:
            raise UserError(f"a chunk of {B} samples exceeds the recorder's capacity {self.capacity}")
        n = T * B
        ctrl = np.zeros((n, CTRL_SIZE), dtype=np.int32)
        ctrl[::T, CTRL_SAMPLE_START] = 1
        ctrl[T - 1::T, CTRL_SAMPLE_END] = 1
        ctrl[:, CTRL_STEP] = np.tile(np.arange(T), B)
        ctrl[:, CTRL_PHASE] = phase
        ctrl[:, CTRL_BATCH] = B
        ctrl[-1, CTRL_BATCH_END] = int(learn)
        onehot = np.zeros((n, self.n_out), dtype=np.int32)
        if labels is not None:
            onehot[np.arange(n), np.repeat(np.asarray(labels), T)] = 1
        sample_major = lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1).reshape(n, -1))  # noqa: E731
        noise_rows = np.zeros((n, self.noise_size), dtype=np.int8) if noise is None else sample_major(noise)
        path = self.folder / f"chunk_{self._chunks:06d}.npz"
        tmp = self.folder / f".chunk_{self._chunks:06d}.tmp.npz"
        np.savez(tmp, spikes=sample_major(spikes).astype(np.int8), ctrl=ctrl, label=onehot,
                 noise=noise_rows.astype(np.int8))
        os.replace(tmp, path)
        self._chunks += 1
        self.stream.run(condition=RunSteps(num_steps=n), run_cfg=self._cfg_run)
        path.unlink()
        rows = (self._recorded + np.arange(B)) % self.capacity
        self._recorded += B
        return np.load(self.counts_path, mmap_mode="r")[rows].copy()

    def train_batch(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One BioGrad batch on chip; returns the predictions (argmax of output counts)."""
        counts = self._run_chunk(np.asarray(x), np.asarray(labels), None, PHASE_TRAIN, learn=True)
        self.updates += 1
        return torch.as_tensor(counts.argmax(axis=1))

    def sleep(self, rng: np.random.Generator) -> None:
        """The sleep phase, drawing the same noise as :meth:`BioGradEngine.sleep`."""
        cfg = self.cfg
        for l in reversed(range(len(self.feedback))):
            n_l = len(self.neurons[l].bias_mant.init)
            rate = rng.random()
            shape = (cfg.sleep_steps, cfg.sleep_batch, n_l)
            z = (rng.random(shape) < rate).astype(np.int8) - (rng.random(shape) < rate).astype(np.int8)
            noise = np.zeros((cfg.sleep_steps, cfg.sleep_batch, self.noise_size), dtype=np.int8)
            noise[:, :, self.offsets[l]:self.offsets[l] + n_l] = z
            silent = np.zeros((cfg.sleep_steps, cfg.sleep_batch, self.n_in), dtype=np.int8)
            self._run_chunk(silent, None, noise, phase=l + 1, learn=True)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        counts = self._run_chunk(np.asarray(x), None, None, PHASE_INFER, learn=False)
        return torch.as_tensor(counts.argmax(axis=1))
