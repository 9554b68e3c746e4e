"""An exclusive lock on a folder that bertner writes into (a run directory, a sweep's folder).

The lock is the file `LOCK_FILE` in the folder, holding the owner's PID, host and what it does.
`fcntl.flock` does the excluding: the kernel drops it when the owner exits, however it exits, so a
lock file left by a killed process is simply taken over. The PID is there for the message, and a
lock file naming a live process on this host is respected even without the flock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from bertner.errors import LockedError, RunError

log = logging.getLogger(__name__)

LOCK_FILE = ".bertner.lock"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except (OverflowError, ValueError):
        return False  # not a PID at all
    return True


def runs_bertner(pid: int, lock_written: float) -> bool:
    """Whether PID is still the bertner process that wrote a lock file at `lock_written` (a time stamp).

    A PID is reused once its process exits: a live process under it that is not a bertner command
    (its command line never names bertner: PID 1, a shell) or that started after the lock file was
    written cannot hold the lock. Where /proc cannot tell, a live PID is trusted.
    """
    if not process_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: start time
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    started = boot + ticks / os.sysconf("SC_CLK_TCK")
    return b"bertner" in command and started <= lock_written + 1.0  # btime has whole seconds


def read_holder(fd: int) -> tuple[int | None, str, str]:
    """(PID, host, what) from a lock file; PID None when the file holds no number."""
    parts = os.pread(fd, 1000, 0).decode("utf-8", "replace").split(maxsplit=2)
    pid = int(parts[0]) if parts and parts[0].isdigit() else None
    host = parts[1] if len(parts) > 1 else socket.gethostname()
    what = parts[2].strip() if len(parts) > 2 else ""
    return pid, host, what


class FolderLock:
    """Held while a process writes into `folder`; `release` (or leaving the `with`) gives it back."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | os.PathLike, what: str) -> "FolderLock":
        """Lock `folder` (which must exist) for this process, or raise LockedError naming the holder."""
        folder = Path(folder)
        path = folder / LOCK_FILE
        for _ in range(20):  # a retry only when the lock file was replaced between open and flock
            fd = _open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _wait_for_holder(fd)
                os.close(fd)
                raise _locked(folder, path, *holder) from None
            if not _is_current(fd, path):
                os.close(fd)  # its owner released it (and removed the file) meanwhile: lock the new one
                continue
            pid, host, held_for = read_holder(fd)
            if pid is not None and host == socket.gethostname():
                if runs_bertner(pid, os.fstat(fd).st_mtime):  # a live owner without the flock: respected, never broken
                    os.close(fd)
                    raise _locked(folder, path, pid, host, held_for)
                gone = "is no longer running" if not process_alive(pid) else "now belongs to another program"
                log.warning(f"{path}: PID {pid}, which held it, {gone}; taking the lock over")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {what}\n".encode(), 0)
            except OSError as e:  # a full disk
                os.close(fd)
                raise RunError(f"cannot write the lock file {path}: {e.strerror or e}") from None
            return cls(folder, fd)
        raise RunError(f"cannot lock {folder}: {path} keeps being replaced by another process")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _is_current(fd, self.path):
                self.path.unlink()  # before the flock goes, so no one locks a file about to vanish
        except OSError:
            pass  # the folder went away: nothing left to unlock
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _open_lock_file(path: Path) -> int:
    try:
        # O_NOFOLLOW: a link planted at the lock file's name is refused, never written through.
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if path.is_symlink():
            raise RunError(f"{path} is a symbolic link; remove it (bertner writes only its own files there)") from None
        raise RunError(f"cannot create the lock file {path}: {e.strerror or e}") from None


def _is_current(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the one at `path`."""
    try:
        here = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _wait_for_holder(fd: int, seconds: float = 1.0) -> tuple[int | None, str, str]:
    """The holder's PID; it writes it right after locking, so an empty file is worth a short wait."""
    deadline = time.monotonic() + seconds
    while True:
        holder = read_holder(fd)
        if holder[0] is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)


def _locked(folder: Path, path: Path, pid: int | None, host: str, what: str) -> LockedError:
    who = f"PID {pid}" if pid is not None else "another process"
    if host != socket.gethostname():
        who += f" on {host}"
    doing = f" ({what})" if what else ""
    return LockedError(f"{folder} is locked by {who}{doing}, lock file {path}: wait for it to finish, or stop it")
