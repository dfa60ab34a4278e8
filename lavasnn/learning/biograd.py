"""BioGrad: the learning math shared by the engine trainer and the Lava processes.

Tang, Kumar, Polykretis, Michmizos 2021, "BioGrad: Biologically plausible gradient-based
learning for spiking neural networks" (arXiv 2110.14092). Per sample of T steps:

- neurons (:func:`lavasnn.engine.steps.mclif_step_float`): v_t = decay v_{t-1} (1 - s_{t-1})
  + W x_t + b, s_t = [v_t > vth], with eligibility traces E (BioGrad's reset-aware traces);
- output error from step ``error_start`` on: err_t = softmax(counts_t) - onehot(label), where
  counts_t are the output spikes so far; a positive / negative pair of IF neurons turns it into
  spikes; every hidden layer's dendrites receive them through feedback weights B_l (hidden x
  classes), the output neurons' dendrites directly;
- update at the end of the sample: delta_i = d_i / n_feedback_steps,
  W_ij <- W_ij - lr mean_batch(delta_i E_ij), b_i <- b_i - lr mean_batch(delta_i Eb_i);
- sleep after every batch: for each hidden layer l, Bernoulli spike trains z = pos - neg at a
  random rate drive layer l+1; with h = sum_t z (n_l) and o = output spike counts,
  B_l <- B_l + lr_s (h^T o - mean_batch(o^p) B_l) (Oja-like), which pulls B_l towards
  (W_out ... W_{l+1})^T. B_l starts equal to that product.

Fixed point (:class:`FixedFormat`) keeps Loihi's formats: 8-bit weights (even integers in
[-256, 254]) worth ``w_unit = 2^(6 - v_frac_bits)``, voltages with ``v_frac_bits`` fractional
bits, traces in Q12. Updates are computed exactly in int64 and applied with stochastic rounding
driven by a counter-based hash (:func:`hash_uniform`), so every executor draws the same numbers.

``rule="loihi2"`` (fixed point, engine only) replaces the eligibility traces and the weight and
bias update by the form Loihi 2's learning engine runs (:mod:`lavasnn.procs.loihi2.process`,
arithmetic in :mod:`lavasnn.engine.learning_engine`): per sample, with 2^k = 2^l2_lr_exp,
2^a = 2^l2_tag_exp, y1 = l2_grad_amp g, delta = d / (n_fb 2^l2_err_shift) (7 bits)::

    x1_j <- SR(e^{-1/l2_x1_tau} x1_j) + l2_x1_impulse s_j,   t_ij <- t_ij + 2^a x1_j y1_i / 8
    at the end of the sample:  W_ij <- W_ij - 2^k delta_i t_ij / 32,  t_ij <- 0

and a bias is the weight of a synapse from an always-on neuron (x_j = 1 every step), learned by
the same rule. In real units the per-sample step scales as
2^(k + a - l2_err_shift) l2_x1_impulse l2_grad_amp (times delta E; compare lr / batch of the
exact rule), while the integers the learning engine multiplies are y2 - y3 = delta
2^(v_frac_bits - l2_err_shift) and the tag: a larger v_frac_bits (finer weight unit) with a larger
l2_err_shift keeps their resolution and makes the real step smaller. The lowest lr exponent is
-7, so small steps cannot come from l2_lr_exp alone. Sleep, the output error and the error
neurons are the exact rule's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from lavasnn import fixed as fx
from lavasnn.errors import UserError


RULES = ("exact", "loihi2")


@dataclass(frozen=True)
class BioGradConfig:
    """Network and training parameters; the defaults are the BioGrad authors'."""

    hidden: tuple[int, ...] = (500, 100)
    steps: int = 50
    error_start: int = 16  # the authors used 19 of 60 steps on N-MNIST
    decay: float = 0.3  # fraction of v kept per step
    vth: float = 0.3
    grad_win: float = 0.3
    grad_amp: float = 1.0
    error_vth: float = 1.0
    lr: float = 1e-3
    # per-epoch decay of lr: epoch e (0-based) updates the forward weights and biases with
    # lr * lr_decay**e (rule "exact", engine backend; 1.0: constant lr). Sleep keeps sleep_lr.
    lr_decay: float = 1.0
    # samples per update and sleep phase; None: 32 for rule "exact", 128 for "loihi2". The
    # authors used 128 on 50,000 digits (390 updates per epoch); on the 4,000-digit subset 128
    # leaves 31 updates per epoch, too few for plain SGD in 15 epochs: 32 gives 125
    # (bench/results/biograd.json). Rule "loihi2" applies every sample's own update, so its batch
    # only sets how often it sleeps: 128 (0.882) beats 32 (0.808; bench/results/biograd_loihi2*.json)
    batch: int | None = None
    epochs: int = 10
    sleep: bool = True
    sleep_steps: int = 50
    sleep_batch: int = 128
    sleep_lr: float = 1e-4 / 3
    oja_power: float = 2.0
    precision: str = "float"
    seed: int = 0
    # fixed point: fractional bits of v; None: 15 for rule "exact", 17 for rule "loihi2" (a finer
    # weight unit 2^(6 - v_frac_bits) lets its coarse per-sample updates take smaller real steps)
    v_frac_bits: int | None = None
    error_scale: int = 64
    # "exact": BioGrad's per-synapse traces and batch-mean update; "loihi2": the weight and bias
    # update as Loihi 2's learning engine runs it (see :data:`RULES` and ``Loihi2RuleParams``);
    # the l2_* parameters below are used by "loihi2" only.
    rule: str = "exact"
    # (defaults: the best of the short runs in bench/results/biograd_loihi2.json)
    l2_lr_exp: int = -7  # dw = -2^lr_exp (y2 - y3) t / 32
    l2_tag_exp: int = -5  # dt = 2^tag_exp x1 y1 / 8 - y0 t
    l2_x1_impulse: int = 64  # x1 += impulse per pre spike (7 bits)
    l2_x1_tau: int = 1  # x1 decays by e^{-1/tau} per step (e^-1 = 0.37, BioGrad keeps 0.3)
    l2_grad_amp: int = 4  # y1 = grad_amp g
    l2_err_shift: int = 9  # y2 - y3 = d / (feedback_steps 2^err_shift)

    def __post_init__(self) -> None:
        if self.precision not in ("float", "fixed"):
            raise UserError(f"precision {self.precision!r} is not one of: fixed, float")
        if self.rule not in RULES:
            raise UserError(f"rule {self.rule!r} is not one of: {', '.join(RULES)}")
        if self.v_frac_bits is None:
            object.__setattr__(self, "v_frac_bits", 17 if self.rule == "loihi2" else 15)
        if self.batch is None:
            object.__setattr__(self, "batch", 128 if self.rule == "loihi2" else 32)
        if self.rule == "loihi2":
            if self.precision != "fixed":
                raise UserError("rule 'loihi2' runs in fixed point only: use precision 'fixed' "
                                "(allowed: exact with fixed or float, loihi2 with fixed)")
            from lavasnn.engine import learning_engine as le
            le.check_rule_params(le.Loihi2RuleParams(self.l2_lr_exp, self.l2_tag_exp, self.l2_x1_impulse,
                                                     self.l2_x1_tau, 0))
            fx.check_range("l2_grad_amp", self.l2_grad_amp, 0, le.TRACE_MAX)
            fx.check_range("l2_err_shift", self.l2_err_shift, *le.ERR_SHIFT_RANGE)
        if not self.hidden or any(int(h) <= 0 for h in self.hidden):
            raise UserError(f"hidden sizes must be positive integers, got {self.hidden}")
        for name in ("steps", "batch", "epochs", "sleep_steps", "sleep_batch"):
            if int(getattr(self, name)) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.steps < 2:
            raise UserError(f"steps = {self.steps}: a sample needs at least 2 time steps (the error is fed back "
                            "from step error_start on and the update follows at the last step)")
        if not 0 <= self.error_start < self.steps - 1:
            raise UserError(f"error_start = {self.error_start} must lie in [0, steps - 2] = [0, {self.steps - 2}]")
        for name in ("decay",):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} = {getattr(self, name)} must lie in [0, 1]")
        for name in ("vth", "error_vth", "lr", "grad_win", "grad_amp"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"{name} = {value} must be a positive finite number")
        if not (math.isfinite(self.lr_decay) and 0.0 < self.lr_decay <= 1.0):
            raise UserError(f"lr_decay = {self.lr_decay} must lie in (0, 1] (1: constant learning rate)")
        if self.lr_decay != 1.0 and self.rule != "exact":
            raise UserError(f"lr_decay = {self.lr_decay} needs rule 'exact': rule {self.rule!r} does not use lr "
                            "(its step size is set by l2_lr_exp); use lr_decay 1")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of the forward weights and biases in epoch ``epoch`` (0-based)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return self.lr * self.lr_decay ** epoch

    @property
    def feedback_steps(self) -> int:
        return self.steps - self.error_start

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class FixedFormat:
    """How the real-valued BioGrad network maps onto Loihi's integers.

    v_int = v_real 2^f (f = v_frac_bits); a weight w_int acts as w_int 2^6 / 2^f (Lava shifts
    synaptic input by 6), so ``w_unit = 2^(6 - f)``; thresholds and windows are stored >> 6.
    Decays: Lava's ``dv = 4096 (1 - decay)``. Errors: e_int = round(e_real * error_scale)
    with the error neurons' threshold ``error_scale`` (real threshold 1).
    """

    v_frac_bits: int = 15
    error_scale: int = 64
    identity_exp: int = field(init=False)

    def __post_init__(self) -> None:
        if not 12 <= self.v_frac_bits <= 20:
            raise UserError(f"v_frac_bits = {self.v_frac_bits} must lie in [12, 20]")
        # The output dendrites take the error spikes with real weight 1 = 2^(f-6) integer units,
        # written as the even mantissa 128 times 2^identity_exp.
        object.__setattr__(self, "identity_exp", self.v_frac_bits - 6 - 7)

    @property
    def w_unit(self) -> float:
        return 2.0 ** (6 - self.v_frac_bits)

    def threshold(self, real: float) -> int:
        return int(round(real * 2 ** (self.v_frac_bits - 6)))

    def decay_const(self, keep: float) -> int:
        return int(round((1.0 - keep) * fx.DECAY_UNITY))

    def quantize_weights(self, w: np.ndarray) -> np.ndarray:
        """Nearest even integer in [-256, 254] to w / w_unit."""
        return np.clip(2 * np.round(np.asarray(w) / self.w_unit / 2), fx.WEIGHT_MIN, fx.WEIGHT_MAX).astype(np.int64)

    def quantize_bias(self, b: np.ndarray) -> np.ndarray:
        """bias_mant (bias_exp = 0) in v units: round(b 2^f), 13-bit signed."""
        return np.clip(np.round(np.asarray(b) * 2.0 ** self.v_frac_bits), *fx.BIAS_MANT_RANGE).astype(np.int64)


