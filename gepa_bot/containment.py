"""Nothing an eval starts outlives the run that started it, and gepa-bot's own process is not an eval's to open.

An eval can start a daemon (double fork and ``setsid``): it leaves the eval's process group, so killing the group
misses it, and on its own it would outlive gepa-bot and watch what runs next on the machine (the publish step's
``/proc/<pid>/environ``). So while evals run (:func:`evals_contained`, around every run session) gepa-bot is a child
subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): an orphaned descendant is re-parented to gepa-bot instead of init,
and stays a descendant. When the session ends (normally, by an error, Ctrl-C or SIGTERM) every descendant that was
not there when it began, and that is not gepa-bot's own (:func:`keep`: a model server), is killed (SIGKILL) and
reaped.

An eval runs as gepa-bot's user, so it could open ``/proc/<gepa-bot>/fd/1`` and write workflow commands
(``::add-mask::``, ``::warning::``) into gepa-bot's own output, or read ``/proc/<gepa-bot>/environ``. gepa-bot
makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``) before any eval runs: then only a process with
CAP_SYS_PTRACE can. Root (or a runner user with passwordless sudo, as on GitHub's hosted runners) still can: the
boundary for untrusted evals is the job split (docs/security.md), this only narrows what a same-user eval reaches.

Linux only; elsewhere these are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 100  # a leftover's children are re-parented to us when it dies: kill again until none is left
ROUND_PAUSE_S = 0.02

_kept: set[int] = set()  # processes gepa-bot started itself and stops itself (a model server)


class Proc(NamedTuple):
    ppid: int
    session: int
    state: str


def keep(pid: int) -> None:
    """``pid`` is gepa-bot's own (a model server it stops itself): never killed as a leftover."""
    _kept.add(pid)


def forget(pid: int) -> None:
    _kept.discard(pid)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, not to init (Linux); whether that is now so."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def become_undumpable() -> bool:
    """No process without CAP_SYS_PTRACE may open this one's /proc/<pid>/fd/*, environ or mem any more (Linux; an
    exec'd child is dumpable again); whether that is now so."""
    return _prctl(PR_SET_DUMPABLE, 0)


@contextlib.contextmanager
def evals_contained() -> Iterator[None]:
    """Hide this process from evals (:func:`become_undumpable`); while inside, orphans stay our descendants, and on the
    way out every descendant that appeared inside is killed."""
    become_undumpable()
    if not become_subreaper():
        yield
        return
    before = set(_descendants(process_table(), os.getpid()))
    try:
        yield
    finally:
        kill_leftovers(before)


def process_table() -> dict[int, Proc]:
    """Every process's parent, session and state, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        table[int(entry.name)] = Proc(ppid=int(fields[1]), session=int(fields[3]), state=fields[0])
    return table


def _descends(pid: int, table: dict[int, Proc], ancestor: int, stop: set[int]) -> bool:
    """Whether ``ancestor`` is ``pid``'s ancestor through processes none of which is in ``stop``."""
    seen = set()
    parent = table[pid].ppid
    while parent != ancestor:
        if parent in stop or parent not in table or parent in seen:
            return False
        seen.add(parent)
        parent = table[parent].ppid
    return True


def _descendants(table: dict[int, Proc], me: int) -> list[int]:
    return [pid for pid in table if pid != me and _descends(pid, table, me, set())]


def leftovers(table: dict[int, Proc], me: int, before: set[int]) -> list[int]:
    """Descendants of ``me`` that appeared since ``before`` (and descend through no such older process), are not
    kept (:func:`keep`) and are not in our own session (an eval always runs in a session of its own)."""
    stop = before | _kept
    session = os.getsid(0)
    return [pid for pid, proc in table.items()
            if pid != me and pid not in stop and proc.session != session and _descends(pid, table, me, stop)]


def kill_leftovers(before: set[int]) -> int:
    """SIGKILL (and reap) every leftover process until none is left; returns how many were killed."""
    me, killed = os.getpid(), set()
    for _ in range(KILL_ROUNDS):
        table = process_table()
        found = leftovers(table, me, before)
        if not found:
            break
        for pid in found:
            if table[pid].state != "Z":
                _signal(pid)
                killed.add(pid)
        _reap(pid for pid in found if table[pid].ppid == me)
        time.sleep(ROUND_PAUSE_S)
    return len(killed)


def _signal(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
