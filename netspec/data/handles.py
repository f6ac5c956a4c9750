"""What LMDB and LevelDB databases share: one open handle per folder and process (readers of a
folder share it, counted, and the last one closes it), and writing a new database atomically."""
import contextlib
import os
import shutil
import tempfile
import threading

from ..errors import NetspecError


@contextlib.contextmanager
def new_database_folder(path):
    """A temporary folder beside `path` to build a new database in, renamed to `path` when the
    block ends well and removed when it does not. Refuses to overwrite."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        raise NetspecError(f"'{path}' already exists", hint="remove it or choose another output path")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class SharedHandles:
    def __init__(self):
        self._open = {}             # realpath -> [handle, users]
        self._lock = threading.Lock()

    def acquire(self, path, opener):
        """The handle for `path`, made by opener() for its first user."""
        key = os.path.realpath(path)
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = [opener(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, path):
        key = os.path.realpath(path)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    entry[0].close()
                    del self._open[key]
