"""Files a net or solver names for writing (HDF5Output's file_name, snapshots), and the logs a
command appends to: Caffe writes
where the file says and users rely on it, but an existing file of another kind there is
refused unless the user says --force, and a link there is replaced, never written through."""
import contextlib
import errno
import os
import stat

from .errors import NetspecError

_force = [False]


@contextlib.contextmanager
def forcing(force):
    """Within the block, existing files of another kind at output paths are replaced (--force)."""
    before, _force[0] = _force[0], bool(force)
    try:
        yield
    finally:
        _force[0] = before


def claim(path, kind, is_kind, field):
    """Before writing `kind` at `path` (named by `field`): refuse a folder or another special
    file always, an existing regular file that is not `kind` without --force; drop a symbolic
    link so that the write makes a new file instead of going through the link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NetspecError(f"cannot use {field} '{path}': {e.strerror}", file=path) from None
    if stat.S_ISLNK(st.st_mode):
        os.unlink(path)
        return
    if not stat.S_ISREG(st.st_mode):
        raise NetspecError(f"{field} '{path}' exists and is not a regular file", file=path,
                           hint=f"name a new file for {field}")
    if not _force[0] and not _is(is_kind, path):
        raise NetspecError(f"{field} '{path}' is an existing file that is not {kind}: refusing to overwrite it",
                           file=path, hint=f"name another file in {field}, or pass --force to replace it")


def append_to(path, kind, is_kind, field):
    """A text file appending to `path` (a --log), claimed as claim() says. A stream (a terminal,
    a pipe, /dev/stdout, or a link to one) is written as it is: it replaces no file. O_NOFOLLOW:
    a link planted between the check and the open is refused, not followed."""
    try:
        try:
            target = os.stat(path)
        except FileNotFoundError:
            target = None
        if target is not None and stat.S_ISFIFO(target.st_mode):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)     # ENXIO, not a hang, when no one reads
            os.set_blocking(fd, True)
        elif target is not None and stat.S_ISCHR(target.st_mode):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            claim(path, kind, is_kind, field)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        why = "no process is reading that FIFO" if e.errno == errno.ENXIO else e.strerror
        raise NetspecError(f"cannot write {field} '{path}': {why}", file=os.fspath(path),
                           hint="check the path: its folder must exist and be writable") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def _is(is_kind, path):
    try:
        return bool(is_kind(path))
    except Exception:           # noqa: BLE001 - a file the check cannot even read is not that kind
        return False


def check_writable(path, what):
    """Before the work: the file a command will write at the end (train --plot) can be made."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise NetspecError(f"{what} '{path}' is a folder", file=path, hint=f"give {what} a file name")
    if not os.path.isdir(folder):
        raise NetspecError(f"{what} '{path}': the folder '{folder}' does not exist", file=path,
                           hint="make the folder first, or write the file elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NetspecError(f"{what} '{path}': the folder '{folder}' is not writable", file=path,
                           hint="write the file in a folder you can write")
