"""Lava Processes (interfaces) and their ProcessModels (behaviour), nothing else.

Lava's compiler imports every module of a Process's folder when it looks for models, so each
folder holds only ``process.py`` and ``models.py`` (``loihi2/``: the learning-engine variant). The models call the step functions of
:mod:`lavasnn.engine.steps`, so the Lava simulation and the batched engine share one arithmetic.
"""
