"""Network builders: spiking regressors and operator networks (DeepONet, SepONet)."""

from lavasnn.models.operator import NeuronConfig, Op, SpikingDeepONet, SpikingMLP, SpikingSepONet

__all__ = ["NeuronConfig", "Op", "SpikingDeepONet", "SpikingMLP", "SpikingSepONet"]
