"""On-chip forward-gradient training of a spiking MLP in Lava (``Loihi2SimCfg``, fixed point).

:class:`LavaForwardGrad` builds the network of :mod:`lavasnn.procs.perturb_process` once for a
whole training schedule (the sample order of every epoch, concatenated) and runs it epoch by
epoch: each epoch is ``N T P + ceil(N / B)`` Lava steps (T per run of a sample, P = 2 runs for
weight perturbation and 1 otherwise, one update step per batch). The weights are set when the
processes are built and change only inside them; between epochs the host reads them
(``Var.get``) for evaluation and checkpoints, and the training loss from the loss neuron.
:class:`LavaLoihi2` runs rule 'loihi2' (Lava's own LearningDense) batch by batch, each batch
``P T n + L + 1`` steps (L idle steps for the layers' synaptic delays), the host writing the
batch's directions before it.
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


class LavaLoihi2:
    """Rule 'loihi2' in Lava, same interface as :class:`LavaForwardGrad`: every weight change is made
    by Lava's own ``LearningDense`` (rule :func:`lavasnn.procs.perturb_process.perturbation_rule`,
    biases as weights from an always-on input). Weight mode, with
    :class:`~lavasnn.procs.perturb_process.WeightPerturbLIF` and ``WeightPerturbLoss``::

        stream.x_out -> dense0 -> lif0 -> dense1 -> .. -> dense(L-1) -> loss
        neurons' s_out_bap, s_out_y1..y3 -> their LearningDense;  loss.d_out -> every lif

    Global and layer-wise forward gradients, with ``ForwardGradLIF`` and ``ForwardGradLoss``, add per
    layer a plain Dense ``start{l}`` with the direction 2 q, whose output starts the tangent, and (after
    the first layer, whose input has no tangent) a LearningDense ``tangent{l}`` holding D copies of
    the layer's weights on its diagonal (kron(I_D, W): the spike tangents of every direction pass the
    same weights, and the copies learn exactly as the original, from the same factors, tags and
    rounding)::

        x -> dense(l) -> a;   x_dot -> tangent(l) -> W x_dot;   x -> start(l) -> 2 q x << start_exp

    Loihi 2's synapses cannot draw random numbers, so before each batch the host writes the
    batch's perturbation or direction into the tags (``tag_1``) and the start synapses, and the
    loss neuron's gains (the learning-rate schedule), then runs the batch
    (:func:`~lavasnn.engine.perturb_fixed.loihi2_batch_steps` steps)."""

    def __init__(self, cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: np.ndarray, target: np.ndarray,
                 orders: list[np.ndarray], updates: int = 0) -> None:
        from lava.proc.dense.process import Dense, LearningDense

        from lavasnn.procs import perturb_process as pp

        self.cfg, self.epoch_len, self.updates = cfg, len(x), updates
        self.n_epochs, self.started = len(orders), False
        self.weight_mode = cfg.mode == "weight"
        rule = pp.perturbation_rule(cfg)
        # 8-bit weights plus sign, as Lava's learning engine keeps them: with the default 8 bits Lava's
        # MIXED sign mode would drop the lowest bit of the weights a run starts from
        graded = {"num_message_bits": 24, "learning_rule": rule, "num_weight_bits": 9}
        self.stream = pp.PerturbStream(cfg=cfg, x=x, target=target, order=np.concatenate(orders), epoch_len=len(x),
                                       name="stream")
        tags, starts = self.tags()
        self.dense = [LearningDense(weights=pf.augmented(p).numpy(), tag_1=t.numpy(), weight_exp=-cfg.fmt.a_shift,
                                    name=f"dense{l}", **graded) for l, (p, t) in enumerate(zip(layers, tags))]
        self.tangent: dict = {}
        if self.weight_mode:
            self.loss = pp.WeightPerturbLoss(cfg=cfg, learning_rule=rule, gain=self.gains()[0], updates=updates,
                                             name="loss")
            neurons = [pp.WeightPerturbLIF(cfg=cfg, layer=l, shape=(n,), learning_rule=rule, name=f"lif{l}")
                       for l, n in enumerate(cfg.sizes[1:-1])]
        else:
            eye = np.eye(cfg.n_dirs, dtype=np.int64)
            # no copy for layer 0: the data's tangents are 0 (an unconnected InPort receives zeros)
            self.tangent = {l: LearningDense(weights=np.kron(eye, pf.augmented(p).numpy()), tag_1=np.kron(eye, t.numpy()),
                                             weight_exp=-cfg.fmt.a_shift, name=f"tangent{l}", **graded)
                            for l, (p, t) in enumerate(zip(layers, tags)) if l > 0}
            self.start = [Dense(weights=w, weight_exp=pf.loihi2_start_exp(cfg.fmt), num_message_bits=24,
                                name=f"start{l}") for l, w in enumerate(starts)]
            self.loss = pp.ForwardGradLoss(cfg=cfg, learning_rule=rule, gain=np.array(self.gains()), updates=updates,
                                           name="loss")
            neurons = [pp.ForwardGradLIF(cfg=cfg, layer=l, shape=(n,), learning_rule=rule, updates=updates,
                                         name=f"lif{l}")
                       for l, n in enumerate(cfg.sizes[1:-1])]
        self.stream.x_out.connect(self.dense[0].s_in)
        if not self.weight_mode:
            self.stream.x_out.connect(self.start[0].s_in)
        for l, post in enumerate([*neurons, self.loss]):
            self.dense[l].a_out.connect(post.y_in if post is self.loss else post.a_in)
            self._connect_factors(post, self.dense[l], "s_out_")
            self.stream.ctrl_out.connect(post.ctrl_in)
            if not self.weight_mode:
                self.start[l].a_out.connect(post.start_in)
            if l in self.tangent:
                self.tangent[l].a_out.connect(post.ydot_in if post is self.loss else post.adot_in)
                self._connect_factors(post, self.tangent[l], "tan_")
        for l, lif in enumerate(neurons):
            lif.s_out.connect(self.dense[l + 1].s_in)
            self.loss.d_out.connect(lif.d_in)
            if not self.weight_mode:
                lif.s_out.connect(self.start[l + 1].s_in)
                lif.sdot_out.connect(self.tangent[l + 1].s_in)
        self.stream.target_out.connect(self.loss.target_in)

    @staticmethod
    def _connect_factors(post, dense, prefix: str) -> None:
        for factor in ("bap", "y1", "y2", "y3"):
            getattr(post, prefix + factor).connect(getattr(dense, "s_in_" + factor))

    def tags(self) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Every layer's tag for the current update and, in the forward-gradient modes, the start
        synapses' weights (D n_out, n_in + 1): 2 q in the rows of the directions that move the layer."""
        cfg, tags, starts = self.cfg, [], []
        for l, (n_in, n_out) in enumerate(zip(cfg.sizes[:-1], cfg.sizes[1:])):
            u = pf.direction(cfg, l, self.updates, (n_out, n_in))
            tags.append(pf.loihi2_tag(u))
            if self.weight_mode:
                continue
            q = pf.augmented(pf.loihi2_direction(u))
            start = np.zeros((cfg.n_dirs, n_out, n_in + 1), dtype=np.int64)
            start[cfg.directions_of(l)] = 2 * q.numpy()
            starts.append(start.reshape(-1, n_in + 1))
        return tags, starts

    def gains(self) -> list[tuple[int, int]]:
        """The loss neuron's (g, shift) per third factor for the current update."""
        if self.weight_mode:
            return [pf.loihi2_gain(self.cfg, self.updates)]
        layer_of = {k: l for l in range(self.cfg.n_layers) for k in self.cfg.directions_of(l)}
        return [pf.loihi2_gain(self.cfg, self.updates, layer_of[k]) for k in range(self.cfg.n_dirs)]

    def write_batch(self) -> None:
        """The host's part before a batch: the tags, start synapses and gains of the current update."""
        tags, starts = self.tags()
        eye = np.eye(self.cfg.n_dirs, dtype=np.int64)
        for l, tag in enumerate(tags):
            self.dense[l].tag_1.set(tag.numpy())
            if not self.weight_mode:
                self.start[l].weights.set(starts[l])
            if l in self.tangent:
                self.tangent[l].tag_1.set(np.kron(eye, tag.numpy()))
        self.loss.gain.set(np.array(self.gains()).reshape(self.loss.gain.shape))

    def run(self, on_epoch) -> None:
        """Run every epoch batch by batch; after each epoch call ``on_epoch(epoch, layers, train_loss, updates)``."""
        from lava.magma.core.run_conditions import RunSteps

        run_cfg = run_config("sim", "fixed")
        last_e2, last_n = 0, 0
        with lava_session(self.stream):
            for epoch in range(self.n_epochs):
                for n in batch_sizes(self.epoch_len, self.cfg.batch):
                    if self.started:  # the first batch's values are the processes' initial ones
                        self.write_batch()
                    self.started = True
                    self.stream.run(condition=RunSteps(num_steps=pf.loihi2_batch_steps(self.cfg, n)), run_cfg=run_cfg)
                    self.updates += 1
                sum_e2, n = int(self.loss.sum_e2.get()[0]), int(self.loss.samples.get()[0])
                loss = pf.mse_real(sum_e2 - last_e2, n - last_n, self.cfg)
                last_e2, last_n = sum_e2, n
                on_epoch(epoch, self.layers(), loss, self.updates)

    def layers(self) -> list[pf.LayerParams]:
        return [pf.split_augmented(torch.as_tensor(np.asarray(d.weights.get()), dtype=torch.int64)) for d in self.dense]

    def copy_mismatches(self) -> int:
        """Forward-gradient modes: entries where the tangent synapses differ from kron(I_D, W) (must be 0;
        call it while the run is live, e.g. from ``on_epoch``)."""
        if self.weight_mode:
            return 0
        eye = np.eye(self.cfg.n_dirs, dtype=np.int64)
        return sum(int((np.asarray(t.weights.get()) != np.kron(eye, np.asarray(self.dense[l].weights.get()))).sum())
                   for l, t in self.tangent.items())


def lava_trainer(cfg: pf.FixedNetConfig, layers: list[pf.LayerParams], x: np.ndarray, target: np.ndarray,
                 orders: list[np.ndarray], updates: int = 0):
    """The Lava trainer of ``cfg``'s rule: :class:`LavaLoihi2` or :class:`LavaForwardGrad`."""
    trainer = LavaLoihi2 if cfg.rule == "loihi2" else LavaForwardGrad
    return trainer(cfg, layers, x, target, orders, updates)
