"""Fixed-point ProcessModels of :mod:`lavasnn.procs.perturb_process`.

Each model wraps its Vars as torch tensors and calls the functions of
:mod:`lavasnn.engine.perturb_fixed` that the batched engine calls, on one sample. Every
process receives the control vector first; the loss neuron sends its third factors before it
waits for the readout, so the loop loss -> dense -> .. -> loss closes within one step.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavasnn.engine import perturb_fixed as pf
from lavasnn.procs.perturb_process import (PCTRL_ACTIVE, PCTRL_PERTURBED, PCTRL_SAMPLE_END, PCTRL_SAMPLE_START, PCTRL_SIZE,
                                           PCTRL_UPDATE, PerturbDense, PerturbLIF, PerturbLoss, PerturbStream,
                                           ForwardGradLIF, ForwardGradLoss, WeightPerturbLIF, WeightPerturbLoss)

INT = np.int64


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x).astype(INT))


def _port_in(precision: int = 64) -> LavaPyType:
    return LavaPyType(PyInPort.VEC_DENSE, INT, precision=precision)


def _port_out(precision: int = 64) -> LavaPyType:
    return LavaPyType(PyOutPort.VEC_DENSE, INT, precision=precision)


def _var(precision: int = 64) -> LavaPyType:
    return LavaPyType(np.ndarray, INT, precision=precision)


@implements(proc=PerturbStream, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPerturbStreamFixed(PyLoihiProcessModel):
    x_out: PyOutPort = _port_out(9)
    target_out: PyOutPort = _port_out()
    ctrl_out: PyOutPort = _port_out(1)
    x: np.ndarray = _var(9)
    target: np.ndarray = _var()
    order: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.epoch_len = proc_params["epoch_len"]
        # sample k of order, its pass (weight mode: 0 with w, 1 with w + sigma u; not `run`, which
        # is the process model's loop), step t of the pass, samples in the batch
        self.k = self.pass_index = self.t = self.in_batch = 0
        self.update_next = False
        # rule 'loihi2': idle steps before an update (the layers' synaptic delays) and the bias input
        self.learning_dense = self.cfg.rule == "loihi2"
        self.drain = self.cfg.n_layers if self.learning_dense else 0
        self.idle = 0

    def run_spk(self) -> None:
        ctrl = np.zeros(PCTRL_SIZE, dtype=INT)
        x, target = np.zeros(self.x_out.shape[0], dtype=INT), np.zeros(self.target.shape[1], dtype=INT)
        if self.update_next and self.idle < self.drain:
            self.idle += 1
        elif self.update_next:
            ctrl[PCTRL_UPDATE] = 1
            self.update_next, self.idle = False, 0
        elif self.k < len(self.order):
            i = self.order[self.k]
            x[:self.x.shape[1]], target = self.x[i], self.target[i]
            if self.learning_dense:
                x[-1] = self.cfg.fmt.one
            ctrl[PCTRL_ACTIVE] = 1
            ctrl[PCTRL_SAMPLE_START] = self.t == 0
            ctrl[PCTRL_SAMPLE_END] = self.t == self.cfg.steps - 1
            ctrl[PCTRL_PERTURBED] = self.pass_index == 1
            self.t += 1
            if self.t == self.cfg.steps:
                self.t, self.pass_index = 0, self.pass_index + 1
            if self.pass_index == self.cfg.passes:
                self.pass_index, self.k, self.in_batch = 0, self.k + 1, self.in_batch + 1
                if self.in_batch == self.cfg.batch or self.k % self.epoch_len == 0:
                    self.in_batch, self.update_next = 0, True
        self.x_out.send(x)
        self.target_out.send(target)
        self.ctrl_out.send(ctrl)


@implements(proc=PerturbDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPerturbDenseFixed(PyLoihiProcessModel):
    s_in: PyInPort = _port_in(9)
    sdot_in: PyInPort = _port_in()
    ctrl_in: PyInPort = _port_in(1)
    d_in: PyInPort = _port_in(24)
    a_out: PyOutPort = _port_out(24)
    adot_out: PyOutPort = _port_out()
    weights: np.ndarray = _var(9)
    bias: np.ndarray = _var(9)
    updates: np.ndarray = _var()
    elig_w: np.ndarray = _var()
    elig_b: np.ndarray = _var()
    grad_w: np.ndarray = _var()
    grad_b: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.layer: int = proc_params["layer"]
        self.ks = self.cfg.directions_of(self.layer)
        self._u: tuple[int, list[pf.LayerParams]] | None = None
        self._noise: tuple[int, list[torch.Tensor]] | None = None
        # activity mode's noise keys (the sample's slot in its batch, the step in the sample) and
        # whether a sample ended in the previous step (its d arrives now)
        self.slot = self.t = 0
        self.sample_ended = False
        self.d: list[int] = []  # this layer's third factors (one per draw), as received in the update step
        self.update_now = False

    def direction(self) -> list[pf.LayerParams]:
        """u of every draw for the current update count, regenerated once per batch."""
        updates = int(self.updates[0])
        if self._u is None or self._u[0] != updates:
            self._u = (updates, [pf.direction(self.cfg, self.layer, updates, self.weights.shape, j)
                                 for j in range(self.cfg.directions)])
        return self._u[1]

    def noise(self) -> list[torch.Tensor]:
        """Activity mode: this step's xi (n_out,) of the layer's neurons, one per draw, drawn once per batch."""
        updates = int(self.updates[0])
        if self._noise is None or self._noise[0] != updates:
            self._noise = (updates, [pf.node_noise(self.cfg, self.layer, updates, j) for j in range(self.cfg.directions)])
        return [xi[self.t % len(xi), self.slot] for xi in self._noise[1]]

    def run_spk(self) -> None:
        ctrl = self.ctrl_in.recv()
        d = [int(v) for v in self.d_in.recv()[self.ks]]
        activity = self.cfg.mode == "activity"
        if activity and self.sample_ended:
            self.grad_w[:] = self.grad_w + np.tensordot(d, self.elig_w, axes=1)
            self.grad_b[:] = self.grad_b + np.tensordot(d, self.elig_b, axes=1)
            self.elig_w[:] = 0
            self.elig_b[:] = 0
            self.sample_ended = False
        self.update_now, self.d = bool(ctrl[PCTRL_UPDATE]), d
        if ctrl[PCTRL_SAMPLE_START]:
            self.t = 0
        x, x_dot = _t(self.s_in.recv()), _t(self.sdot_in.recv())
        if self.update_now:  # no sample runs in the update step; the weights change in its learning phase
            self.a_out.send(np.zeros(self.a_out.shape, dtype=INT))
            self.adot_out.send(np.zeros(self.adot_out.shape, dtype=INT))
            return
        layer = pf.LayerParams(_t(self.weights), _t(self.bias))
        if ctrl[PCTRL_PERTURBED]:
            layer = pf.perturbed_layer(layer, self.direction()[0], self.cfg.fmt)
        if self.cfg.mode == "weight":
            start = torch.zeros(self.adot_out.shape, dtype=torch.int64)
        elif activity:
            xis = self.noise()
            start = self.cfg.tangent_start(self.layer, [pf.node_tangent(xi, self.cfg.fmt) for xi in xis])
            for j, xi in enumerate(xis):
                elig = pf.eligibility(xi, x, self.cfg.fmt)
                self.elig_w[j] = self.elig_w[j] + elig.weights.numpy()
                self.elig_b[j] = self.elig_b[j] + elig.bias.numpy()
        else:
            start = self.cfg.tangent_start(self.layer, [pf.weight_tangent(u, x, self.cfg.fmt) for u in self.direction()])
        a, a_dot = pf.dense_step(layer, start, x, x_dot, self.cfg.fmt)
        self.t += 1
        if ctrl[PCTRL_SAMPLE_END]:
            self.slot += 1
            self.sample_ended = True
        self.a_out.send(a.numpy())
        self.adot_out.send(a_dot.numpy())

    def lrn_guard(self) -> bool:
        return self.update_now

    def run_lrn(self) -> None:
        """The update step's learning phase: ``w <- clip(w + SR(-c d u))`` (K draws: the sum of
        their ``d_j u_j``), or in activity mode ``w <- clip(w + SR(-c G))`` with the batch's summed
        eligibility G (then cleared)."""
        layer = pf.LayerParams(_t(self.weights), _t(self.bias))
        if self.cfg.mode == "activity":
            new = pf.update_layer(layer, pf.LayerParams(_t(self.grad_w), _t(self.grad_b)), 1, self.cfg, self.layer,
                                  int(self.updates[0]))
            self.grad_w[:] = 0
            self.grad_b[:] = 0
            self.slot = 0
        else:
            new = pf.update_layer(layer, *pf.draw_terms(self.direction(), self.d), self.cfg, self.layer,
                                  int(self.updates[0]))
        self.weights[:] = new.weights.numpy()
        self.bias[:] = new.bias.numpy()
        self.updates[:] = self.updates + 1


class _SpikeDerivative:
    """phi of a hidden layer's neurons for :func:`lavasnn.engine.perturb_fixed.lif_step`: the
    surrogate table, or Stein's estimate from the noise of update ``updates`` at step ``t`` and
    sample slot ``slot`` (drawn once per update)."""

    def __init__(self, cfg: pf.FixedNetConfig, layer: int) -> None:
        self.cfg, self.layer, self.table = cfg, layer, pf.surrogate_table(cfg)
        self._noise: tuple[int, torch.Tensor] | None = None

    def __call__(self, updates: int, t: int, slot: int):
        if self.cfg.grad == "surrogate":
            return pf.spike_derivative(self.cfg, self.table)
        if self._noise is None or self._noise[0] != updates:
            self._noise = (updates, pf.stein_noise(self.cfg, self.layer, updates))
        return pf.spike_derivative(self.cfg, self.table, self._noise[1][t, slot])


@implements(proc=PerturbLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPerturbLIFFixed(PyLoihiProcessModel):
    a_in: PyInPort = _port_in(24)
    adot_in: PyInPort = _port_in()
    ctrl_in: PyInPort = _port_in(1)
    s_out: PyOutPort = _port_out(8)
    sdot_out: PyOutPort = _port_out()
    v: np.ndarray = _var(24)
    v_dot: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.layer: int = proc_params["layer"]
        self.phi = _SpikeDerivative(self.cfg, self.layer)
        # Stein's noise keys: updates so far, the sample's slot in its batch, the step in the sample
        self.updates, self.slot, self.t = proc_params["updates"], 0, 0

    def derivative(self):
        # t = T in an update step, whose output is unused
        return self.phi(self.updates, self.t % self.cfg.steps, self.slot)

    def run_spk(self) -> None:
        ctrl = self.ctrl_in.recv()
        if ctrl[PCTRL_UPDATE]:
            self.updates, self.slot = self.updates + 1, 0
        if ctrl[PCTRL_SAMPLE_START]:
            self.v[:] = 0
            self.v_dot[:] = 0
            self.t = 0
        a, a_dot = _t(self.a_in.recv()), _t(self.adot_in.recv())
        s, s_dot, new = pf.lif_step(a, a_dot, pf.NeuronState(_t(self.v), _t(self.v_dot)), self.cfg, self.derivative())
        self.t += 1
        if ctrl[PCTRL_SAMPLE_END]:
            self.slot += 1
        self.v[:] = new.v.numpy()
        self.v_dot[:] = new.v_dot.numpy()
        self.s_out.send(s.numpy())
        self.sdot_out.send(s_dot.numpy())


@implements(proc=PerturbLoss, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPerturbLossFixed(PyLoihiProcessModel):
    y_in: PyInPort = _port_in(24)
    ydot_in: PyInPort = _port_in()
    target_in: PyInPort = _port_in()
    ctrl_in: PyInPort = _port_in(1)
    d_out: PyOutPort = _port_out(24)
    y_acc: np.ndarray = _var()
    ydot_acc: np.ndarray = _var()
    D: np.ndarray = _var()
    sum_e2: np.ndarray = _var()
    samples: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]

    def run_spk(self) -> None:
        ctrl = self.ctrl_in.recv()
        if ctrl[PCTRL_UPDATE] or self.cfg.mode == "activity":  # activity: the last sample's d, else 0
            self.d_out.send(pf.third_factor(_t(self.D), self.cfg.third_factor_shift).numpy())
            self.D[:] = 0
        else:
            self.d_out.send(np.zeros(self.D.shape, dtype=INT))
        y, y_dot, target = self.y_in.recv(), self.ydot_in.recv(), self.target_in.recv()
        if ctrl[PCTRL_SAMPLE_START]:
            self.y_acc[:] = 0
            self.ydot_acc[:] = 0
        self.y_acc[:] = self.y_acc + y
        self.ydot_acc[:] = self.ydot_acc + y_dot
        if ctrl[PCTRL_SAMPLE_END]:
            sum_e2, D = pf.loss_terms(_t(self.y_acc), _t(self.ydot_acc), _t(target), self.cfg,
                                      perturbed=bool(ctrl[PCTRL_PERTURBED]))
            self.D[:] = self.D + D.numpy()
            if not ctrl[PCTRL_PERTURBED]:  # the training loss counts each sample's plain run
                self.sum_e2[:] = self.sum_e2 + int(sum_e2)
                self.samples[:] = self.samples + 1


class _Delayed:
    """The control vectors (and targets) of the last ``depth + 1`` steps: ``ago(k)`` is the one
    received k steps before the current one (all zero before the run began)."""

    def __init__(self, depth: int, *shapes: tuple[int, ...]) -> None:
        self.items = deque([tuple(np.zeros(s, dtype=INT) for s in shapes)] * (depth + 1), maxlen=depth + 1)

    def push(self, *values: np.ndarray) -> None:
        self.items.append(tuple(np.asarray(v, dtype=INT) for v in values))

    def ago(self, k: int) -> tuple[np.ndarray, ...]:
        return self.items[-1 - k]


def _send_factors(model: LearningNeuronModelFixed, y2: int = 0, y3: int = 0, bap: bool = False) -> None:
    """Send a rule-'loihi2' neuron's learning factors (the same for all its neurons) to its LearningDense:
    the bAP in the steps that learn, with y2, y3 (y1 is unused)."""
    n = model.y1.shape[0]
    model.y2[:], model.y3[:] = y2, y3
    model.s_out_bap.send(np.full(n, bap, dtype=bool))
    model.s_out_y1.send(np.zeros(n, dtype=INT))
    model.s_out_y2.send(model.y2.copy())
    model.s_out_y3.send(model.y3.copy())


def _perturbation_factors(cfg: pf.FixedNetConfig, ctrl_now: np.ndarray, ctrl_lrn: np.ndarray, d: int) -> dict:
    """Weight mode's factors: the update's (y2, y3) = (d^-, d^+) in the update step, y2 = 2^-e (add q) on
    the last step of a sample's plain run and y3 = 2^-e (remove q) on the last step of its perturbed
    run (``ctrl_lrn``: the control vector as the layer's learning sees it), each with a bAP."""
    y = 2 ** -cfg.learning_exp
    if ctrl_now[PCTRL_UPDATE]:
        return dict(zip(("y2", "y3"), pf.loihi2_factors(d)), bap=True)
    if ctrl_lrn[PCTRL_SAMPLE_END]:
        return {"y3" if ctrl_lrn[PCTRL_PERTURBED] else "y2": y, "bap": True}
    return {}


@implements(proc=WeightPerturbLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyWeightPerturbLIFFixed(LearningNeuronModelFixed):
    a_in: PyInPort = _port_in(24)
    ctrl_in: PyInPort = _port_in(1)
    d_in: PyInPort = _port_in(8)
    s_out: PyOutPort = _port_out(8)
    v: np.ndarray = _var(24)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.layer: int = proc_params["layer"]
        self.ctrl = _Delayed(self.layer + 1, (PCTRL_SIZE,))

    def run_spk(self) -> None:
        self.ctrl.push(self.ctrl_in.recv())
        d = int(self.d_in.recv()[0])
        a = _t(self.a_in.recv())
        (now,), (lrn,), (dyn,) = self.ctrl.ago(0), self.ctrl.ago(self.layer), self.ctrl.ago(self.layer + 1)
        out = np.zeros(self.s_out.shape, dtype=INT)
        if dyn[PCTRL_ACTIVE]:
            if dyn[PCTRL_SAMPLE_START]:
                self.v[:] = 0
            none = torch.zeros(0, *a.shape, dtype=torch.int64)
            s, _, new = pf.lif_step(a, none, pf.NeuronState(_t(self.v), none), self.cfg, torch.zeros_like)
            self.v[:] = new.v.numpy()
            out[:-1], out[-1] = s.numpy(), self.cfg.fmt.one
        self.s_out.send(out)
        _send_factors(self, **_perturbation_factors(self.cfg, now, lrn, d))


@implements(proc=WeightPerturbLoss, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyWeightPerturbLossFixed(LearningNeuronModelFixed):
    y_in: PyInPort = _port_in(24)
    target_in: PyInPort = _port_in()
    ctrl_in: PyInPort = _port_in(1)
    d_out: PyOutPort = _port_out(8)
    y_acc: np.ndarray = _var()
    D: np.ndarray = _var()
    gain: np.ndarray = _var()
    updates: np.ndarray = _var()
    sum_e2: np.ndarray = _var()
    samples: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.depth = self.cfg.n_layers
        self.delayed = _Delayed(self.depth, (PCTRL_SIZE,), (self.cfg.sizes[-1],))

    def run_spk(self) -> None:
        ctrl = self.ctrl_in.recv()
        self.delayed.push(ctrl, self.target_in.recv())
        d = 0
        if ctrl[PCTRL_UPDATE]:  # the batch's last sample left the readout before this step
            r = float(pf.loihi2_round_random(self.cfg, int(self.updates[0]))[0])
            d = pf.loihi2_third_factor(int(self.D[0]), (int(self.gain[0]), int(self.gain[1])), r)
            self.D[:] = 0
            self.updates[:] = self.updates + 1
        self.d_out.send(np.array([d], dtype=INT))
        y = self.y_in.recv()
        (dyn, target), (lrn, _) = self.delayed.ago(self.depth), self.delayed.ago(self.depth - 1)
        if dyn[PCTRL_ACTIVE]:
            if dyn[PCTRL_SAMPLE_START]:
                self.y_acc[:] = 0
            self.y_acc[:] = self.y_acc + y
            if dyn[PCTRL_SAMPLE_END]:
                sum_e2, D = pf.loss_terms(_t(self.y_acc), _t(self.y_acc), _t(target), self.cfg,
                                          perturbed=bool(dyn[PCTRL_PERTURBED]))
                self.D[:] = self.D + D.numpy()
                if not dyn[PCTRL_PERTURBED]:
                    self.sum_e2[:] = self.sum_e2 + int(sum_e2)
                    self.samples[:] = self.samples + 1
        _send_factors(self, **_perturbation_factors(self.cfg, ctrl, lrn, d))


def _update_factors(model, d: int, update: bool) -> None:
    """Forward-gradient modes: in the update step a bAP with (y2, y3) = (d^-, d^+) to the layer's
    LearningDense and to its tangent copy (``tan_*`` ports); nothing otherwise."""
    y2, y3 = pf.loihi2_factors(d) if update else (0, 0)
    _send_factors(model, y2, y3, update)
    n = model.tan_y1.shape[0]
    model.tan_bap.send(np.full(n, update, dtype=bool))
    model.tan_y1.send(np.zeros(n, dtype=INT))
    model.tan_y2.send(np.full(n, y2, dtype=INT))
    model.tan_y3.send(np.full(n, y3, dtype=INT))


@implements(proc=ForwardGradLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyForwardGradLIFFixed(LearningNeuronModelFixed):
    a_in: PyInPort = _port_in(24)
    adot_in: PyInPort = _port_in(24)
    start_in: PyInPort = _port_in(24)
    ctrl_in: PyInPort = _port_in(1)
    d_in: PyInPort = _port_in(8)
    s_out: PyOutPort = _port_out(8)
    sdot_out: PyOutPort = _port_out(24)
    tan_bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)
    tan_y1: PyOutPort = _port_out(8)
    tan_y2: PyOutPort = _port_out(7)
    tan_y3: PyOutPort = _port_out(7)
    v: np.ndarray = _var(24)
    v_dot: np.ndarray = _var(24)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.layer: int = proc_params["layer"]
        (self.k,) = self.cfg.directions_of(self.layer)
        self.ctrl = _Delayed(self.layer + 1, (PCTRL_SIZE,))
        self.phi = _SpikeDerivative(self.cfg, self.layer)
        # Stein's noise keys, read off the delayed control signals: updates so far, sample slot, step
        self.updates, self.slot, self.t = proc_params["updates"], 0, 0

    def run_spk(self) -> None:
        self.ctrl.push(self.ctrl_in.recv())
        d = self.d_in.recv()
        n, D = self.v.shape[0], self.cfg.n_dirs
        a = _t(self.a_in.recv())
        a_dot = _t(self.adot_in.recv()).reshape(D, n) + _t(self.start_in.recv()).reshape(D, n)
        (now,), (dyn,) = self.ctrl.ago(0), self.ctrl.ago(self.layer + 1)
        out, out_dot = np.zeros(n + 1, dtype=INT), np.zeros((D, n + 1), dtype=INT)
        if dyn[PCTRL_UPDATE]:  # the batch's samples have passed this layer
            self.updates, self.slot = self.updates + 1, 0
        if dyn[PCTRL_ACTIVE]:
            if dyn[PCTRL_SAMPLE_START]:
                self.v[:] = 0
                self.v_dot[:] = 0
                self.t = 0
            s, s_dot, new = pf.lif_step(a, a_dot, pf.NeuronState(_t(self.v), _t(self.v_dot)), self.cfg,
                                        self.phi(self.updates, self.t, self.slot))
            self.t += 1
            if dyn[PCTRL_SAMPLE_END]:
                self.slot += 1
            self.v[:] = new.v.numpy()
            self.v_dot[:] = new.v_dot.numpy()
            out[:-1], out[-1], out_dot[:, :-1] = s.numpy(), self.cfg.fmt.one, s_dot.numpy()
        self.s_out.send(out)
        self.sdot_out.send(out_dot.reshape(-1))
        _update_factors(self, int(d[self.k]), bool(now[PCTRL_UPDATE]))


@implements(proc=ForwardGradLoss, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyForwardGradLossFixed(LearningNeuronModelFixed):
    y_in: PyInPort = _port_in(24)
    ydot_in: PyInPort = _port_in(24)
    start_in: PyInPort = _port_in(24)
    target_in: PyInPort = _port_in()
    ctrl_in: PyInPort = _port_in(1)
    d_out: PyOutPort = _port_out(8)
    tan_bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)
    tan_y1: PyOutPort = _port_out(8)
    tan_y2: PyOutPort = _port_out(7)
    tan_y3: PyOutPort = _port_out(7)
    y_acc: np.ndarray = _var()
    ydot_acc: np.ndarray = _var()
    D: np.ndarray = _var()
    gain: np.ndarray = _var()
    updates: np.ndarray = _var()
    sum_e2: np.ndarray = _var()
    samples: np.ndarray = _var()

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.cfg: pf.FixedNetConfig = proc_params["cfg"]
        self.depth = self.cfg.n_layers
        (self.k,) = self.cfg.directions_of(self.depth - 1)
        self.delayed = _Delayed(self.depth, (PCTRL_SIZE,), (self.cfg.sizes[-1],))

    def run_spk(self) -> None:
        ctrl = self.ctrl_in.recv()
        self.delayed.push(ctrl, self.target_in.recv())
        d = np.zeros(self.D.shape, dtype=INT)
        if ctrl[PCTRL_UPDATE]:  # the batch's last sample left the readout before this step
            r = pf.loihi2_round_random(self.cfg, int(self.updates[0]))
            d = np.array([pf.loihi2_third_factor(int(D), (int(g), int(s)), float(rk))
                          for D, (g, s), rk in zip(self.D, self.gain, r)], dtype=INT)
            self.D[:] = 0
            self.updates[:] = self.updates + 1
        self.d_out.send(d)
        n_out, D = self.y_acc.shape[0], self.cfg.n_dirs
        y = self.y_in.recv()
        y_dot = (self.ydot_in.recv() + self.start_in.recv()).reshape(D, n_out)
        dyn, target = self.delayed.ago(self.depth)
        if dyn[PCTRL_ACTIVE]:
            if dyn[PCTRL_SAMPLE_START]:
                self.y_acc[:] = 0
                self.ydot_acc[:] = 0
            self.y_acc[:] = self.y_acc + y
            self.ydot_acc[:] = self.ydot_acc + y_dot
            if dyn[PCTRL_SAMPLE_END]:
                sum_e2, Dk = pf.loss_terms(_t(self.y_acc), _t(self.ydot_acc), _t(target), self.cfg)
                self.D[:] = self.D + Dk.numpy()
                self.sum_e2[:] = self.sum_e2 + int(sum_e2)
                self.samples[:] = self.samples + 1
        _update_factors(self, int(d[self.k]), bool(ctrl[PCTRL_UPDATE]))
