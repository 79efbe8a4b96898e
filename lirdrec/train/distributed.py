"""Several processes training one model with :mod:`torch.distributed`: set-up, teardown and the
few rank-aware helpers the trainer and the evaluator need.

A multi-process run is started by ``torchrun`` (or ``lirdrec train --nproc N``, which calls it):
every process finds its place in the environment variables torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and
:func:`init_distributed` joins the process group. Every rank then holds the dataset, the graphs
and the whole model; :class:`~lirdrec.train.Trainer` shards each global batch across the ranks
and lets :class:`~torch.nn.parallel.DistributedDataParallel` all-reduce the gradients (as
RecBole's DDP trainer does); the evaluator shards users.

Backend: NCCL for CUDA tensors when the run trains on CUDA (``"cpu:gloo,cuda:nccl"``, so the
small CPU-side collectives still go through gloo), gloo otherwise. Every collective is bounded
by a timeout: a rank that dies or hangs makes the others raise
:class:`~lirdrec.errors.DistributedError` (gloo notices a closed connection at once; a silent
peer after ``timeout_s``), never a hang.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from lirdrec.errors import ConfigError, DistributedError, LirdrecError

logger = logging.getLogger(__name__)

__all__ = ["DistInfo", "env_info", "init_distributed", "teardown", "is_distributed", "get_rank",
           "get_world_size", "is_main_process", "threads_per_rank", "rank_seed", "shard_bounds",
           "all_reduce_sum_", "broadcast_values", "all_gather_bytes", "broadcast_bytes",
           "collective_errors", "spawn", "free_port", "DEFAULT_TIMEOUT_S"]

#: Seconds a collective waits for the other ranks before the run stops with an error
#: (``LIRDREC_DIST_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` of
    ``local_world_size`` on this machine, the ``backend`` (``None`` for one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, "
                          f"got {os.environ[name]!r}") from None


def env_info() -> DistInfo:
    """Rank and world size as torchrun's environment variables give them (one process without)."""
    world = _env_int("WORLD_SIZE", 1)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    return DistInfo(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), local_world)


def is_distributed() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 outside a process group; torchrun's ``RANK`` before it starts)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return env_info().rank


def get_world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0: the one process that logs, writes the run directory and checkpoints."""
    return get_rank() == 0


def threads_per_rank(local_world_size: int, cores: int | None = None) -> int:
    """CPU threads per process so that the ranks on one machine share its cores without
    oversubscribing them: ``cores // local_world_size``, at least 1.

    >>> threads_per_rank(2, cores=2), threads_per_rank(3, cores=16), threads_per_rank(4, cores=2)
    (1, 5, 1)
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int(cores or 1) // max(1, int(local_world_size)))


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s own random stream (its BPR negatives), derived from the run's
    ``seed`` by :class:`numpy.random.SeedSequence`: independent across ranks, fixed per rank.

    >>> rank_seed(999, 0) == rank_seed(999, 0) != rank_seed(999, 1)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` items: sizes differ by at
    most one, the first ``n % world_size`` ranks take the larger (``numpy.array_split``).

    >>> [shard_bounds(5, r, 2) for r in range(2)], shard_bounds(1, 1, 2)
    ([(0, 3), (3, 5)], (1, 1))
    """
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def _timeout_s(timeout_s: float | None) -> float:
    if timeout_s is not None:
        return float(timeout_s)
    try:
        return float(os.environ.get("LIRDREC_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        raise ConfigError("LIRDREC_DIST_TIMEOUT must be a number of seconds, "
                          f"got {os.environ['LIRDREC_DIST_TIMEOUT']!r}") from None


def init_distributed(device: str | torch.device = "cpu", timeout_s: float | None = None,
                     threads: int | None = None) -> DistInfo:
    """Join the process group torchrun's environment describes; nothing for one process.

    Sets this process's CPU threads (:func:`threads_per_rank` unless ``threads`` is given), picks
    the backend from ``device`` (CUDA: ``"cpu:gloo,cuda:nccl"`` and ``cuda:<LOCAL_RANK>`` as the
    current device; CPU: gloo) and checks that every rank trains on the same kind of device.
    Idempotent; the group is destroyed by :func:`teardown`: the ``lirdrec`` command calls it when
    the command ends (with a barrier first when it succeeded), :func:`spawn` when ``fn`` returns,
    and an exit hook at interpreter exit for any other caller.

    Args:
        device: the trainer's device. (default: ``"cpu"``)
        timeout_s: how long a collective waits for the other ranks. (default:
            ``LIRDREC_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`)
        threads: CPU threads of this process. (default: :func:`threads_per_rank`)

    Raises:
        ConfigError: CUDA asked for on a rank without a GPU, or ranks on different device kinds.
        DistributedError: the group could not be formed within the timeout.
    """
    info = env_info()
    if info.world_size <= 1:
        return info
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank,
                        info.local_world_size, dist.get_backend())
    device = torch.device(device)
    torch.set_num_threads(threads if threads else threads_per_rank(info.local_world_size))
    if device.type == "cuda":
        if not torch.cuda.is_available() or torch.cuda.device_count() <= info.local_rank:
            raise ConfigError(f"rank {info.rank}: --device cuda but this machine has "
                              f"{torch.cuda.device_count()} GPU(s) for local rank "
                              f"{info.local_rank}")
        torch.cuda.set_device(info.local_rank)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    timeout = _timeout_s(timeout_s)
    try:
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                                timeout=timedelta(seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - store/rendezvous failures come in many types
        raise DistributedError(f"rank {info.rank}: could not join the {info.world_size}-process "
                               f"group at {os.environ.get('MASTER_ADDR')}:"
                               f"{os.environ.get('MASTER_PORT')} within {timeout:g}s "
                               f"({_first_line(exc)})") from exc
    atexit.register(teardown)
    kinds = torch.tensor([float(device.type == "cuda"), -float(device.type == "cuda")])
    with collective_errors("the device check"):
        dist.all_reduce(kinds, op=dist.ReduceOp.MAX)
    if kinds[0] != -kinds[1]:
        raise ConfigError("ranks disagree on the device: some train on CUDA, some on the CPU; "
                          "give every rank a GPU or use --device cpu")
    logger.info("process group: rank %d of %d, backend %s, %d CPU thread(s) per rank",
                info.rank, info.world_size, backend, torch.get_num_threads())
    return DistInfo(info.rank, info.world_size, info.local_rank, info.local_world_size, backend)


def teardown(sync: bool = False) -> None:
    """Leave and destroy the process group, if one is initialised.

    ``sync=True`` (every rank finished its work): a barrier first, so that no rank destroys the
    group while a peer's last collective is still in flight (seen as a rare SIGABRT, "terminate
    called without an active exception", at exit). Never after a failure: a dead peer would make
    the barrier wait for the timeout.
    """
    if dist.is_available() and dist.is_initialized():
        if sync and dist.get_world_size() > 1:
            with contextlib.suppress(Exception):
                dist.barrier()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- collectives
_COMM_WORDS = re.compile(r"gloo|nccl|connection|socket|peer|timed? ?out|store|closed|"
                         r"broken pipe|reset by|abort", re.IGNORECASE)


@contextlib.contextmanager
def collective_errors(what: str) -> Iterator[None]:
    """Turn a failed collective inside the block into one :class:`DistributedError` line naming
    this rank and ``what`` it was doing; lirdrec's own errors and other bugs pass unchanged.
    """
    try:
        yield
    except LirdrecError:
        raise
    except (RuntimeError, OSError) as exc:
        dist_error = getattr(dist, "DistError", ())
        if not (isinstance(exc, dist_error) or _COMM_WORDS.search(str(exc))):
            raise
        raise DistributedError(
            f"rank {get_rank()}: lost another process during {what}: it stopped or did not answer "
            f"within {_timeout_s(None):g}s; its own error is in its output above "
            f"({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _cpu_group_device() -> torch.device:
    """Where small collectives' tensors live: CPU (gloo serves CPU tensors in both backends)."""
    return torch.device("cpu")


