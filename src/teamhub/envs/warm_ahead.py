"""Warm parents ready before the notebook opens, and gone when nobody is there
(`envs.warm_kernels = "on-demand"`, run by teamhub.serverext in the user's server).

A kernel forked from its environment's warm parent (teamhub.envs.warm_kernels) answers in
~0.1 s, but the first kernel of an environment in a server waits for its parent to start
(~0.3 s, about a normal start). What tells a server that a notebook may open soon is a
front end listing the kernels: JupyterLab asks for them when it opens (`/api/kernelspecs`,
so does Notebook 7) and teamhub's JupyterLab extension asks for their fingerprint every
2 s while the page is visible. Then this module starts, in the background, the parents
of the kernels the user started last (teamhub.envs.recent_kernels, across their servers)
or of the default kernel for a user who has started none, at most AHEAD of them: the
notebook opened after that gets its kernel from a parent that is already up.

An environment the user has not started a kernel of lately is not among those. For it,
teamhub's JupyterLab extension sends a hint once the pointer rests on the env's launcher
card, on a notebook of it in the file browser or on a link to one in rendered Markdown
(teamhub.envs.notebook_kernel finds its kernel), or the env is chosen in the kernel
dialog (`POST <base>/teamhub/api/warm-parents`, WarmAhead.intended): its parent starts
then, while the hand moves to click. So does a page opened at a notebook's URL, while
JupyterLab loads (teamhub.envs.warm_hints). A parent that no kernel came of goes after a
minute, and no more than HINTED such parents run at once.

What it costs, and when:
- Nothing while no front end is open: a parent that has no running kernel and whose
  server was not asked for the kernel list for `idle_exit` seconds is stopped (`prewarm`'s
  parent excepted: it lives as long as the server). An idle server is one process again.
- Its start (~0.35 s of one core) is work a notebook's first kernel would otherwise have
  done, moved earlier, and done only while at least half a core of the machine is
  idle: when a whole team logs in at once, server starts come first, and the parents
  start at a later listing.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from tornado.ioloop import IOLoop

from . import recent_kernels
from .warm_kernels import kernel_command, parents

AHEAD = 2  # kernels whose parents are started for an open front end
RECHECK = 10.0  # seconds between two looks (teamhub's Lab extension asks every 2 s)
RETRY = 2.0  # the same, after a look that found the machine busy (to 2x that)
SAMPLE = 1.0  # seconds over which the machine's idle CPU is measured
# Idle CPU needed to start parents, in cores: ~0 while a whole team's servers start,
# and one user's long computation on a 2-core machine still leaves enough.
SPARE_CORES = 0.5
# Parents a front end's hints started and no kernel came of yet, at most (a pointer
# moving across the launcher's cards starts no more than this).
HINTED = 2


def cpu_times(stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(idle, total) CPU time of the whole machine so far, in clock ticks."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    ticks = [int(v) for v in fields[1:9]]  # guest time is counted in user time already
    return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)  # idle + iowait


def spare_cores(before: tuple[int, int] | None, after: tuple[int, int] | None,
                cpus: int) -> float:
    """Idle CPU between two cpu_times() samples, in cores (0 when unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return (after[0] - before[0]) / (after[1] - before[1]) * cpus


class WarmAhead:
    """Starts the parents an open front end will likely want, and stops unused ones."""

    def __init__(self, serverapp: Any, idle_exit: float) -> None:
        self.serverapp = serverapp
        self.idle_exit = idle_exit
        self.next_look = 0.0
        self.looking = False

    def wanted(self) -> list[tuple[list[str], dict[str, str]]]:
        """The kernels to have parents for, whose parent does not run now: the first
        AHEAD of the recent and default kernels that have parents at all (a kernel of
        another language, started normally, takes no place)."""
        names = [*recent_kernels.recent(), self.serverapp.kernel_manager.default_kernel_name]
        seen: set[str] = set()
        found = []
        counted = 0
        for name in names:
            if counted == AHEAD:
                break
            if name in seen:
                continue
            seen.add(name)
            try:
                cmd, env = kernel_command(self.serverapp, name)
            except Exception:  # noqa: BLE001 - an env removed since: nothing to warm
                continue
            running = parents().running(cmd, env)
            if running is None:
                continue
            counted += 1
            if not running:
                found.append((cmd, env))
        return found

    def intended(self, name: str) -> bool:
        """A front end says a kernel of NAME is about to be started (the pointer rests on
        its launcher card): start its parent now unless it runs. No CPU gate: that kernel
        would need the CPU a moment later anyway. At most HINTED parents that no kernel
        came of run at once. Whether NAME's parent runs or starts now; KeyError (the
        spec manager's own) when there is no kernel NAME."""
        parents().log = self.serverapp.log
        cmd, env = kernel_command(self.serverapp, name)
        running = parents().running(cmd, env)
        if running is None:
            return False
        if running:
            return True
        if parents().hinted() >= HINTED:
            self.serverapp.log.info("teamhub: no warm parent for %s ahead of its kernel: %d "
                                    "hinted ones are still unused", name, HINTED)
            return False
        return parents().prewarm(cmd, env, hinted=True)

    def listed(self) -> None:
        """A front end listed the kernels: the parents count as used, and the missing
        ones start once the machine has CPU to spare (in the loop's thread: a parent's
        life is tied to that thread's)."""
        parents().log = self.serverapp.log
        parents().touch()
        now = time.monotonic()
        if self.looking or now < self.next_look:
            return
        self.next_look = now + RECHECK
        if not self.wanted():
            return
        self.looking = True
        IOLoop.current().call_later(SAMPLE, self._start_if_spare, cpu_times())

    def _start_if_spare(self, before: tuple[int, int] | None) -> None:
        self.looking = False
        spare = spare_cores(before, cpu_times(), os.cpu_count() or 1)
        if spare < SPARE_CORES:
            self.serverapp.log.debug("teamhub: warm parents not started ahead: %.1f idle "
                                     "cores", spare)
            # Spread out: after a burst, a whole team's servers find the machine idle
            # at about the same moment, and would all start their parents in it.
            self.next_look = time.monotonic() + RETRY * (1 + random.random())
            return
        for cmd, env in self.wanted():
            parents().prewarm(cmd, env)

    def expire(self) -> None:
        parents().expire(self.idle_exit)
