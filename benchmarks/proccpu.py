"""CPU time of processes from Linux ``/proc``, for the benchmarks that run servers.

On a small machine the load generator, the server and its backends share
the cores: how much CPU each used during a phase tells whether the machine
itself was the limit. Elsewhere than Linux the readings are ``None``.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (Linux ``/proc``; just ``root`` elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_named(name: str) -> list[int]:
    """The processes whose command name (``/proc/PID/comm``) is ``name``."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def _per_pid(pids: list[int]) -> dict[int, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return out


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of ``pids`` so far (None without ``/proc``)."""
    if not Path("/proc/self/stat").exists():
        return None
    return sum(_per_pid(pids).values())


class PhaseCpu:
    """CPU used by groups of processes between ``start()`` and ``stop()``.

    ``groups`` maps a label to a function giving the group's pids, asked at
    both ends (PostgreSQL backends come and go): a process seen only at the
    end counts from zero, one gone by then is not counted. ``children``
    also counts child processes of this one that ended and were waited for
    during the phase (a load generator run with ``subprocess.run``).
    """

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]], children: str | None = None) -> None:
        self.groups = groups
        self.children = children
        self.usage: dict[str, float] = {}
        self.by_pid: dict[str, dict[int, float]] = {}  # each process's part of its group's usage
        self.seconds = 0.0

    def start(self) -> None:
        self._before = {label: _per_pid(pids()) for label, pids in self.groups.items()}
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._started = time.monotonic()

    def stop(self) -> None:
        self.seconds = time.monotonic() - self._started
        for label, pids in self.groups.items():
            before = self._before[label]
            used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in _per_pid(pids()).items()}
            self.by_pid[label] = used
            self.usage[label] = sum(used.values())
        if self.children is not None:
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.usage[self.children] = (now.ru_utime + now.ru_stime) - (
                self._children.ru_utime + self._children.ru_stime
            )

    def split(self, label: str) -> list[float]:
        """Each process of group ``label``, as % of one core, busiest first."""
        if self.seconds <= 0:
            return []
        return sorted((100 * cpu / self.seconds for cpu in self.by_pid.get(label, {}).values()), reverse=True)

    def report(self) -> str:
        """Each group's share as % of one core, and the total against all cores."""
        if not Path("/proc/self/stat").exists() or self.seconds <= 0:
            return "CPU by process: not available here (no /proc)"
        shares = {label: 100 * cpu / self.seconds for label, cpu in self.usage.items()}
        parts = ", ".join(f"{label} {share:.0f}" for label, share in shares.items())
        cores = os.cpu_count() or 1
        return f"CPU, % of one core: {parts}; together {sum(shares.values()):.0f} of {100 * cores}"
