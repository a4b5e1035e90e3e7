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
kept. A training measures how busy the cores are while it waits for its neighbours to announce
themselves (Linux's CPU counters over that moment), not by the 1-minute load average, which
still counts a job that has just ended or been stopped: passive waiting costs a small model
about 1.7x on idle cores. A stopped training (SIGSTOP) is not counted as a neighbour.
"""

from __future__ import annotations

import atexit
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHORT_SPIN = "20000"
"""Iterations libgomp spins at a barrier before sleeping (its default is 300,000)."""
BUSY = 0.75
"""The busy share of the usable cores from which the machine counts as busy."""
PROC_STAT = Path("/proc/stat")


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


@dataclass(frozen=True)
class Neighbours:
    """What a starting training shares the machine with."""

    trainings: int
    """Other genmod trainings of this user, running (not stopped)."""
    busy_cores: float
    """Cores' worth of CPU time other processes used as it started."""


def announce_training() -> Neighbours:
    """Announce this process as a running training (until it exits) and return what it shares
    the machine with. Files of processes that are gone are removed."""
    folder = trainings_dir()
    mine = folder / str(os.getpid())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mine.touch()
    except OSError:
        return Neighbours(0, busy_cores(SETTLE_S))  # no shared temporary folder: the load alone
    atexit.register(mine.unlink, missing_ok=True)
    busy = busy_cores(SETTLE_S)
    return Neighbours(running_trainings(), busy)


def running_trainings() -> int:
    """Other genmod trainings of this user that are running now (stopped ones take no CPU);
    the files of those that are gone are removed."""
    folder, others = trainings_dir(), 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.name == str(os.getpid()) or not entry.name.isdigit():
            continue
        state = _state(int(entry.name))
        if state is None:
            entry.unlink(missing_ok=True)
        elif state not in "Tt":  # stopped, by SIGSTOP or a debugger: it takes no CPU
            others += 1
    return others


class ThreadShare:
    """Divides this process's threads with the genmod trainings running beside it, as they
    start and stop, unless the user set ``OMP_NUM_THREADS``.

    The wait policy is fixed when torch loads, so a training that started alone keeps its
    short spin when another starts later; with two threads each on two cores, its barriers then
    wait for descheduled threads, far beyond a fair share's slowdown (``benchmarks/README.md``).
    One thread has no barrier to wait at. Call
    :meth:`adjust` often: it looks at most every ``every`` seconds.
    """

    def __init__(self, every: float = 2.0) -> None:
        import torch

        self._pinned = "OMP_NUM_THREADS" in os.environ
        self._base = min(torch.get_num_threads(), usable_cores())  # torch's choice, alone
        self._every, self._next = every, 0.0
        self._announced: Path | None = None

    def start(self) -> None:
        """Count this process among the running trainings until :meth:`restore`: ``genmod
        run`` announced it before torch loaded (:func:`announce_training`), a training started
        from Python (a notebook, ``genmod.train``) is announced here."""
        mine = trainings_dir() / str(os.getpid())
        try:
            if mine.exists():
                return
            mine.parent.mkdir(parents=True, exist_ok=True)
            mine.touch()
        except OSError:
            return
        self._announced = mine

    def adjust(self) -> int | None:
        """Set the thread count for the trainings running now; returns it when it changed."""
        now = time.monotonic()
        if self._pinned or now < self._next:
            return None
        self._next = now + self._every
        import torch

        threads = max(1, self._base // (1 + running_trainings()))
        if threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)
        return threads

    def restore(self) -> None:
        """Give back the threads taken away, for what the process does next, and withdraw the
        announcement :meth:`start` made."""
        import torch

        if not self._pinned and torch.get_num_threads() != self._base:
            torch.set_num_threads(self._base)
        if self._announced is not None:
            self._announced.unlink(missing_ok=True)
            self._announced = None


def busy_cores(window: float) -> float:
    """Cores' worth of CPU time used, over the next ``window`` seconds (this process sleeps
    through it), on the cores this process may run on: from Linux's per-CPU counters;
    elsewhere the 1-minute load average."""
    try:
        before = _cpu_times()
        time.sleep(window)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        time.sleep(window)
        return _load_average()
    busy = 0.0
    for cpu, (total, idle) in after.items():
        spent = total - before[cpu][0]
        busy += 0.0 if spent <= 0 else 1 - (idle - before[cpu][1]) / spent
    return busy


def _cpu_times() -> dict[int, tuple[int, int]]:
    """For each CPU this process may run on: its time so far and the idle part of it (idle
    and waiting for I/O), in ticks."""
    try:
        allowed: set[int] | None = os.sched_getaffinity(0)
    except AttributeError:
        allowed = None
    times = {}
    for line in PROC_STAT.read_text().splitlines():
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        cpu, fields = int(name[3:]), [int(v) for v in values[:8]]
        if allowed is None or cpu in allowed:
            times[cpu] = (sum(fields), fields[3] + fields[4])
    if not times:
        raise ValueError("no CPU lines")
    return times


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): count the machine idle
        return 0.0


def _state(pid: int) -> str | None:
    """A process's state letter (``R``, ``S``, ``T`` for stopped, ...; ``?`` where the system
    does not say), or None once it has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # alive, another user's: not ours to count, but not gone either
        return "?"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[0]  # the field after the command's name


def choose_wait_policy(neighbours: Neighbours | None = None) -> str | None:
    """Set the waiting of OpenMP threads for this process and the ones it starts, unless the
    user did; returns what was set (``None``: the user's settings are kept). Call it before
    torch is imported: libgomp reads these when it loads. ``neighbours``: what a training
    shares the machine with (:func:`announce_training`); other commands go by the load
    average."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    if neighbours is None:
        neighbours = Neighbours(0, _load_average())
    if neighbours.trainings or neighbours.busy_cores >= BUSY * usable_cores():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "OMP_WAIT_POLICY=PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return f"GOMP_SPINCOUNT={SHORT_SPIN}"
