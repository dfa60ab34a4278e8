"""Make Lava importable after other code has used multiprocessing.

Lava 0.10 calls ``multiprocessing.set_start_method('fork')`` when its runtime is first
imported, which raises "context has already been set" once anything in the process has
created a multiprocessing object (tqdm's progress bars create a lock, for example).
:func:`prepare` clears a 'fork' context that was set, refuses any other start method with a
clear error (Lava's runtime needs fork), and imports Lava's multiprocessing module at once, so
that a lock created later (before a lazy ``from lava...`` import) cannot break it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys

from lavasnn.errors import UserError

LAVA_MP_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


def prepare() -> None:
    if LAVA_MP_MODULE in sys.modules:
        return
    method = multiprocessing.get_start_method(allow_none=True)
    if method not in (None, "fork"):
        raise UserError(f"Lava needs multiprocessing's 'fork' start method, but this process already uses "
                        f"{method!r}; import lavasnn's Lava parts before setting another start method")
    multiprocessing.set_start_method(None, force=True)
    importlib.import_module(LAVA_MP_MODULE)
