"""Writing files and folders so that a crash, a full disk or Ctrl-C never loses the previous one.

Files: :func:`atomic_file` hands out a temporary sibling (``.NAME.<pid>-<hex>.tmp``); when the
``with`` block ends normally the sibling replaces the file (``os.replace``, atomic on POSIX),
and on *any* failure (``OSError(ENOSPC)``, an exception of the writer, ``KeyboardInterrupt``)
the sibling is removed and the previous file is left as it was.

Folders (checkpoints): a folder ``F`` is written to ``.F.tmp`` (:func:`staged_dir`), which
gets a completion marker (:data:`COMPLETE_MARKER`, the size of every file, written last, after
the files are flushed to disk); then ``F`` is renamed ``.F.old``, ``.F.tmp`` renamed ``F`` and
``.F.old`` deleted. A process killed at any instant leaves one of these states, and
:func:`recover_dir` (writers, holding the folder's lock) or :func:`readable_dir` (readers,
changing nothing) finds the newest complete copy:

==========================================  ====================================================
on disk                                     outcome
==========================================  ====================================================
``F`` only                                  ``F``
``.F.tmp`` complete (with or without F/old)  completed: ``.F.tmp`` becomes ``F`` (newest copy)
``.F.tmp`` incomplete, ``F`` present         rolled back: ``.F.tmp`` deleted
``.F.old`` (and maybe an incomplete tmp)     rolled back: ``.F.old`` becomes ``F`` again
``F`` and ``.F.old``                         completed: ``.F.old`` deleted
``.F.tmp`` incomplete only                   nothing to recover: deleted
==========================================  ====================================================

A ``.F.tmp`` without a valid marker is never trusted (a folder left by an older version that
wrote no marker included): completeness is proven, not assumed. The marker is removed once the
copy is ``F``, so a finished folder holds exactly the files its writer wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "COMPLETE_MARKER",
    "atomic_file",
    "dir_copies",
    "is_complete",
    "mark_complete",
    "old_dir",
    "readable_dir",
    "recover_dir",
    "remove_dir_and_copies",
    "replace_dir",
    "staged_dir",
    "tmp_dir",
    "write_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete.json"
"""Written last into a staged folder: ``{"files": {relative path: size in bytes}}``."""


# --- files ---------------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    """Flush a file to disk (best effort: some file systems refuse fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block succeeds.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and
    ``path`` keeps its previous content (or stays absent).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)`` and move the result onto ``path`` (see :func:`atomic_file`).

    Example: ``write_atomic(p, lambda tmp: frame.to_csv(tmp, index=False))``.
    """
    with atomic_file(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, atomically (see :func:`atomic_file`)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding=encoding))


# --- folders -------------------------------------------------------------------------------------


def tmp_dir(final: str | Path) -> Path:
    """Where a new version of the folder ``final`` is staged: ``.NAME.tmp`` next to it."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp")


def old_dir(final: str | Path) -> Path:
    """Where the previous version of ``final`` waits while it is replaced: ``.NAME.old``."""
    final = Path(final)
    return final.with_name(f".{final.name}.old")


def _files_of(folder: Path) -> dict[str, int]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != COMPLETE_MARKER:
            out[p.relative_to(folder).as_posix()] = p.stat().st_size
    return out


def mark_complete(folder: str | Path) -> None:
    """Flush every file of ``folder`` to disk, then write the completion marker (last)."""
    folder = Path(folder)
    files = _files_of(folder)
    for rel in files:
        _fsync_path(folder / rel)
    marker = folder / COMPLETE_MARKER
    marker.write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")
    _fsync_path(marker)


def is_complete(folder: str | Path) -> bool:
    """True when ``folder`` has a valid completion marker and every file it lists, same size."""
    folder = Path(folder)
    try:
        files = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))["files"]
        return bool(files) and all(
            (folder / rel).stat().st_size == size for rel, size in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def dir_copies(final: str | Path) -> list[Path]:
    """The copies of ``final`` on disk that hold a checkpoint: ``final``, ``.old``, a complete ``.tmp``."""
    final = Path(final)
    found = [p for p in (final, old_dir(final)) if p.is_dir()]
    if is_complete(tmp_dir(final)):
        found.append(tmp_dir(final))
    return found


def readable_dir(final: str | Path) -> Path:
    """The folder to read ``final`` from, without changing anything on disk.

    ``final`` itself when it exists; else the newest complete copy left by an interrupted
    replacement (a complete ``.NAME.tmp``, else ``.NAME.old``); else ``final`` (absent, so
    the caller's own "not found" message applies).
    """
    final = Path(final)
    if final.is_dir():
        return final
    for candidate in (tmp_dir(final), old_dir(final)):
        if candidate.is_dir() and (candidate == old_dir(final) or is_complete(candidate)):
            log.warning(
                "%s is missing (an interrupted replacement); reading %s", final, candidate.name
            )
            return candidate
    return final


def recover_dir(final: str | Path) -> str | None:
    """Complete or roll back an interrupted replacement of ``final`` (see the module docstring).

    Only for the folder's writer (it holds the run's lock). Returns what was done, or None
    when there was nothing to recover.
    """
    final = Path(final)
    tmp, old = tmp_dir(final), old_dir(final)
    if not (tmp.exists() or old.exists()):
        return None
    if tmp.exists() and is_complete(tmp):
        if final.exists():  # the same steps as replace_dir: a complete copy exists at every instant
            if old.exists():
                _rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _unlink_quietly(final / COMPLETE_MARKER)
        action = (
            f"completed the interrupted replacement of {final.name} (the new copy was complete)"
        )
    elif final.exists():
        action = f"kept {final.name}; removed the leftovers of an interrupted replacement"
    elif old.is_dir():
        os.replace(old, final)
        action = (
            f"rolled back the interrupted replacement of {final.name} (restored the previous copy)"
        )
    else:
        action = f"removed an unfinished {tmp.name} (no complete copy of {final.name} existed)"
    if tmp.exists():
        _rmtree(tmp)
    if old.exists():
        _rmtree(old)
    log.warning("%s: %s", final.parent, action)
    return action


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Mark ``tmp`` complete and move it onto ``final`` (the previous ``final`` kept until then)."""
    tmp, final = Path(tmp), Path(final)
    mark_complete(tmp)
    old = old_dir(final)
    # a leftover .old is obsolete once final exists; without final, tmp (complete) is the copy
    if final.exists():
        if old.exists():
            _rmtree(old)
        os.replace(final, old)
    elif old.exists():
        _rmtree(old)
    os.replace(tmp, final)
    _unlink_quietly(final / COMPLETE_MARKER)  # only staged copies carry it: final reads as before
    if old.exists():
        _rmtree(old)
    return final


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty ``.NAME.tmp`` folder to fill; it replaces ``final`` when the block succeeds.

    An interrupted earlier replacement is recovered first. On a failure inside the block the
    staged folder is removed and ``final`` is untouched; a failure during the swap itself is
    rolled back by :func:`recover_dir`.
    """
    final = Path(final)
    recover_dir(final)
    tmp = tmp_dir(final)
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            _rmtree(tmp)
        raise
    try:
        replace_dir(tmp, final)
    except BaseException:
        with contextlib.suppress(Exception):
            recover_dir(final)
        raise


def remove_dir_and_copies(final: str | Path) -> None:
    """Delete ``final`` and any ``.NAME.tmp`` / ``.NAME.old`` of it (``--overwrite``)."""
    for p in (tmp_dir(final), old_dir(final), Path(final)):
        _rmtree(p)
