"""ProcessModels of :mod:`lavasnn.procs.process`, one class per precision.

Every model converts its Vars to torch tensors (no copy), calls the step function of
:mod:`lavasnn.engine.steps` that the batched engine also calls, and writes the new state back.
Fixed-point Vars are int32 holding 24-bit values; traces E are 24-bit, e_hat 16-bit.
"""

from __future__ import annotations

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavasnn.engine import steps
from lavasnn.procs.process import ErrorPair, MultiCompartmentLIF, TraceDense


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x))


def _mclif_params(m, bias) -> steps.MCLIFParams:
    return steps.MCLIFParams(du=m.du.item(), dv=m.dv.item(), dd=m.dd.item(), vth=m.vth.item(),
                             bias=bias, soft_reset=m.proc_params["soft_reset"],
                             grad_win=m.grad_win.item(), grad_amp=m.proc_params["grad_amp"],
                             v_frac_bits=m.proc_params["v_frac_bits"])


def _sample_starts(model) -> bool:
    """True on the first step of each sample when the process has a reset_interval."""
    interval = model.proc_params["reset_interval"]
    return interval > 0 and (model.time_step - 1) % interval == 0


class _MCLIFBase(PyLoihiProcessModel):
    def run_spk(self) -> None:
        if _sample_starts(self):
            for var in (self.u, self.v, self.d):
                var[:] = 0
        a = _t(self.a_in.recv())
        d_in = _t(self.d_in.recv())
        state = steps.MCLIFState(_t(self.u), _t(self.v), _t(self.d))
        out, new = type(self).step_fn(a, d_in, state, _mclif_params(self, self.bias()))
        self.u[:] = new.u.numpy()
        self.v[:] = new.v.numpy()
        self.d[:] = new.d.numpy()
        self.s_out.send(out.s.numpy())
        self.learn_out.send(torch.stack([out.s, out.g, out.c]).numpy())


@implements(proc=MultiCompartmentLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMultiCompartmentLIFFixed(_MCLIFBase):
    """Loihi fixed point: 24-bit u, v, d; 12-bit decays; threshold and input << 6."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    d_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    learn_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    d: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    dd: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    grad_win: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)
    step_fn = staticmethod(steps.mclif_step_fixed)

    def bias(self) -> torch.Tensor:
        return _t(self.bias_mant).to(torch.int64) << _t(self.bias_exp).to(torch.int64)


@implements(proc=MultiCompartmentLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMultiCompartmentLIFFloat(_MCLIFBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    d_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    learn_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    d: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    dd: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    grad_win: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)
    step_fn = staticmethod(steps.mclif_step_float)

    def bias(self) -> torch.Tensor:
        return _t(self.bias_mant) * 2.0 ** _t(self.bias_exp)


class _TraceDenseBase(PyLoihiProcessModel):
    def run_spk(self) -> None:
        if _sample_starts(self):
            for var in (self.e_hat, self.E, self.eb_hat, self.Eb, self.x_prev, self.a_buff):
                var[:] = 0
        # Send what the previous step's spikes caused (Lava Dense's one-step delay), then pair
        # those spikes with the post neurons' response to them, which arrives now.
        self.a_out.send(self.a_buff)
        x = _t(self.s_in.recv())
        s, g, c = _t(self.post_in.recv())
        state = steps.TraceState(_t(self.e_hat), _t(self.E), _t(self.eb_hat), _t(self.Eb))
        new = type(self).trace_fn(_t(self.x_prev), steps.MCLIFOut(s, g, c), state,
                                  self.trace_decay.item())
        self.e_hat[:] = new.e_hat.numpy()
        self.E[:] = new.E.numpy()
        self.eb_hat[:] = new.eb_hat.numpy()
        self.Eb[:] = new.Eb.numpy()
        self.x_prev[:] = x.numpy()
        self.a_buff[:] = self.accumulate(x).numpy()


@implements(proc=TraceDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTraceDenseFixed(_TraceDenseBase):
    """8-bit weights (even values in [-256, 254]) times 2^weight_exp; traces in Q12."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=16)
    post_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    trace_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    e_hat: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    E: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    eb_hat: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    Eb: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    x_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    trace_fn = staticmethod(steps.trace_step_fixed)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        return steps.dense_fixed(_t(self.weights), x, self.proc_params["weight_exp"])


@implements(proc=TraceDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTraceDenseFloat(_TraceDenseBase):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    post_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    trace_decay: np.ndarray = LavaPyType(np.ndarray, float)
    e_hat: np.ndarray = LavaPyType(np.ndarray, float)
    E: np.ndarray = LavaPyType(np.ndarray, float)
    eb_hat: np.ndarray = LavaPyType(np.ndarray, float)
    Eb: np.ndarray = LavaPyType(np.ndarray, float)
    x_prev: np.ndarray = LavaPyType(np.ndarray, float)
    a_buff: np.ndarray = LavaPyType(np.ndarray, float)
    trace_fn = staticmethod(steps.trace_step_float)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        return steps.dense_float(_t(self.weights), x) * 2.0 ** self.proc_params["weight_exp"]


class _ErrorPairBase(PyLoihiProcessModel):
    def run_spk(self) -> None:
        a = _t(self.a_in.recv())
        (s_pos, s_neg), new = type(self).step_fn(
            a, steps.ErrorPairState(_t(self.v_pos), _t(self.v_neg)), self.vth.item())
        self.v_pos[:] = new.v_pos.numpy()
        self.v_neg[:] = new.v_neg.numpy()
        self.s_pos.send(s_pos.numpy())
        self.s_neg.send(s_neg.numpy())


@implements(proc=ErrorPair, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyErrorPairFixed(_ErrorPairBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_pos: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    s_neg: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    v_pos: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v_neg: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    step_fn = staticmethod(steps.error_pair_step_fixed)


@implements(proc=ErrorPair, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyErrorPairFloat(_ErrorPairBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_pos: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_neg: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v_pos: np.ndarray = LavaPyType(np.ndarray, float)
    v_neg: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    step_fn = staticmethod(steps.error_pair_step_float)
