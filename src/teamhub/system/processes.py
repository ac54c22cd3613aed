"""Find and end every process of one uid, without ever signalling a reused pid."""

from __future__ import annotations

import os
import signal
import time

TERM_TIMEOUT = 5.0


def process_uids(pid: int) -> set[int]:
    """Real, effective and saved uids of live process PID; empty if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    # Zombies are already dead (userdel does not count them either); only
    # their parent can make them go away.
    if any(line.startswith("State:") and line.split()[1:2] == ["Z"] for line in lines):
        return set()
    for line in lines:
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:4]}
    return set()


def processes_of(uid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and uid in process_uids(int(e))]


def _signal(pid: int, uid: int, sig: signal.Signals) -> None:
    # Through a pidfd, re-checked after opening, so that a pid reused by some
    # other process between the /proc scan and the kill is never signalled.
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if uid in process_uids(pid):
            signal.pidfd_send_signal(pidfd, sig)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def end_processes(uid: int) -> None:
    """SIGTERM every process of UID, SIGKILL what is left after TERM_TIMEOUT seconds."""
    deadline = time.monotonic() + TERM_TIMEOUT
    sig = signal.SIGTERM
    signalled: set[int] = set()
    while live := processes_of(uid):
        if sig is signal.SIGTERM and time.monotonic() >= deadline:
            sig, signalled = signal.SIGKILL, set()
        elif time.monotonic() >= deadline + 2:
            return  # unkillable (stuck in the kernel); userdel will say so
        for pid in live:
            if pid not in signalled:  # also catches children forked meanwhile
                _signal(pid, uid, sig)
                signalled.add(pid)
        time.sleep(0.05)
