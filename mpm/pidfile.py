"""The pidfile: written atomically, a stale one replaced, a live one respected."""

from __future__ import annotations

import os
import stat

import psutil

from conf.loader import PID_TEXT_MAX


class AlreadyRunning(Exception):
    pass


def read_pid(path: str) -> int | None:
    """The pid in the file at `path`; None for anything but a regular file holding one (a
    pidfile configured as /dev/zero was read without end: review 2026-12-04-conf #6)."""
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            text = f.read(PID_TEXT_MAX + 1)
    except OSError:
        return None
    text = text.strip()
    if len(text) > PID_TEXT_MAX or not text.isdigit():
        return None
    return int(text)


def pid_alive(pid: int) -> bool:
    """Running mpm (its title "mpm: master ..." or "mpm: worker ...", or `python -m mpm` /
    `mpmctl` before it sets one), and not a zombie waiting for its parent to reap it.  A pidfile
    a crash left behind may name a pid the system has since given to another program: that one
    is neither respected nor signalled (Apache overwrites such a pidfile with a warning) - even
    when "mpm" appears among its arguments (`tail -f /var/log/mpm/error.log`)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and is_mpm(process.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def process_running(pid: int) -> bool:
    """Alive and not a zombie, whatever it runs: for a pid a master has just named (the new
    master of `mpmctl upgrade`), where no stale pid can be met.  `pid_alive`'s look at the
    command line cannot be used there: while the new master execs, /proc shows it empty, and
    mpmctl took that for an exit ("the new master exited", 1 of 13 upgrades under load)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def master_serving(config_file: str) -> int | None:
    """The master whose title names `config_file` (Master._set_title: "mpm: master -c FILE gen
    N"), for when the file's pidfile names none: its control paths were edited after that
    master started, and they change at its next start (review 2026-12-03-reload #4).  The
    oldest, should there be two (an upgrade's new master takes the old one's paths)."""
    prefix = f"mpm: master -c {config_file} gen "
    found = []
    for process in psutil.process_iter(["cmdline", "create_time", "status"]):
        info = process.info
        if info["status"] != psutil.STATUS_ZOMBIE and " ".join(info["cmdline"] or ()).startswith(prefix):
            found.append((info["create_time"], process.pid))
    return min(found)[1] if found else None


def is_mpm(cmdline: list[str]) -> bool:
    """An mpm master or worker by its command line: the title it sets, or how it was started."""
    if cmdline and cmdline[0].startswith("mpm: "):
        return True
    started_as = [os.path.basename(arg) for arg in cmdline[:2]]     # `mpmctl ...`, `python mpmctl ...`
    return "mpmctl" in started_as or any(cmdline[i:i + 2] == ["-m", "mpm"] for i in range(len(cmdline) - 1))


def write_pidfile(path: str, owner: int | None = None) -> None:
    """Our pid, or `owner`'s: the master `mpmctl upgrade` started, named by the one it
    replaces at the hand-over (a release before that hand-over writes its own at its start:
    the file names `owner` already)."""
    pid = read_pid(path)
    replacing = os.environ.get("MPM_UPGRADE_FROM")    # `mpmctl upgrade`: the master we take over from
    if pid is not None and pid not in (os.getpid(), owner) and pid_alive(pid) and str(pid) != replacing:
        raise AlreadyRunning(f"a master is already running with pid {pid} (pidfile {path}); "
                             f"if it is not an mpm master, remove the pidfile")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w") as f:
        f.write(f"{owner or os.getpid()}\n")
    os.replace(temp, path)   # atomic: a reader sees the old pid or the new one, never half


def remove_pidfile(path: str) -> None:
    if read_pid(path) == os.getpid():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
