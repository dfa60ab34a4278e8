"""Lava Processes and ProcessModels for the Loihi-2-expressible variant of BioGrad's traces.

The synapses are Lava's own ``LearningDense`` with the ``Loihi3FLearningRule`` written by
:func:`lavasnn.procs.loihi2.process.biograd_loihi2_rule`; the neurons
(:class:`~lavasnn.procs.loihi2.process.Loihi2TraceNeuron`) send the third factors. This folder
holds only ``process.py`` and ``models.py`` because Lava's compiler imports every module here.
"""
