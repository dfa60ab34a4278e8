"""Lava Processes for on-chip learning: declarations of Vars and Ports only.

Equations live in :mod:`lavasnn.engine.steps`; the models in ``models.py`` call them.
Parameters are in the units of the selected precision: integers in Loihi's formats for
``fixed_pt`` (see :mod:`lavasnn.fixed`), reals for ``floating_pt``. Unknown keyword
arguments are a TypeError (Lava's own processes would silently ignore them).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavasnn.errors import UserError

LEARN_ROWS = 3  # learn_out carries (s, g, c) per neuron


def _check_finite(**values) -> None:
    for name, value in values.items():
        if not np.all(np.isfinite(np.asarray(value, dtype=float))):
            raise UserError(f"{name} contains NaN or infinity; it must be finite")


def _check_interval(reset_interval: int) -> None:
    if not isinstance(reset_interval, (int, np.integer)) or reset_interval < 0:
        raise UserError(f"reset_interval must be a non-negative integer (0: never), got {reset_interval}")


class MultiCompartmentLIF(AbstractProcess):
    """LIF soma plus a dendrite that integrates feedback without driving the soma (BioGrad).

    Ports: ``a_in`` somatic synaptic input, ``d_in`` dendritic input, ``s_out`` spikes,
    ``learn_out`` (3, n): spike s, pseudo-derivative g and trace carry factor c = 1 - s - v g
    for the eligibility-trace synapses that feed this neuron.
    ``reset_interval`` T > 0 zeroes u, v, d at steps 1, T+1, 2T+1, ... (one sample per T steps).
    Vars: ``u``, ``v``, ``d`` (current, voltage, dendrite) and the parameters.
    Equations: :func:`lavasnn.engine.steps.mclif_step_fixed` / ``mclif_step_float``.
    """

    def __init__(self, *, shape: tuple[int, ...], du=0, dv=0, dd=0, vth=10, bias_mant=0,
                 bias_exp=0, soft_reset: bool = False, grad_win=0, grad_amp=1.0,
                 v_frac_bits: int = 16, reset_interval: int = 0, name: str | None = None) -> None:
        super().__init__(shape=shape, name=name, soft_reset=bool(soft_reset),
                         v_frac_bits=int(v_frac_bits), grad_amp=float(grad_amp),
                         reset_interval=reset_interval)
        # Validate after AbstractProcess.__init__: Lava's __del__ needs what it sets up.
        _check_interval(reset_interval)
        _check_finite(du=du, dv=dv, dd=dd, vth=vth, bias_mant=bias_mant, grad_win=grad_win,
                      grad_amp=grad_amp)
        n = int(np.prod(shape))
        self.a_in = InPort(shape=shape)
        self.d_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.learn_out = OutPort(shape=(LEARN_ROWS, n))
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.d = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.dd = Var(shape=(1,), init=dd)
        self.vth = Var(shape=(1,), init=vth)
        self.grad_win = Var(shape=(1,), init=grad_win)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)


class TraceDense(AbstractProcess):
    """Dense connection that keeps BioGrad's eligibility traces per synapse.

    Ports: ``s_in`` presynaptic spikes, ``a_out`` synaptic input to the post neurons (delayed
    by one step, as Lava's Dense), ``post_in`` (3, n_post) the post neurons' ``learn_out``.
    Vars: ``weights`` (n_post, n_pre), ``e_hat``/``E`` (n_post, n_pre) presynaptic and
    gradient traces, ``eb_hat``/``Eb`` (n_post,) the bias traces, ``x_prev`` the spikes whose
    effect on the post neurons arrives with the next ``post_in``. ``reset_interval`` T > 0
    zeroes traces and buffers at steps 1, T+1, ... (spikes still in flight are dropped).
    Equations: :func:`lavasnn.engine.steps.trace_step_fixed` / ``trace_step_float``.
    """

    def __init__(self, *, weights: np.ndarray, weight_exp: int = 0, trace_decay=0,
                 reset_interval: int = 0, name: str | None = None) -> None:
        super().__init__(name=name, weight_exp=int(weight_exp), reset_interval=reset_interval)
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise UserError(f"weights must be a 2-D (n_post, n_pre) matrix, got shape {weights.shape}")
        _check_interval(reset_interval)
        _check_finite(weights=weights, trace_decay=trace_decay)
        n_post, n_pre = weights.shape
        self.s_in = InPort(shape=(n_pre,))
        self.a_out = OutPort(shape=(n_post,))
        self.post_in = InPort(shape=(LEARN_ROWS, n_post))
        self.weights = Var(shape=weights.shape, init=weights)
        self.trace_decay = Var(shape=(1,), init=trace_decay)
        self.e_hat = Var(shape=weights.shape, init=0)
        self.E = Var(shape=weights.shape, init=0)
        self.eb_hat = Var(shape=(n_post,), init=0)
        self.Eb = Var(shape=(n_post,), init=0)
        self.x_prev = Var(shape=(n_pre,), init=0)
        self.a_buff = Var(shape=(n_post,), init=0)


class ErrorPair(AbstractProcess):
    """Positive and negative integrate-and-fire neurons with soft reset that turn a graded
    error current into two spike trains (BioGrad's error neurons).

    Ports: ``a_in`` graded error, ``s_pos`` / ``s_neg`` spikes. Vars: ``v_pos``, ``v_neg``.
    Equations: :func:`lavasnn.engine.steps.error_pair_step_fixed` / ``error_pair_step_float``.
    """

    def __init__(self, *, shape: tuple[int, ...], vth=1, name: str | None = None) -> None:
        super().__init__(shape=shape, name=name)
        _check_finite(vth=vth)
        if float(vth) <= 0:
            raise UserError(f"error-neuron threshold vth must be positive, got {vth}")
        self.a_in = InPort(shape=shape)
        self.s_pos = OutPort(shape=shape)
        self.s_neg = OutPort(shape=shape)
        self.v_pos = Var(shape=shape, init=0)
        self.v_neg = Var(shape=shape, init=0)
        self.vth = Var(shape=(1,), init=vth)