def all_reduce_sum_(tensor: torch.Tensor, what: str = "an all-reduce") -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place (nothing for one process); returns it."""
    if is_distributed():
        with collective_errors(what):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_values(values: Sequence[float], src: int = 0,
                     what: str = "a broadcast") -> list[float]:
    """Rank ``src``'s ``values`` on every rank (float64; one process: unchanged)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_cpu_group_device())
    with collective_errors(what):
        dist.broadcast(t, src=src)
    return t.tolist()


def all_gather_bytes(data: bytes, what: str = "an all-gather") -> list[bytes]:
    """Every rank's ``data``, in rank order (one process: ``[data]``)."""
    if not is_distributed():
        return [data]
    world = dist.get_world_size()
    with collective_errors(what):
        size = torch.tensor([len(data)], dtype=torch.int64)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(sizes, size)
        n = int(max(int(s) for s in sizes))
        buf = torch.zeros(n, dtype=torch.uint8)
        buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else buf[:0]
        out = [torch.empty(n, dtype=torch.uint8) for _ in range(world)]
        dist.all_gather(out, buf)
    return [bytes(o[:int(s)].numpy()) for o, s in zip(out, sizes)]


def broadcast_bytes(data: bytes | None, src: int = 0, what: str = "a broadcast") -> bytes:
    """Rank ``src``'s ``data`` on every rank (the others pass ``None``)."""
    if not is_distributed():
        return b"" if data is None else data
    with collective_errors(what):
        size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
        dist.broadcast(size, src=src)
        buf = torch.empty(int(size), dtype=torch.uint8)
        if dist.get_rank() == src and data:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buf, src=src)
    return bytes(buf.numpy())


def save_bytes(state: Any) -> bytes:
    """``torch.save`` of tensors / numbers / dicts into bytes (for :func:`all_gather_bytes`)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_bytes(data: bytes) -> Any:
    """Inverse of :func:`save_bytes`, weights-only: nothing in ``data`` can run code."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- local launch
def free_port() -> int:
    """A TCP port that was free a moment ago on this machine (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn_entry(local_rank: int, fn: Callable[..., Any], nproc: int, port: int,
                 env: dict[str, str], args: tuple) -> None:
    os.environ.update({"RANK": str(local_rank), "WORLD_SIZE": str(nproc),
                       "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(nproc),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **env})
    try:
        fn(*args)
    except BaseException:
        teardown()
        raise
    teardown(sync=True)


def spawn(fn: Callable[..., Any], nproc: int, *args: Any,
          env: dict[str, str] | None = None) -> None:
    """Run ``fn(*args)`` in ``nproc`` fresh local processes that form one process group (what
    torchrun's environment would give them); returns when all have finished.

    For notebooks and tests; the command line uses torchrun (``lirdrec train --nproc N``).
    ``fn`` must be importable (a module-level function). If a process fails, the others are
    stopped and the failure is raised (:class:`torch.multiprocessing.ProcessRaisedException` or
    ``ProcessExitedException``).
    """
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ConfigError(f"spawn: nproc must be >= 1, got {nproc}")
    mp.start_processes(_spawn_entry, args=(fn, nproc, free_port(), dict(env or {}), args),
                       nprocs=nproc, join=True, start_method="spawn")
