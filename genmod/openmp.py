"""How OpenMP threads wait, chosen before torch starts them, so that shared cores do not
collapse a run.

Every parallel region of an eager or compiled CPU kernel ends at a barrier. By default the
threads that reach it spin for a long while before sleeping; when another process holds the
cores, a spinning thread burns the time slice the descheduled one needs, and a step that takes
milliseconds alone takes many times longer. Passive waiting removes the collapse but slows a
run alone; a short spin costs nothing alone and removes much of it
(``benchmarks/shared_cores.py``; the figures, per CPU, are in ``benchmarks/README.md``).

So: on a machine already busy when the command starts, or where another genmod training is
running (two runs started together both see an idle machine), threads wait passively;
otherwise they spin briefly. A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is always
kept.
"""

from __future__ import annotations

import atexit
import math
import os
import tempfile
import time
from pathlib import Path

SHORT_SPIN = "20000"
"""Iterations libgomp spins at a barrier before sleeping (its default is 300,000)."""
BUSY = 0.75
"""The load per usable core (1-minute average) from which the machine counts as busy."""


CGROUP_QUOTAS = (Path("/sys/fs/cgroup/cpu.max"), Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
"""Where Linux says how much CPU time this process's container may use: cgroup v2, then v1."""


def usable_cores() -> int:
    """The cores this process may use: its affinity mask, capped by its container's CPU quota
    (a container granted 2 CPUs on a 64-core host may run 2 threads' worth), not the machine's."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup allows per period, or None when unlimited or unknown."""
    v2, v1 = CGROUP_QUOTAS
    try:
        if v2.is_file():
            allowed, _, per = v2.read_text().partition(" ")
            return None if allowed == "max" else int(allowed) / int(per)
        if v1.is_file():
            quota = int(v1.read_text())
            period = int(v1.with_name("cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


SETTLE_S = 0.3
"""How long a starting training waits, after announcing itself, for trainings started at the
same moment to announce themselves too."""


def trainings_dir() -> Path:
    """Where running genmod trainings of this user announce themselves, one file per process."""
    return (
        Path(tempfile.gettempdir())
        / f"genmod-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        / "training"
    )


def announce_training() -> int:
    """Announce this process as a running training (until it exits) and return how many other
    trainings are running. Files of processes that are gone are removed."""
    folder = trainings_dir()
    mine = folder / str(os.getpid())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mine.touch()
    except OSError:
        return 0  # no shared temporary folder: decide on the load alone
    atexit.register(mine.unlink, missing_ok=True)
    time.sleep(SETTLE_S)
    others = 0
    for entry in folder.iterdir():
        if entry == mine or not entry.name.isdigit():
            continue
        if _alive(int(entry.name)):
            others += 1
        else:
            entry.unlink(missing_ok=True)
    return others


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's: not ours to count, but not gone either
        return True
    return True


def choose_wait_policy(other_trainings: int = 0) -> str | None:
    """Set the waiting of OpenMP threads for this process and the ones it starts, unless the
    user did; returns what was set (``None``: the user's settings are kept). Call it before
    torch is imported: libgomp reads these when it loads. ``other_trainings``: genmod
    trainings running beside this one (:func:`announce_training`)."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): spin briefly
        load = 0.0
    if other_trainings or load >= BUSY * usable_cores():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "OMP_WAIT_POLICY=PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return f"GOMP_SPINCOUNT={SHORT_SPIN}"
