"""Process bookkeeping on Linux /proc: process trees, CPU time, RSS, ports. No psutil needed."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

MB = 1e6  # memory bars are in megabytes (10^6 bytes); /proc reports KiB


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, session id) of ``pid``, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def family(root: int) -> set[int]:
    """``root``, its descendants, and every process in its session (servers started with
    ``start_new_session``). Some frameworks start children in sessions of their own (BentoML's
    workers) and some reparent helpers (Ray), so both relations are followed."""
    stats = {pid: st for pid in _all_pids() if (st := _stat(pid)) is not None}
    members = {root} | {pid for pid, (_, sid) in stats.items() if sid == root}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in members}
        grew = not children <= members
        members |= children
    return {pid for pid in members if pid in stats}


def alive(pid: int) -> bool:
    stat = _stat(pid)
    if stat is None:
        return False
    with contextlib.suppress(OSError):
        if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
            return False  # a zombie has exited; only its parent's wait() is missing
    return True


def signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time consumed so far by the live processes in ``pids``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def busy_cpu_seconds() -> float:
    """Machine-wide non-idle CPU time so far (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class OtherCpu:
    """CPU seconds used by other processes on the machine during a block (this process, and
    the ``members`` given, are subtracted)."""

    def __init__(self, members: set[int] | None = None) -> None:
        self.members = members or set()
        self.busy = busy_cpu_seconds()
        self.own = own_cpu_seconds()
        self.theirs = cpu_seconds(self.members)

    def seconds(self) -> float:
        used = busy_cpu_seconds() - self.busy
        mine = own_cpu_seconds() - self.own + cpu_seconds(self.members) - self.theirs
        return round(used - mine, 2)


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process in KiB (None if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0


def tree_rss_kib(pids: set[int]) -> int:
    return sum(rss_kib(pid) or 0 for pid in pids)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
