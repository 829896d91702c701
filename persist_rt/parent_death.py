"""Die with the supervisor: a launched process asks the kernel for SIGTERM when its parent dies.

``persist launch`` starts every node and the registry with ``PERSIST_SUPERVISOR_PID`` set to its own
pid. A child calls :func:`die_with_supervisor` first thing; on Linux this is ``prctl(PR_SET_PDEATHSIG,
SIGTERM)``, so even a supervisor killed with SIGKILL takes its graph with it (SIGTERM, not SIGKILL: a
node stops as on Ctrl-C and writes its checkpoint). The kernel sends the signal when the *thread* that
forked the child exits, not the process: the supervisor therefore spawns only from its main thread,
whose end is the process's end. A supervisor that died before the child made the call is caught by
comparing the parent pid with the one the supervisor announced. Where prctl is missing (not Linux), a
daemon thread polls the parent pid once a second and sends the same signal.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

SUPERVISOR_ENV = "PERSIST_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def die_with_supervisor(sig: int = signal.SIGTERM) -> bool:
    """Arrange for ``sig`` when the announcing supervisor dies; False when not started by one."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    if not raw.isdigit():
        return False
    supervisor = int(raw)
    if not _prctl_pdeathsig(sig):
        threading.Thread(target=_watch_parent, args=(supervisor, sig), daemon=True, name="parent-death").start()
    if os.getppid() != supervisor:  # it died before the request was in place
        os.kill(os.getpid(), sig)
    return True


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(supervisor: int, sig: int) -> None:
    while os.getppid() == supervisor:
        threading.Event().wait(POLL_S)
    os.kill(os.getpid(), sig)
