"""A test-only model that provokes worker faults (registered in code: `Registry.load(extra=[FaultPlugin()])`).

`crashy` is item_pop whose fit, on seed `die_on`, kills its own process (`how`: sigkill, or exit for os._exit(3))
or raises (`how: raise`); with `once` (a file path) it does so only while that file does not exist, creating it
first, so that a retry succeeds. `sleep` seconds are spent in fit first (a slow cell to kill the driver during)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.plugin import ModelSpec, Param, hookimpl
from plugins.models.popularity import ItemPop


class Crashy(ItemPop):
    def __init__(self, die_on: int = -1, how: str = "sigkill", once: str | None = None, sleep: float = 0.0):
        self.die_on, self.how, self.once, self.sleep = die_on, how, once, sleep

    def fit(self, train, loss, ctx):
        time.sleep(self.sleep)
        if ctx.seed == self.die_on and (self.once is None or not Path(self.once).exists()):
            if self.once is not None:
                Path(self.once).touch()
            if self.how == "raise":
                raise RuntimeError(f"crashy raised on seed {ctx.seed}")
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        super().fit(train, loss, ctx)


class FaultPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="crashy", factory=Crashy, score_kind="intensity",
                           description="item_pop that kills its worker on one seed (tests)",
                           params=(Param("die_on", "int", -1, "the seed whose fit dies"),
                                   Param("how", "str", "sigkill", "sigkill, exit or raise"),
                                   Param("once", "str", None, "marker file: die only while it is missing",
                                         nullable=True),
                                   Param("sleep", "float", 0.0, "seconds to sleep in fit"))))
