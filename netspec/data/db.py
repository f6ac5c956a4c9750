"""LMDB databases of Datum records, read and written as Caffe's db_lmdb does.

A database is a folder holding data.mdb (and lock.mdb). Records are read in key order;
the reader wraps to the first record at the end, as Caffe's data layer does.
"""
import os

from ..errors import NetspecError
from .handles import SharedHandles, new_database_folder

MAP_SIZE = 1 << 40          # Caffe's LMDB map size (1 TB of address space, not of disk)


_handles = SharedHandles()     # LMDB allows one environment per process


def open_lmdb(path, what="database"):
    """Open an LMDB folder read-only; a clear error when it is missing or not an LMDB."""
    import lmdb
    if not os.path.isdir(path):
        raise NetspecError(f"{what} '{path}' does not exist or is not a folder",
                           hint="convert your data first (tools/convert_mnist_data.py or "
                                "tools/convert_imageset.py), or fix the path")
    try:
        return lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=126)
    except lmdb.Error as e:
        raise NetspecError(f"cannot open {what} '{path}' as an LMDB: {e}") from None


class LMDBReader:
    """Values in key order, one after another, wrapping around; seek by position."""

    def __init__(self, path, what="database"):
        self.path = path
        self.env = _handles.acquire(path, lambda: open_lmdb(path, what))
        self.size = self.env.stat()["entries"]
        if self.size == 0:
            _handles.release(path)
            raise NetspecError(f"{what} '{path}' is empty")
        self.txn = self.env.begin(buffers=False)
        self.cursor = self.txn.cursor()
        self.cursor.first()
        self.position = 0           # records read so far (not wrapped)

    def first_value(self):
        with self.env.begin() as txn:
            cur = txn.cursor()
            cur.first()
            return cur.value()

    def seek(self, position):
        """Go to the record read after `position` records (wrapping)."""
        self.cursor.first()
        for _ in range(position % self.size):
            self.cursor.next()
        self.position = position

    def next_value(self):
        value = self.cursor.value()
        if not self.cursor.next():
            self.cursor.first()
        self.position += 1
        return value

    def close(self):
        if self.env is not None:
            self.txn.abort()
            _handles.release(self.path)
            self.env = None


def write_lmdb(path, items, commit_every=1000):
    """Write (key bytes, value bytes) pairs into a new LMDB at `path`, atomically:
    built in a temporary folder beside it, then renamed. Refuses to overwrite."""
    import lmdb
    count = 0
    with new_database_folder(path) as tmp:
        env = lmdb.open(tmp, map_size=MAP_SIZE, subdir=True)
        txn = env.begin(write=True)
        for key, value in items:
            txn.put(key, value)
            count += 1
            if count % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        env.sync()
        env.close()
    return count


def advance_to(reader, position):
    """Put an LMDB or LevelDB reader at the record read after `position` records: forward from
    where it is when that is nearer than a seek from the start (a rank of several passes over
    the others' records)."""
    ahead = position - reader.position
    if 0 <= ahead < reader.size:
        for _ in range(ahead):
            reader.next_value()
    else:
        reader.seek(position)


def open_reader(path, backend=None, what="database"):
    """A reader for an LMDB or a LevelDB folder. What the folder holds decides (an LMDB has
    data.mdb, a LevelDB CURRENT), so a net that leaves data_param.backend at the schema's
    LEVELDB default still reads its LMDB; `backend` ("lmdb"/"leveldb") is used when the
    folder says nothing (missing, or empty)."""
    from .leveldb import LevelDBReader, is_leveldb
    if is_leveldb(path) or (backend == "leveldb" and not os.path.exists(os.path.join(path, "data.mdb"))):
        return LevelDBReader(path, what)
    return LMDBReader(path, what)


def write_db(path, items, backend="lmdb"):
    """write_lmdb or write_leveldb by the backend's name."""
    if backend == "leveldb":
        from .leveldb import write_leveldb
        return write_leveldb(path, items)
    return write_lmdb(path, items)
