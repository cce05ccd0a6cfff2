"""One writer at a time for a store or run folder: a lock file holding the owner's pid and host.

``FolderLock(folder, "s2v prepare")`` creates ``folder/.s2v.lock`` with ``O_CREAT | O_EXCL``
(atomic: of two processes only one succeeds) and writes into it the owner's pid, host name,
start time and command. A second writer is refused with one line naming them
(:class:`FolderInUseError`). A lock whose owner is gone (same host, the pid no longer alive, a
zombie, or a pid reused by a process started after the lock) is stale: it is taken over with a
warning, under a second short-lived ``.takeover`` file so that two processes never both take it.
A lock of another host cannot be checked: the message says which file to delete if that process
is gone. The lock is released (the file deleted) when the ``with`` block ends, whether it ends
normally, on an error or on ``KeyboardInterrupt``; a process killed outright leaves a stale lock,
which the next writer takes over.

The lock is re-entrant within one process: a nested ``FolderLock`` of the same file is a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from s2v_core.errors import S2VError

__all__ = [
    "LOCK_NAME",
    "FolderInUseError",
    "FolderLock",
    "locked_folder",
    "pid_alive",
    "read_lock",
]

log = logging.getLogger(__name__)

LOCK_NAME = ".s2v.lock"
"""The lock file inside a locked folder."""

_FRESH_S = 5.0  # an empty or unreadable lock younger than this is being written: wait
_TAKEOVER_STALE_S = 30.0  # a .takeover file older than this was left by a killed process
_HELD: dict[str, list] = {}  # lock path -> [count, token] for the locks this process holds


class FolderInUseError(S2VError):
    """Another live process writes into the folder (its lock file names it)."""


def read_lock(path: str | Path) -> dict | None:
    """The owner recorded in a lock file, or None when it is absent, empty or unreadable."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None


def _proc_start_time(pid: int) -> float | None:
    """Start time of ``pid`` (seconds since the epoch) from /proc, or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )  # fmt: skip
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, started: float | None = None) -> bool:
    """True when process ``pid`` of this host runs (and, with ``started``, began before it)."""
    if pid <= 0:
        return False
    if (
        os.name == "nt"
    ):  # os.kill(pid, 0) would terminate it there: assume alive (the message says what to delete)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return False
    if _proc_state(pid) in ("Z", "X"):  # exited, not yet reaped
        return False
    begun = _proc_start_time(pid) if started is not None else None
    if begun is not None and begun > started + 2.0:  # the pid was reused by a newer process
        return False
    return True


def _describe(owner: dict) -> str:
    command = owner.get("command") or "another process"
    return f"{command} (pid {owner['pid']} on host {owner.get('host', '?')}, started {owner.get('started', '?')})"


class FolderLock:
    """Exclusive lock of a folder for one writer process (see the module docstring).

    Parameters
    ----------
    folder : path
        The folder written to; created if needed, since the lock file lives in it.
    command : str
        What the owner is (``"s2v prepare"``), shown to a refused second writer.
    name : str
        The lock file's name inside ``folder`` (e.g. ``.OUT.parquet.lock`` for one output file).
    what : str, optional
        How the refusal names the locked thing (default: the folder).
    """

    def __init__(self, folder: str | Path, command: str, *, name: str = LOCK_NAME,
                 what: str | None = None):  # fmt: skip
        self.folder = Path(folder)
        self.path = self.folder / name
        self.command = command
        self.what = what or str(self.folder)
        self._key = os.path.abspath(self.path)
        self._nested = False

    # -- acquire and release ------------------------------------------------------------------

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderInUseError` naming its live owner."""
        held = _HELD.get(self._key)
        if held is not None and (read_lock(self.path) or {}).get("token") == held[1]:
            held[0] += 1
            self._nested = True
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 2 * _FRESH_S
        while True:
            token = secrets.token_hex(8)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing(deadline)
                continue
            try:
                os.write(fd, json.dumps(self._owner(token)).encode())
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            os.close(fd)
            _HELD[self._key] = [1, token]
            self._nested = False
            return self

    def release(self) -> None:
        """Give the lock back (delete the file, if it is still ours)."""
        held = _HELD.get(self._key)
        if held is None:
            return
        held[0] -= 1
        if held[0] > 0:
            return
        del _HELD[self._key]
        if (read_lock(self.path) or {}).get("token") == held[1]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- helpers ------------------------------------------------------------------------------

    def _owner(self, token: str) -> dict:
        now = time.time()
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
            "started_unix": now,
            "command": self.command,
            "argv": sys.argv[:8],
            "token": token,
        }

    def _handle_existing(self, deadline: float) -> None:
        """The lock file exists: refuse, wait for it to be written, or take a stale one over."""
        owner = read_lock(self.path)
        if owner is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: try again
            if age < _FRESH_S and time.monotonic() < deadline:
                time.sleep(0.05)  # being written by its owner
                return
            self._take_over(
                None, f"an unreadable lock file {self.path} (left by a killed process?)"
            )
            return
        if owner.get("host") != socket.gethostname():
            raise FolderInUseError(
                f"{self.what} is in use by {_describe(owner)}; that host cannot be checked from "
                f"here: wait for it, or delete {self.path} if that process is gone"
            )
        mine = owner["pid"] == os.getpid()  # our pid but not held by us: a previous life of the pid
        if not mine and pid_alive(owner["pid"], owner.get("started_unix")):
            raise FolderInUseError(
                f"{self.what} is in use by {_describe(owner)}: wait for it to finish "
                f"(two writers would corrupt it), or delete {self.path} if that process is gone"
            )
        self._take_over(owner, f"a stale lock of {_describe(owner)}, which is no longer running")

    def _take_over(self, owner: dict | None, why: str) -> None:
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - guard.stat().st_mtime > _TAKEOVER_STALE_S:
                    guard.unlink()
            time.sleep(0.05)
            return
        try:
            os.close(fd)
            if read_lock(self.path) == owner:  # still the same stale lock: nobody took it first
                log.warning("%s: taking over %s", self.what, why)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)


def locked_folder(arg: str, command: str) -> Callable:
    """Decorator: hold a :class:`FolderLock` on the folder given as argument ``arg`` during the call."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            folder = signature.bind(*args, **kwargs).arguments[arg]
            with FolderLock(folder, command):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
