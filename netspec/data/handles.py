"""Database handles shared by the readers of one folder: LMDB and LevelDB each allow one open
handle per process, so readers of the same folder share it, counted, and the last one closes it."""
import os
import threading


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
