"""Loihi fixed-point conventions, in one place.

These follow Lava 0.10's bit-accurate models (``lava/proc/lif/models.py``,
``PyLifModelBitAcc``; ``lava/proc/dense/models.py``, ``PyDenseModelBitAcc``), which mimic Loihi:

- decays are 12-bit: ``x <- sign(x (4096 - d)) * (|x (4096 - d)| >> 12)``, i.e. multiply by
  ``(4096 - d) / 4096`` and round towards zero. Lava adds 1 to the current decay ``du``
  (``ds_offset``) so that ``du = 4095`` empties the current every step;
- neuron state (current u, voltage v, dendrite d) is 24-bit signed. The current *wraps*
  (modulo 2^24, as Lava does), the voltage and the dendrite *saturate* at +-(2^23 - 1);
- synaptic input and thresholds are shifted left by 6 bits to align with the 24-bit state;
- weights are 8-bit: Lava's Dense in its MIXED sign mode keeps even values in [-256, 254]
  (an 8-bit mantissa m, weight 2m), scaled by ``2^weight_exp`` after accumulation;
- bias = bias_mant << bias_exp (13-bit signed mantissa).

All functions work on torch integer tensors (int32 or int64) of any shape.
"""

from __future__ import annotations

import torch

DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096
STATE_BITS = 24
STATE_MAX = (1 << (STATE_BITS - 1)) - 1  # 2^23 - 1, saturation limit
STATE_WRAP = 1 << (STATE_BITS - 1)  # 2^23, wrap-around limit of the current
ACT_SHIFT = 6  # synaptic input << 6
VTH_SHIFT = 6  # threshold << 6
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # Lava Dense, 8 weight bits, MIXED sign mode: even values
WEIGHT_EXP_RANGE = (-8, 7)
BIAS_MANT_RANGE = (-(1 << 12), (1 << 12) - 1)  # 13-bit signed
BIAS_EXP_RANGE = (0, 7)
VTH_RANGE = (0, (1 << 17) - 1)  # 17-bit unsigned
TRACE_FRAC_BITS = 12  # eligibility traces: a presynaptic spike adds 1.0 = 2^12
TRACE_MAX = (1 << 15) - 1  # e is 16-bit signed, saturating
GRAD_TRACE_MAX = STATE_MAX  # E is 24-bit signed, saturating
MATMUL_EXACT_LIMIT = 1 << 24  # integer sums below this are exact in float32


def shift_round_to_zero(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``sign(x) * (|x| >> bits)``: divide by 2^bits rounding towards zero (Loihi's decay)."""
    return torch.sign(x) * (torch.abs(x) >> bits)


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """``x (4096 - d) / 4096`` rounded towards zero, in x's dtype: x must leave 12 bits of
    headroom (int64 for 24-bit neuron state; int32 is enough for 16-bit traces)."""
    return shift_round_to_zero(x * (DECAY_UNITY - d), DECAY_BITS)


def wrap_state(x: torch.Tensor) -> torch.Tensor:
    """Lava's current overflow: values above 2^23 lose 2^24, values at or below -2^23 gain 2^24."""
    wrapped = torch.where(x > STATE_WRAP, x - 2 * STATE_WRAP, x)
    return torch.where(wrapped <= -STATE_WRAP, x + 2 * STATE_WRAP, wrapped)


def saturate(x: torch.Tensor, limit: int = STATE_MAX) -> torch.Tensor:
    """Clip to [-limit, limit] (Lava's voltage: +-(2^23 - 1))."""
    return torch.clamp(x, -limit, limit)


def scale_by_exp(x: torch.Tensor, exp: int) -> torch.Tensor:
    """``x << exp`` for exp >= 0, arithmetic ``x >> -exp`` otherwise (Lava Dense's weight_exp)."""
    return x << exp if exp > 0 else x >> -exp


def check_range(name: str, value, low: int, high: int) -> None:
    """Raise UserError naming ``name`` unless every element lies in [low, high]."""
    import numpy as np

    from lavasnn.errors import UserError

    arr = np.asarray(value)
    if arr.size == 0:
        return
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{name} contains NaN or infinity; allowed: integers in [{low}, {high}]")
    if not np.all(arr == np.round(arr)):
        raise UserError(f"{name} must be integers in [{low}, {high}] for fixed-point models")
    if arr.min() < low or arr.max() > high:
        raise UserError(f"{name} must lie in [{low}, {high}], got values in [{arr.min():g}, {arr.max():g}]")


def check_weights(name: str, weights) -> None:
    """Fixed-point weights: even integers in [-256, 254] (Lava Dense, 8 bits, MIXED sign mode)."""
    import numpy as np

    from lavasnn.errors import UserError

    check_range(name, weights, WEIGHT_MIN, WEIGHT_MAX)
    if np.any(np.asarray(weights) % 2):
        raise UserError(f"{name} must be even integers in [{WEIGHT_MIN}, {WEIGHT_MAX}] "
                        "(an 8-bit mantissa m stored as 2m, as Lava's Dense does)")
