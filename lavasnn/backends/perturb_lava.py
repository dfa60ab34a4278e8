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
    return n_samples * cfg.steps * cfg.passes + -(-n_samples // cfg.batch)


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
