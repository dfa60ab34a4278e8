"""Input sparsity for per-synapse traces: compute them only where an input ever spikes.

For an input j that never spikes during a sample, BioGrad's trace stays exactly zero
(e = decay(0) + 0), and so does its gradient trace E. The engine therefore keeps the first
layer's per-synapse traces only for each sample's active inputs: a (B, K) index of them,
K = the largest count in the batch, padded with a column that is always zero. This changes no
number, only the work: rate-coded MNIST digits light up about a fifth of the 784 pixels.
"""

from __future__ import annotations

import torch


def active_columns(x: torch.Tensor) -> torch.Tensor:
    """(B, K) indices of the inputs that spike at least once in x (T, B, n); padding is n."""
    active = (x != 0).any(dim=0)
    n = active.shape[1]
    counts = active.sum(dim=1)
    k = max(int(counts.max()), 1)
    position = torch.arange(n, device=x.device)
    order = torch.argsort((~active).to(torch.int64) * (n + 1) + position, dim=1)[:, :k]
    return torch.where(torch.arange(k, device=x.device)[None, :] >= counts[:, None], n, order)


def gather_columns(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values (B, n) at the indices idx (B, K); index n reads zero."""
    padded = torch.cat([values, torch.zeros_like(values[:, :1])], dim=1)
    return padded.gather(1, idx)


def scatter_columns(values: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    """values (B, n_post, K) back to (B, n_post, n), zero elsewhere."""
    B, n_post, K = values.shape
    full = torch.zeros(B, n_post, n + 1, dtype=values.dtype, device=values.device)
    full.scatter_(2, idx[:, None, :].expand(B, n_post, K), values)
    return full[..., :n]
