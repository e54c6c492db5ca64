"""How many CPU threads fastsep's torch work uses, so that it never oversubscribes the cores it is given.

Why this exists: on a 2-core machine with another busy process, the bundled backbone on 4 s took 0.026 s with one
thread and 0.94 s with two. Two things compound there. (1) More threads than the cores actually available: a
parallel region waits for its slowest thread, and a thread the scheduler parked behind another process holds every
barrier for a whole time slice. (2) OpenMP's default *active* wait: threads that reach a barrier spin for a while
before sleeping, burning the very core the late thread needs. fastsep therefore

* counts the cores it is given: the process's CPU affinity (``os.sched_getaffinity``, what ``taskset``, cpusets and
  most container runtimes restrict), further capped by a cgroup v2 CPU quota (``cpu.max``, what ``docker --cpus``
  sets), rather than the machine's core count;
* divides them among the workers that share them: threads per worker = cores // workers (torchrun's
  ``LOCAL_WORLD_SIZE`` processes count as workers);
* bounds how long OpenMP threads spin at a barrier before they sleep (``GOMP_SPINCOUNT=1000``) when fastsep is
  imported before torch and neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY`` is set (OpenMP reads them once, when
  torch loads it; :func:`wait_policy` says what is in force). Measured on this project's 2-core virtual machine
  (``benchmarks/bench_contention.py``; bundled backbone on 4 s, batch 1 / one training step of it on 4 x 2 s):
  not spinning at all (``OMP_WAIT_POLICY=PASSIVE``, fastsep's earlier choice) costs 0.10-0.19 s / 1.2-1.7 s on the
  quiet machine, because a sleeping thread is woken through the hypervisor at every one of the thousands of small
  parallel regions of a call; libgomp's own default (300000 spins) and 30000 spins run 0.05-0.09 s / 0.37-0.49 s
  quiet, but collapse with a busy process on each core (1.1-4.7 s / up to 15 s: spinning threads hold the core the
  late one needs); 1000 spins run 0.07-0.28 s / 0.45-0.83 s quiet (this VM is noisy) and do not collapse
  (0.13-0.14 s / 0.56-1.4 s contended). On a machine shared with other busy work, ``FASTSEP_NUM_THREADS=1`` is
  still a safe choice; for a machine given to one job, ``GOMP_SPINCOUNT=30000`` is a little faster.

Overrides, strongest first: :func:`set_threads` (``fastsep --threads`` on the CLI), ``FASTSEP_NUM_THREADS``,
``OMP_NUM_THREADS`` (except the ``1`` torchrun writes for its workers by default, which would leave all but one core
per worker idle), then the rule above.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Optional

__all__ = ["available_cores", "physical_cores", "default_threads", "set_threads", "apply_default_threads",
           "wait_policy", "local_workers", "limited"]

ENV_THREADS = "FASTSEP_NUM_THREADS"

# Set before torch (and with it OpenMP) is loaded, or not at all: libgomp reads its wait settings once at start-up.
SPIN_COUNT = 1000
_POLICY_SET_BY_FASTSEP = False
if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    _POLICY_SET_BY_FASTSEP = True


def _cgroup_quota_cores(path: str = "/sys/fs/cgroup/cpu.max") -> Optional[float]:
    """Cores allowed by a cgroup v2 CPU quota (``"max 100000"`` means none), or None where there is none."""
    try:
        with open(path, "r", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(float(quota) / float(period), 1.0)
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota_cores()
    if quota is not None:
        cores = min(cores, int(quota))  # a fractional quota rounds down: 1.5 cores run 1 thread without waits
    return max(1, cores)


def _thread_siblings(cpu: int) -> Optional[str]:
    """The hardware threads sharing ``cpu``'s core (sysfs' thread_siblings_list), or None where it cannot be read."""
    try:
        with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list", "r", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on: hyperthreads of one core count once (all CPUs count
    when the topology cannot be read), capped like :func:`available_cores`."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return available_cores()
    siblings = [_thread_siblings(cpu) for cpu in cpus]
    cores = len(cpus) if any(s is None for s in siblings) else len(set(siblings))
    return max(1, min(cores, available_cores()))


def local_workers() -> int:
    """Processes sharing this machine's cores in one job: torchrun's ``LOCAL_WORLD_SIZE`` (else 1)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _env_int(name: str) -> Optional[int]:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value


def default_threads(workers: Optional[int] = None) -> int:
    """Intra-op threads for one of ``workers`` workers (default: :func:`local_workers`) sharing the cores.

    ``FASTSEP_NUM_THREADS`` wins, then ``OMP_NUM_THREADS`` (unless it is torchrun's automatic ``1``), then
    ``physical_cores() // workers`` (at least 1): a second thread per core slows these kernels rather than helping."""
    explicit = _env_int(ENV_THREADS)
    if explicit is not None:
        return explicit
    workers = local_workers() if workers is None else max(1, int(workers))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    torchrun_default = omp == "1" and "TORCHELASTIC_RUN_ID" in os.environ and local_workers() > 1
    if omp and not torchrun_default:
        try:
            return max(1, int(omp.split(",")[0]))
        except ValueError:
            pass
    return max(1, physical_cores() // workers)


def set_threads(threads: Optional[int] = None, workers: Optional[int] = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: :func:`default_threads` for ``workers``); returns
    the number set. Inter-op threads are left alone: fastsep runs no inter-op parallel work."""
    import torch

    if threads is None:
        threads = default_threads(workers)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    torch.set_num_threads(int(threads))
    return int(threads)


def apply_default_threads(workers: Optional[int] = None) -> int:
    """What the CLI commands call first: :func:`set_threads` with the defaults."""
    return set_threads(None, workers)


@contextlib.contextmanager
def limited(threads: Optional[int]):
    """Run the block with at most ``threads`` intra-op threads (None: unchanged), restoring the count after."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads >= before:
        yield before
        return
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def wait_policy() -> str:
    """The OpenMP wait settings in force for this process, and who chose them (for logs and benchmark reports)."""
    parts = [f"{name}={os.environ[name]}" for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if name in os.environ]
    value = ", ".join(parts) if parts else "OpenMP's default (spin 300000 times, then sleep)"
    return f"{value} (set by fastsep)" if _POLICY_SET_BY_FASTSEP else value