def neuron_params(cfg: BioGradConfig) -> dict:
    """The MC-LIF, trace and error-neuron parameters of a BioGrad network, in the units of
    ``cfg.precision`` (Lava's conventions: a decay d removes the fraction d per step)."""
    if cfg.precision == "fixed":
        fmt = FixedFormat(cfg.v_frac_bits, cfg.error_scale)
        return dict(du=fx.DECAY_UNITY - 1, dv=fmt.decay_const(cfg.decay), vth=fmt.threshold(cfg.vth),
                    grad_win=fmt.threshold(cfg.grad_win), grad_amp=1.0, v_frac_bits=cfg.v_frac_bits,
                    trace_decay=fmt.decay_const(cfg.decay), error_vth=fmt.error_scale,
                    identity=128, identity_exp=fmt.identity_exp)
    return dict(du=1.0, dv=1.0 - cfg.decay, vth=cfg.vth, grad_win=cfg.grad_win, grad_amp=cfg.grad_amp,
                v_frac_bits=cfg.v_frac_bits, trace_decay=1.0 - cfg.decay, error_vth=cfg.error_vth,
                identity=1.0, identity_exp=0)


# --------------------------------------------------------------------------------------------
# Reproducible randomness: a counter-based hash, identical wherever it runs
# --------------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (lowbias32 by C. Wellons); products stay below 2^63."""
    x = x & _MASK32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _MASK32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def hash_uniform(shape: tuple[int, ...], *keys: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform numbers in [0, 1) (float64), a pure function of ``keys`` and the element index."""
    n = int(np.prod(shape)) if shape else 1
    x = torch.arange(n, dtype=torch.int64, device=device)
    for k in keys:
        x = _mix32(x + _mix32(torch.tensor(int(k) & _MASK32, dtype=torch.int64, device=device)))
    return (_mix32(x).to(torch.float64) / 2.0**32).reshape(shape)


def stochastic_round(x: torch.Tensor, *keys: int) -> torch.Tensor:
    """floor(x) + [u < x - floor(x)] with u = :func:`hash_uniform` (int64); E[result] = x."""
    floor = torch.floor(x)
    u = hash_uniform(tuple(x.shape), *keys, device=x.device)
    return (floor + (u < (x - floor)).to(x.dtype)).to(torch.int64)


# --------------------------------------------------------------------------------------------
# Error, updates, sleep
# --------------------------------------------------------------------------------------------

def output_error(counts: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """err = softmax(counts) - onehot (float64): the gradient of the cross entropy of counts."""
    return torch.softmax(counts.to(torch.float64), dim=-1) - onehot.to(torch.float64)


def quantize_error(err: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    """e_int = round(err * error_scale) (half to even), int64."""
    return torch.round(err * fmt.error_scale).to(torch.int64)


def gradient_sums(d: torch.Tensor, E: torch.Tensor, Eb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G_ij = sum_b d_bi E_bij and Gb_i = sum_b d_bi Eb_bi over a batch (or one sample).

    Integers are summed in int64, exactly (|d| < 2^23, |E| < 2^23, at most 2^7 samples per
    batch), so summing per sample (Lava) or per batch (engine) gives the same result.
    """
    if d.is_floating_point():
        return torch.einsum("...i,...ij->ij", d, E), (d * Eb).reshape(-1, d.shape[-1]).sum(0)
    d64 = d.to(torch.int64)
    return (torch.einsum("...i,...ij->ij", d64, E.to(torch.int64)),
            (d64 * Eb.to(torch.int64)).reshape(-1, d.shape[-1]).sum(0))


def weight_update_float(G: torch.Tensor, Gb: torch.Tensor, batch: int, feedback_steps: int,
                        lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """dW = -lr mean_b(delta_bi E_bij), db = -lr mean_b(delta_bi Eb_bi), delta = d / n_fb."""
    scale = -lr / (batch * feedback_steps)
    return scale * G, scale * Gb


def weight_update_fixed(G: torch.Tensor, Gb: torch.Tensor, batch: int, feedback_steps: int, lr: float,
                        keys: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The same update in integers: changes of the weights (even) and of bias_mant (int64).

    With d in v units (2^f per 1.0) and E in Q12, the real update is
    dW_real = -lr / (B n_fb 2^f 2^12) G; in weight units (w_unit = 2^(6-f)) and mantissas
    (weights are stored as 2m): dm = -lr G / (B n_fb 2^12 2^6 2); the bias (v units) changes
    by -lr Gb / (B n_fb 2^12). Both are rounded stochastically with :func:`stochastic_round`.
    """
    scale = lr / (batch * feedback_steps * 2.0 ** fx.TRACE_FRAC_BITS)
    dm = stochastic_round(-G.to(torch.float64) * scale / 2.0 ** (fx.ACT_SHIFT + 1), *keys, 0)
    db = stochastic_round(-Gb.to(torch.float64) * scale, *keys, 1)
    return 2 * dm, db


def apply_fixed(weights: torch.Tensor, dW: torch.Tensor) -> torch.Tensor:
    """Add an integer change to weights and saturate to 8 bits (even values in [-256, 254])."""
    return torch.clamp(weights + dW, fx.WEIGHT_MIN, fx.WEIGHT_MAX)


def apply_bias_fixed(bias: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Add an integer change to bias_mant and saturate to 13 bits."""
    return torch.clamp(bias + db, *fx.BIAS_MANT_RANGE)


def sleep_sums(h: torch.Tensor, o: torch.Tensor, power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """C = sum_b h_b^T o_b and P = sum_b o_b^p; h (..., n_l) noise counts, o (..., n_out) output counts."""
    h2, o2 = h.reshape(-1, h.shape[-1]).to(torch.float64), o.reshape(-1, o.shape[-1]).to(torch.float64)
    return h2.T @ o2, o2.pow(power).sum(0)


def sleep_update_float(B: torch.Tensor, C: torch.Tensor, P: torch.Tensor, batch: int, lr: float) -> torch.Tensor:
    """dB = lr (C - (P / batch) B) = lr (sum_b h_b^T o_b - mean_b(o_b^p) B)."""
    return lr * (C - (P / batch) * B)


def sleep_update_fixed(B: torch.Tensor, C: torch.Tensor, P: torch.Tensor, batch: int, lr: float,
                       fmt: FixedFormat, keys: tuple[int, ...]) -> torch.Tensor:
    """The sleep update in weight integers (even), rounded stochastically. C and P are counts
    (integers held exactly in float64), so both executors compute the same real update."""
    real = sleep_update_float(B.to(torch.float64) * fmt.w_unit, C, P, batch, lr)
    return 2 * stochastic_round(real / fmt.w_unit / 2, *keys)


def feedback_angle_deg(B: np.ndarray, W_above: list[np.ndarray]) -> float:
    """Angle between B_l (n_l x n_out) and (W_out ... W_{l+1})^T, in degrees."""
    product = W_above[-1]
    for W in reversed(W_above[:-1]):
        product = product @ W
    a, b = np.asarray(B, dtype=np.float64).ravel(), product.T.astype(np.float64).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))
