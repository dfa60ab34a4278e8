"""A small LIF network run in Lava's simulator, to prove an install works.

Three input LIF neurons driven by constant biases (three rates) project through a Dense
connection onto two output LIF neurons; a RingBuffer sink records the output spikes, read
once at the end. The same network runs with the fixed_pt (bit-accurate integer) and the
floating_pt models. Lava's fixed-point LIF shifts synaptic input and threshold left by 6 bits,
so the float network has the same weights and thresholds and its bias is the fixed bias / 2^6:

    fixed:  u = a << 6,  v = v (4096 - dv) / 4096 + u + bias,  spike if v > vth << 6
    float:  u = a,       v = v (1 - dv) + u + bias / 2^6,      spike if v > vth
"""

from __future__ import annotations

import numpy as np

from lavasnn.backends import run_config
from lavasnn.backends.session import lava_session

INPUT_BIAS = np.array([100, 200, 400])  # fixed-point bias mantissas
INPUT_VTH = 10
WEIGHTS = np.array([[40, 40, 40], [-20, 30, 60]])
OUTPUT_VTH = 10

PARAMS = {
    "fixed": dict(bias=INPUT_BIAS, du=4095, dv=0),
    "float": dict(bias=INPUT_BIAS / 2**6, du=1.0, dv=0.0),
}


def run_smoke(precision: str = "fixed", steps: int = 50) -> np.ndarray:
    """Run the network for ``steps`` steps; return the output spikes, shape (2, steps)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer
    from lava.proc.lif.process import LIF

    cfg = run_config("sim", precision)  # validates the precision first
    p = PARAMS[precision]
    source = LIF(shape=(3,), bias_mant=p["bias"], vth=INPUT_VTH, du=p["du"], dv=p["dv"])
    dense = Dense(weights=WEIGHTS)
    out = LIF(shape=(2,), vth=OUTPUT_VTH, du=p["du"], dv=p["dv"])
    sink = RingBuffer(shape=(2,), buffer=steps)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(out.a_in)
    out.s_out.connect(sink.a_in)
    with lava_session(source):
        source.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return np.asarray(sink.data.get()) != 0
