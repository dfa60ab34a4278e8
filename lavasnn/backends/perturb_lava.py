"""On-chip forward-gradient training of a spiking MLP in Lava (``Loihi2SimCfg``, fixed point).

:class:`LavaForwardGrad` builds the network of :mod:`lavasnn.procs.perturb_process` once for a
whole training schedule (the sample order of every epoch, concatenated) and runs it epoch by
epoch: each epoch is ``N T P + ceil(N / B)`` Lava steps (T per run of a sample, P = 2 runs for
weight perturbation and 1 otherwise, one update step per batch). The weights are set when the processes are built and change only inside them; between
epochs the host reads them (``Var.get``) for evaluation and checkpoints, and the training loss
from the loss neuron.
"""

from __future__ import annotations

import numpy as np
import torch

from lavasnn.backends import run_config
from lavasnn.backends.session import lava_session
from lavasnn.engine import perturb_fixed as pf


def steps_per_epoch(cfg: pf.FixedNetConfig, n_samples: int) -> int:
    batches = -(-n_samples // cfg.batch)
    if cfg.rule == "loihi2":  # each batch also waits n_layers steps for its last sample
        return n_samples * cfg.steps * cfg.passes + batches * (cfg.n_layers + 1)
    return n_samples * cfg.steps * cfg.passes + batches


def batch_sizes(n_samples: int, batch: int) -> list[int]:
    """The batches of one epoch, as the stream forms them (the last one may be smaller)."""
    return [min(batch, n_samples - i) for i in range(0, n_samples, batch)]


class LavaForwardGrad:
    """Trains ``layers`` on (x, target) in the order ``orders`` (one permutation per epoch)."""

    def __init__(self, cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: np.ndarray, target: np.ndarray,
                 orders: list[np.ndarray], updates: int = 0) -> None:
        from lavasnn.procs.perturb_process import PerturbDense, PerturbLIF, PerturbLoss, PerturbStream

        self.cfg, self.epoch_len, self.epochs_done = cfg, len(x), 0
        self.n_epochs = len(orders)
        self.stream = PerturbStream(cfg=cfg, x=x, target=target, order=np.concatenate(orders), epoch_len=len(x),
                                    name="stream")
        self.loss = PerturbLoss(cfg=cfg, name="loss")
        self.dense = [PerturbDense(cfg=cfg, layer=l, weights=p.weights.numpy(), bias=p.bias.numpy(), updates=updates,
                                   name=f"dense{l}") for l, p in enumerate(layers)]
        neurons = [PerturbLIF(cfg=cfg, layer=l, shape=(n,), updates=updates, name=f"lif{l}")
                   for l, n in enumerate(cfg.sizes[1:-1])]
        self.stream.x_out.connect(self.dense[0].s_in)
        for dense, lif in zip(self.dense[:-1], neurons):
            dense.a_out.connect(lif.a_in)
            dense.adot_out.connect(lif.adot_in)
            self.stream.ctrl_out.connect(lif.ctrl_in)
        for lif, dense in zip(neurons, self.dense[1:]):
            lif.s_out.connect(dense.s_in)
            lif.sdot_out.connect(dense.sdot_in)
        for dense in self.dense:
            self.stream.ctrl_out.connect(dense.ctrl_in)
            self.loss.d_out.connect(dense.d_in)
        self.dense[-1].a_out.connect(self.loss.y_in)
        self.dense[-1].adot_out.connect(self.loss.ydot_in)
        self.stream.target_out.connect(self.loss.target_in)
        self.stream.ctrl_out.connect(self.loss.ctrl_in)

    def run(self, on_epoch) -> None:
        """Run every epoch; after each, call ``on_epoch(epoch, layers, train_loss, updates)``."""
        from lava.magma.core.run_conditions import RunSteps

        cfg = run_config("sim", "fixed")
        last_e2, last_n = 0, 0
        with lava_session(self.stream):
            for epoch in range(self.n_epochs):
                self.stream.run(condition=RunSteps(num_steps=steps_per_epoch(self.cfg, self.epoch_len)), run_cfg=cfg)
                sum_e2, n = int(self.loss.sum_e2.get()[0]), int(self.loss.samples.get()[0])
                loss = pf.mse_real(sum_e2 - last_e2, n - last_n, self.cfg)
                last_e2, last_n = sum_e2, n
                on_epoch(epoch, self.layers(), loss, int(self.dense[0].updates.get()[0]))

    def layers(self) -> list[pf.LayerParams]:
        return [pf.LayerParams(torch.as_tensor(np.asarray(d.weights.get()), dtype=torch.int64),
                               torch.as_tensor(np.asarray(d.bias.get()), dtype=torch.int64)) for d in self.dense]


class LavaWeightPerturbLoihi2:
    """Weight perturbation in Loihi 2's learning-engine form (rule 'loihi2'), same interface as
    :class:`LavaForwardGrad`. The synapses are Lava's own ``LearningDense`` (rule
    :func:`lavasnn.procs.perturb_process.weight_perturbation_rule`, biases as weights from an
    always-on input), the neurons :class:`~lavasnn.procs.perturb_process.WeightPerturbLIF` and
    :class:`~lavasnn.procs.perturb_process.WeightPerturbLoss`::

        stream.x_out -> dense0 -> lif0 -> dense1 -> .. -> dense(L-1) -> loss
        neurons' s_out_bap, s_out_y1..y3 -> their LearningDense;  loss.d_out -> every lif

    Loihi 2's synapses cannot draw random numbers, so the host writes each batch's perturbation
    into the tags (``tag_1``) and the loss neuron's gain (the learning-rate schedule) before it
    runs the batch (:func:`~lavasnn.engine.perturb_fixed.loihi2_batch_steps` steps); the weights
    change only in the LearningDense's learning phase."""

    def __init__(self, cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: np.ndarray, target: np.ndarray,
                 orders: list[np.ndarray], updates: int = 0) -> None:
        from lava.proc.dense.process import LearningDense

        from lavasnn.procs.perturb_process import (PerturbStream, WeightPerturbLIF, WeightPerturbLoss,
                                                   weight_perturbation_rule)

        self.cfg, self.epoch_len, self.updates = cfg, len(x), updates
        self.n_epochs = len(orders)
        rule = weight_perturbation_rule(cfg)
        self.stream = PerturbStream(cfg=cfg, x=x, target=target, order=np.concatenate(orders), epoch_len=len(x),
                                    name="stream")
        self.loss = WeightPerturbLoss(cfg=cfg, learning_rule=rule, gain=pf.loihi2_gain(cfg, updates), name="loss")
        self.started = False
        self.dense = [LearningDense(weights=pf.augmented(p).numpy(), tag_1=t.numpy(), learning_rule=rule,
                                    num_message_bits=cfg.fmt.in_frac + 2, weight_exp=-cfg.fmt.a_shift,
                                    name=f"dense{l}")
                      for l, (p, t) in enumerate(zip(layers, self.tags()))]
        neurons = [WeightPerturbLIF(cfg=cfg, layer=l, shape=(n,), learning_rule=rule, name=f"lif{l}")
                   for l, n in enumerate(cfg.sizes[1:-1])]
        self.stream.x_out.connect(self.dense[0].s_in)
        for l, post in enumerate([*neurons, self.loss]):
            self.dense[l].a_out.connect(post.y_in if post is self.loss else post.a_in)
            post.s_out_bap.connect(self.dense[l].s_in_bap)
            post.s_out_y1.connect(self.dense[l].s_in_y1)
            post.s_out_y2.connect(self.dense[l].s_in_y2)
            post.s_out_y3.connect(self.dense[l].s_in_y3)
            self.stream.ctrl_out.connect(post.ctrl_in)
        for lif, dense in zip(neurons, self.dense[1:]):
            lif.s_out.connect(dense.s_in)
            self.loss.d_out.connect(lif.d_in)
        self.stream.target_out.connect(self.loss.target_in)

    def tags(self) -> list[torch.Tensor]:
        """Every layer's tag for the current update (the engine's directions, :func:`pf.weight_tag`)."""
        return [pf.weight_tag(pf.direction(self.cfg, l, self.updates, (n_out, n_in)), self.cfg.fmt)
                for l, (n_in, n_out) in enumerate(zip(self.cfg.sizes[:-1], self.cfg.sizes[1:]))]

    def run(self, on_epoch) -> None:
        """Run every epoch batch by batch; after each epoch call ``on_epoch(epoch, layers, train_loss, updates)``."""
        from lava.magma.core.run_conditions import RunSteps

        run_cfg = run_config("sim", "fixed")
        last_e2, last_n = 0, 0
        with lava_session(self.stream):
            for epoch in range(self.n_epochs):
                for n in batch_sizes(self.epoch_len, self.cfg.batch):
                    if self.started:  # the first batch's tags and gain are the processes' initial values
                        for dense, tag in zip(self.dense, self.tags()):
                            dense.tag_1.set(tag.numpy())
                        self.loss.gain.set(np.array(pf.loihi2_gain(self.cfg, self.updates)))
                    self.started = True
                    self.stream.run(condition=RunSteps(num_steps=pf.loihi2_batch_steps(self.cfg, n)), run_cfg=run_cfg)
                    self.updates += 1
                sum_e2, n = int(self.loss.sum_e2.get()[0]), int(self.loss.samples.get()[0])
                loss = pf.mse_real(sum_e2 - last_e2, n - last_n, self.cfg)
                last_e2, last_n = sum_e2, n
                on_epoch(epoch, self.layers(), loss, self.updates)

    def layers(self) -> list[pf.LayerParams]:
        return [pf.split_augmented(torch.as_tensor(np.asarray(d.weights.get()), dtype=torch.int64)) for d in self.dense]


def lava_trainer(cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: np.ndarray, target: np.ndarray,
                 orders: list[np.ndarray], updates: int = 0):
    """The Lava trainer of ``cfg``'s rule: :class:`LavaWeightPerturbLoihi2` or :class:`LavaForwardGrad`."""
    trainer = LavaWeightPerturbLoihi2 if cfg.rule == "loihi2" else LavaForwardGrad
    return trainer(cfg, layers, x, target, orders, updates)
