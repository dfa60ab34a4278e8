"""ProcessModel of :class:`lavasnn.procs.loihi2.process.Loihi2TraceNeuron` (fixed point only).

The variant is defined by Loihi 2's fixed-point learning engine, so there is no floating-point
model. The model calls :func:`lavasnn.engine.learning_engine.loihi2_neuron_step_fixed`, which the
batched engine calls too; the synapses are Lava's own ``LearningDense``.
"""

from __future__ import annotations

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavasnn.engine import learning_engine as le
from lavasnn.engine import steps
from lavasnn.procs.loihi2.process import Loihi2TraceNeuron


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x))


@implements(proc=Loihi2TraceNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLoihi2TraceNeuronFixed(LearningNeuronModelFixed):
    """24-bit u, v, d; 12-bit decays; threshold and input << 6; y1..y3 7-bit, bAP 1-bit."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    d_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
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

    def params(self) -> le.Loihi2NeuronParams:
        pp = self.proc_params
        bias = _t(self.bias_mant).to(torch.int64) << _t(self.bias_exp).to(torch.int64)
        soma = steps.MCLIFParams(du=self.du.item(), dv=self.dv.item(), dd=self.dd.item(), vth=self.vth.item(),
                                 bias=bias, soft_reset=pp["soft_reset"], grad_win=self.grad_win.item())
        return le.Loihi2NeuronParams(soma, pp["grad_amp"], pp["feedback_steps"], pp["err_shift"])

    def run_spk(self) -> None:
        a = _t(self.a_in.recv())
        d_in = _t(self.d_in.recv())
        end = self.time_step % self.proc_params["sample_steps"] == 0
        state = steps.MCLIFState(_t(self.u), _t(self.v), _t(self.d))
        out, y, new = le.loihi2_neuron_step_fixed(a, d_in, state, self.params(), end)
        self.u[:] = new.u.numpy()
        self.v[:] = new.v.numpy()
        self.d[:] = new.d.numpy()
        self.y1[:] = y.y1.numpy()
        self.y2[:] = y.y2.numpy()
        self.y3[:] = y.y3.numpy()
        self.s_out.send(out.s.numpy())
        self.s_out_bap.send(y.bap.numpy().astype(bool))
        self.s_out_y1.send(y.y1.numpy())
        self.s_out_y2.send(y.y2.numpy())
        self.s_out_y3.send(y.y3.numpy())
