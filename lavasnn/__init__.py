"""lavasnn: spiking neural networks to Intel Loihi, with on-chip learning.

Compile trained networks to Loihi's fixed-point formats, train them with on-chip learning
rules (BioGrad, randomized forward gradients) inside Lava's simulator, and estimate energy
and latency per sample on Loihi 1 and Loihi 2 against a GPU reference.
"""

__version__ = "0.1.0"
