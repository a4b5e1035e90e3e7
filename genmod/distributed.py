"""Multi-process training on torch.distributed, as launched by ``torchrun``.

Each process (rank) trains on its shard of every global batch; DistributedDataParallel
averages the gradients, so N processes with the same global batch follow the single-process
run up to the noise of the reparameterization draws. Only rank 0 writes files or prints, and
only rank 0 reads a run folder being resumed (:func:`from_main`), so the processes on other
machines need no copy of it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist

from genmod.errors import ConfigError, GenmodError, one_line
from genmod.openmp import usable_cores

T = TypeVar("T")


@dataclass(frozen=True)
class Topology:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def topology_from_env() -> Topology:
    """The process's place in a ``torchrun`` launch (one process when not launched by it)."""
    return Topology(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


LEAVE_TIMEOUT_S = 120
"""How long a finished rank waits for its peers to finish before leaving the group."""


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(topology: Topology) -> Iterator[None]:
    """Be part of the process group for the duration of the block, and leave it however the
    block ends: a failure during set-up must not leave the group (and its peers) hanging.

    Joined before the config is known (a resumed run's comes from rank 0), so with CUDA both
    backends are set up and each tensor takes its device's.
    """
    if not topology.distributed or dist.is_initialized():
        yield
        return
    cuda = torch.cuda.is_available()
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    try:
        yield
    except BaseException:
        dist.destroy_process_group()  # a peer may be gone: wait for nobody
        raise
    try:
        # Every rank leaves together: a rank that tears down its gloo threads while a peer
        # still talks to it can abort the process ("terminate called without an active
        # exception"). Bounded, so that a peer that died late fails this rank, not hangs it.
        if cuda:
            dist.barrier()
        else:
            dist.monitored_barrier(timeout=timedelta(seconds=LEAVE_TIMEOUT_S))
    finally:
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average ``parameters``' gradients over the processes, in place (what
    DistributedDataParallel does for the automatic loop, for a model that owns its step)."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(read: Callable[[], T]) -> T:
    """``read()`` on rank 0, its value on every rank; an error it raises is raised on every
    rank, so no process waits for a peer that has stopped."""
    if not dist.is_initialized():
        return read()
    outcome: tuple[Any, Exception | None] = (None, None)
    if dist.get_rank() == 0:
        try:
            outcome = (read(), None)
        except GenmodError as exc:
            outcome = (None, exc)
        except Exception as exc:  # noqa: BLE001 - passed to the peers in words, raised here as it is
            broadcast((None, GenmodError(f"rank 0 failed: {one_line(exc)}")))
            raise
    value, error = broadcast(outcome)
    if error is not None:
        raise error
    return cast(T, value)


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _die_with_parent() -> None:
    """In a worker, before it starts: be stopped when the launcher dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(command: list[str], nproc: int) -> int:
    """Run ``command`` as ``nproc`` processes of one process group on this machine, the way
    ``torchrun --standalone`` would; returns the first non-zero exit code, or 0.

    When one process fails the others are stopped, so none waits forever for a peer.
    """
    cores = usable_cores()
    if nproc > cores:
        raise ConfigError(
            f"--nproc {nproc} is more than the {cores} cores this process may use: each process "
            f"trains on at least one core, so use --nproc {cores} or fewer"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = str(max(1, cores // nproc))
    processes = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nproc),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(nproc),
            # Python 3.11+: the current folder is not put on the workers' import path.
            "PYTHONSAFEPATH": "1",
        }
        env.setdefault("OMP_NUM_THREADS", threads)
        processes.append(subprocess.Popen(command, env=env, preexec_fn=_die_with_parent))
    failed: list[int] = []
    try:
        while True:
            codes = [p.poll() for p in processes]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            p.wait()
    return failed[0] if failed else 0
