"""LevelDB databases of Datum records, read and written as Caffe's db_leveldb does (through
plyvel, the maintained binding over the system's libleveldb).

Records are read in key order (bytewise, as LMDB's), wrapping at the end, with the reader
interface of db.LMDBReader, so the data layer, its prefetch thread and its resume
position work the same on both. A LevelDB may be open once per process: readers of one
folder share the handle.
"""
import os

from ..errors import NetspecError
from .handles import SharedHandles, new_database_folder

_handles = SharedHandles()     # LevelDB may be open once per process


def _plyvel():
    try:
        import plyvel
    except ImportError:
        raise NetspecError("reading or writing LevelDB needs the plyvel package",
                           hint="apt-get install libleveldb-dev, then pip install 'netspec[leveldb]'") from None
    return plyvel


def is_leveldb(path):
    return os.path.isfile(os.path.join(path, "CURRENT")) and not os.path.exists(os.path.join(path, "data.mdb"))


def _open_leveldb(path, what):
    plyvel = _plyvel()
    if not os.path.isdir(path):
        raise NetspecError(f"{what} '{path}' does not exist or is not a folder",
                           hint="convert your data first (tools/convert_imageset.py --backend leveldb), "
                                "or fix the path")
    try:
        return plyvel.DB(path, create_if_missing=False)
    except plyvel.Error as e:
        raise NetspecError(f"cannot open {what} '{path}' as a LevelDB: {e}",
                           hint="another process may hold it open (LevelDB allows one)") from None


class LevelDBReader:
    """Values in key order, one after another, wrapping around; seek by position."""

    def __init__(self, path, what="database"):
        self.path = path
        self.db = _handles.acquire(path, lambda: _open_leveldb(path, what))
        self.snapshot = self.db.snapshot()      # a fixed view, as Caffe's iterator reads
        self.size = sum(1 for _ in self.snapshot.iterator(include_value=False))
        if self.size == 0:
            self._close()
            raise NetspecError(f"{what} '{path}' is empty")
        self._restart()
        self.position = 0

    def _restart(self):
        self.iterator = self.snapshot.iterator(include_key=False)

    def first_value(self):
        return next(self.snapshot.iterator(include_key=False))

    def seek(self, position):
        self._restart()
        for _ in range(position % self.size):
            next(self.iterator)
        self.position = position

    def next_value(self):
        try:
            value = next(self.iterator)
        except StopIteration:
            self._restart()
            value = next(self.iterator)
        self.position += 1
        return value

    def _close(self):
        self.snapshot = None
        _handles.release(self.path)
        self.db = None

    def close(self):
        if self.db is not None:
            self.iterator.close()
            self._close()


def write_leveldb(path, items, commit_every=1000):
    """Write (key bytes, value bytes) pairs into a new LevelDB at `path`, atomically: built
    in a temporary folder beside it, then renamed. Refuses to overwrite."""
    plyvel = _plyvel()
    count = 0
    with new_database_folder(path) as tmp:
        db = plyvel.DB(tmp, create_if_missing=True, error_if_exists=False)
        batch = db.write_batch()
        for key, value in items:
            batch.put(key, value)
            count += 1
            if count % commit_every == 0:
                batch.write()
                batch = db.write_batch()
        batch.write()
        db.close()
    return count
