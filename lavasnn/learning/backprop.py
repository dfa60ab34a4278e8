"""Backprop baseline: BioGrad's network trained with surrogate gradients through time (BPTT).

BioGrad (Tang, Kumar, Polykretis, Michmizos 2021, arXiv 2110.14092) is compared against
backpropagation "with the same architecture". This module is that reference: the same neurons,
the same Lava timing, the same loss and the same pseudo-derivative, trained by torch autograd.

Per layer l with input spikes x (the data, or layer l-1's spikes), from zero state::

    a_t  = W x_{t-1} + b                  (Lava's Dense: one step of delay, x_{-1} = 0)
    v'_t = decay v_{t-1} + a_t            (current reset every step: du = 1, dv = 1 - decay)
    s_t  = H(v'_t - vth)                  forward;  ds/dv' = amp [|v'_t - vth| < win]  backward
    v_t  = v'_t (1 - s_t)                 (hard reset, kept in the graph)

so an input spike at step t reaches hidden layer 1 at step t + 1 and the output of a network
with L hidden layers at step t + L + 1. The reset stays differentiable, giving
dv_t/dv'_t = 1 - s_t - v'_t ds_t/dv'_t: the carry factor of BioGrad's eligibility traces
(:func:`lavasnn.engine.steps.mclif_step_float`), so both methods follow the same gradient
path through time. The loss is the cross entropy of the output spike counts
n = sum_t s_t^out, L = -log softmax(n)_y, whose gradient dL/dn = softmax(n) - onehot(y) is
BioGrad's output error.

Initial weights and biases are torch's ``nn.Linear`` default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
as in the BioGrad authors' code. The default optimiser is Adam with lr 3e-4: see
:class:`BackpropConfig` for why.

Since the network is feed-forward and each layer sees only the previous layer's past spikes,
it is simulated layer by layer over all T steps (one (T B, n_pre) x (n_pre, n_post) product
per layer, then the neuron recursion): the same numbers as stepping all layers together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lavasnn.engine import steps
from lavasnn.errors import UserError

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class BackpropConfig:
    """Training settings of the baseline.

    ``decay`` is the voltage kept per step (BioGrad's vdecay; Lava's dv = 1 - decay).
    The default optimiser, Adam with lr 3e-4, won a sweep on mnist5k (T = 50, batch 128,
    5 epochs, seed 0), test accuracy after epoch 5 (one fixed encoding of the test set):

    ==============  =========================================================================
    784-100-10      Adam 1e-4 .800, 3e-4 .869, 1e-3 .811, 3e-3 .632;
                    SGD 3e-4 .648, 1e-3 .813, 3e-3 .866, 1e-2 and above: stuck at .100
    784-500-100-10  Adam 3e-4 .910; SGD 3e-3 .817
    ==============  =========================================================================

    Plain SGD is at its best right below a cliff (from lr 1e-2 the output layer saturates or
    falls silent, where the rectangular surrogate passes no gradient) and its test accuracy
    swings from epoch to epoch; Adam at 3e-4 learns steadily and is the stronger reference.
    """

    hidden: tuple[int, ...] = (500, 100)
    steps: int = 50
    epochs: int = 10
    batch: int = 128
    lr: float = 3e-4
    optimizer: str = "adam"
    seed: int = 0
    decay: float = 0.3
    vth: float = 0.3
    grad_win: float = 0.3
    grad_amp: float = 1.0
    device: str = "cpu"


class SurrogateSpike(torch.autograd.Function):
    """s = H(v - vth) forward; ds/dv = amp [|v - vth| < win] (BioGrad's rectangle) backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, vth: float, win: float, amp: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.vth, ctx.win, ctx.amp = vth, win, amp
        return (v > vth).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        (v,) = ctx.saved_tensors
        window = (torch.abs(v - ctx.vth) < ctx.win).to(v.dtype)
        return grad_s * ctx.amp * window, None, None, None


def lif_sequence(a: torch.Tensor, decay: float, vth: float, win: float, amp: float
                 ) -> torch.Tensor:
    """Spikes (T, B, N) of LIF neurons driven by input currents ``a`` (T, B, N), from v = 0::

        v'_t = decay v_{t-1} + a_t,   s_t = H(v'_t - vth),   v_t = v'_t (1 - s_t)

    computed by the engine's :func:`lavasnn.engine.steps.mclif_step_float` (current reset every
    step, no dendrite) with :class:`SurrogateSpike` as the spike function.
    """
    p = steps.MCLIFParams(du=1.0, dv=1.0 - decay, dd=0.0, vth=vth, bias=0.0, soft_reset=False,
                          grad_win=win, grad_amp=amp)
    zeros = torch.zeros_like(a[0])
    state = steps.MCLIFState(zeros, zeros, zeros)
    spike = lambda v: SurrogateSpike.apply(v, vth, win, amp)  # noqa: E731
    spikes = []
    for a_t in a:
        out, state = steps.mclif_step_float(a_t, zeros, state, p, spike=spike)
        spikes.append(out.s)
    return torch.stack(spikes)


def delay(x: torch.Tensor) -> torch.Tensor:
    """Lava's one-step Dense delay along time: y_t = x_{t-1}, y_0 = 0."""
    return torch.cat([torch.zeros_like(x[:1]), x[:-1]])


class SpikingMLP(nn.Module):
    """BioGrad's feed-forward network n_in -> hidden... -> n_out with Lava timing."""

    def __init__(self, n_in: int, n_out: int, cfg: BackpropConfig):
        super().__init__()
        sizes = [n_in, *cfg.hidden, n_out]
        self.layers = nn.ModuleList(nn.Linear(m, n) for m, n in zip(sizes[:-1], sizes[1:]))
        self.neuron = (cfg.decay, cfg.vth, cfg.grad_win, cfg.grad_amp)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Spikes (T, B, n) of every layer, last = output, for input spikes ``x`` (T, B, n_in)."""
        out = []
        for layer in self.layers:
            x = lif_sequence(layer(delay(x)), *self.neuron)
            out.append(x)
        return out


def check_config(cfg: BackpropConfig) -> None:
    """Refuse settings that cannot train, with one sentence naming the setting."""
    if not cfg.hidden or any(not isinstance(h, int) or h < 1 for h in cfg.hidden):
        raise UserError(f"hidden must be a non-empty tuple of positive layer sizes, got {cfg.hidden!r}")
    for name in ("steps", "epochs", "batch"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if not cfg.lr > 0:
        raise UserError(f"lr must be a positive learning rate, got {cfg.lr!r}")
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer {cfg.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise UserError(f"device {cfg.device!r} is not a torch device such as 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {cfg.device!r} needs CUDA, which this torch cannot use; use 'cpu'")


def _input(data, split: str, idx: np.ndarray, cfg: BackpropConfig, rng: np.random.Generator
           ) -> torch.Tensor:
    return torch.from_numpy(data.spikes(split, idx, cfg.steps, rng)).to(cfg.device, torch.float32)


@torch.no_grad()
def evaluate(model: SpikingMLP, data, cfg: BackpropConfig, epoch: int) -> float:
    """Test accuracy of argmax(output spike counts) after ``epoch`` (1-based).

    Inputs are encoded with ``default_rng([cfg.seed, epoch - 1, 1])``, as
    :func:`lavasnn.train.biograd.evaluate` does, so both methods are tested on the same spikes.
    Ties go to the lowest class index.
    """
    rng = np.random.default_rng([cfg.seed, epoch - 1, 1])
    y = data.y_test
    correct = 0
    for start in range(0, len(y), cfg.batch):
        idx = np.arange(start, min(start + cfg.batch, len(y)))
        counts = model(_input(data, "test", idx, cfg, rng))[-1].sum(0)
        correct += int((counts.argmax(1).cpu().numpy() == y[idx]).sum())
    return correct / len(y)


def train_backprop(data, cfg: BackpropConfig, progress: bool = False) -> dict:
    """Train the baseline on ``data`` (a :class:`lavasnn.data.Dataset`) and test it every epoch.

    Per batch: mean cross entropy of the output counts, BPTT, one optimiser step. The shuffle
    and the training inputs' encoding draw from ``default_rng(cfg.seed)``, the test inputs'
    from :func:`evaluate`'s generator, the initial weights from ``torch.manual_seed(cfg.seed)``
    (bitwise repeatable on the CPU). Returns ``test_accuracy``
    and ``train_accuracy`` of the last epoch (train: accuracy of the predictions made while
    training on it), ``epochs``, ``history`` (per epoch: ``epoch``, ``train_accuracy``,
    ``test_accuracy``, ``loss`` = mean training loss, ``seconds`` = training time without the
    test) and ``samples_per_s`` (training samples per second of training time).
    """
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    model = SpikingMLP(data.n_inputs, data.n_classes, cfg).to(cfg.device)
    optimizer_class = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    optimizer = optimizer_class(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    n = len(data.y_train)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        start_time = time.perf_counter()
        correct, loss_sum = 0, 0.0
        order = rng.permutation(n)
        with tqdm(total=n, desc=f"epoch {epoch}/{cfg.epochs}", unit="sample",
                  disable=not progress) as bar:
            for start in range(0, n, cfg.batch):
                idx = order[start:start + cfg.batch]
                x = _input(data, "train", idx, cfg, rng)
                y = torch.from_numpy(data.y_train[idx]).to(cfg.device)
                counts = model(x)[-1].sum(0)
                loss = F.cross_entropy(counts, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                correct += int((counts.argmax(1) == y).sum())
                loss_sum += float(loss) * len(idx)
                seen = start + len(idx)
                bar.update(len(idx))
                bar.set_postfix(acc=f"{correct / seen:.3f}",
                                samples_s=f"{seen / (time.perf_counter() - start_time):.0f}")
        seconds = time.perf_counter() - start_time
        history.append({"epoch": epoch, "train_accuracy": correct / n,
                        "test_accuracy": evaluate(model, data, cfg, epoch),
                        "loss": loss_sum / n, "seconds": seconds})
    return {"test_accuracy": history[-1]["test_accuracy"],
            "train_accuracy": history[-1]["train_accuracy"], "epochs": cfg.epochs,
            "history": history,
            "samples_per_s": n * cfg.epochs / sum(h["seconds"] for h in history)}
