"""Crosscheck of on-chip forward-gradient learning: Lava processes versus the batched engine.

A small spiking MLP (2-H-H-1) trains on Mexican hat samples with the fixed-point rule of
:mod:`lavasnn.engine.perturb_fixed`, once as Lava processes in ``Loihi2SimCfg`` and once in
:class:`~lavasnn.engine.perturb_fixed.FixedForwardGradEngine`, from the same integer weights
and in the same sample order. The two must end with identical integer weights and biases and
report the same training loss.
"""

from __future__ import annotations

import numpy as np
import torch

from lavasnn.data import sciml
from lavasnn.engine import perturb_fixed as pf
from lavasnn.errors import UserError
from lavasnn.models.operator import SpikingMLP


def crosscheck_perturb(samples: int = 24, epochs: int = 2, hidden: int = 8, steps: int = 8, batch: int = 5,
                       mode: str = "layerwise", seed: int = 0, grad: str = "surrogate", input_lr_scale: float = 1.0,
                       lr: float | None = None, directions: int = 1, rule: str = "exact") -> dict:
    """Train both executors; ``weight_mismatches`` counts differing integers (must be 0; so must
    ``tangent_copy_mismatches``, rule 'loihi2''s tangent synapses against the weights) and
    ``weights_changed`` how many training changed (shows the check is not vacuous). ``lr``
    defaults to 0.05, and to 0.2 in activity mode, whose training default is also the larger
    (:data:`lavasnn.train.perturb_fixed.FIXED_TRAIN`), so that most weights move (rule 'loihi2':
    0.002, at which most third factors d stay within their 7 bits). ``rule`` 'loihi2': Lava's own
    LearningDense against the engine's model of it."""
    from lavasnn.backends.perturb_lava import lava_trainer

    if samples < 1 or epochs < 1 or hidden < 1 or steps < 1 or batch < 1:
        raise UserError("samples, epochs, hidden, steps and batch must all be >= 1")
    data = sciml.mexican_hat(20)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data.x_train), size=min(samples, len(data.x_train)), replace=False)
    x, y = data.x_train[pick], data.y_train[pick]
    if lr is None:  # rule 'loihi2': small enough that most third factors fit their 7 bits
        lr = 0.2 if mode == "activity" else 0.002 if rule == "loihi2" else 0.05
    cfg = pf.FixedNetConfig((2, hidden, hidden, 1), steps=steps, mode=mode, lr=lr, batch=batch, seed=seed, grad=grad,
                            input_lr_scale=input_lr_scale, directions=directions, rule=rule)
    init = pf.quantize_params(SpikingMLP(cfg.sizes).init(rng))
    orders = [rng.permutation(len(x)) for _ in range(epochs)]

    engine = pf.FixedForwardGradEngine(cfg, init)
    engine_losses = []
    for order in orders:
        batch_losses = [engine.step(torch.as_tensor(x[order[i:i + batch]]), torch.as_tensor(y[order[i:i + batch]]))
                        * len(order[i:i + batch]) for i in range(0, len(x), batch)]
        engine_losses.append(sum(batch_losses) / len(x))

    lava_losses, lava_layers, copy_mismatches = [], [], [0]

    def on_epoch(epoch, layers, loss, updates):
        lava_losses.append(loss)
        lava_layers[:] = layers
        if rule == "loihi2":  # read while the runtime is live
            copy_mismatches[0] = lava.copy_mismatches()

    lava = lava_trainer(cfg, init, x, y, orders)
    lava.run(on_epoch)
    mismatches = changed = total = 0
    for e, l, i in zip(engine.layers, lava_layers, init):
        for a, b, a0 in zip(e, l, i):
            mismatches += int((a != b).sum())
            changed += int((a != a0).sum())
            total += a.numel()
    return {"samples": len(x), "epochs": epochs, "mode": mode, "grad": grad, "sizes": list(cfg.sizes), "steps": steps,
            "batch": batch, "seed": seed, "lr": cfg.lr, "input_lr_scale": input_lr_scale, "directions": directions,
            "rule": rule, "updates": engine.updates,
            "weight_mismatches": mismatches,
            # rule 'loihi2', forward gradients: the tangents' synapse copies against the weights (in Lava)
            "tangent_copy_mismatches": copy_mismatches[0],
            "weights_changed": changed, "parameters": total, "engine_train_loss": engine_losses,
            "lava_train_loss": lava_losses}
