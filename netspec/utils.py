"""Small helpers shared by every stage."""
import argparse
import os
import stat


def closest(name, candidates, n=3):
    """The candidates most like `name`, best first (for 'did you mean' hints)."""
    import difflib
    return difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)


def did_you_mean(name, candidates):
    """' (did you mean 'a' or 'b'?)' or '' when nothing is close."""
    near = closest(name, candidates)
    if not near:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in near) + "?)"


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path):
    """The mode a file written at `path` gets: the mode of the regular file it replaces, else
    the usual one (0666 less the umask)."""
    try:
        old = os.lstat(path)
        if stat.S_ISREG(old.st_mode):
            return stat.S_IMODE(old.st_mode)
    except OSError:
        pass
    return 0o666 & ~_umask()


def atomic_write(path, data):
    """Write bytes or text to `path` through a temporary file and a rename: never half-written.
    A symbolic link at `path` is replaced, never written through (a planted link cannot aim
    the write elsewhere); a regular file rewritten in place keeps its mode."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.chmod(tmp, file_mode(path))      # mkstemp makes 0600
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)           # rename(2) replaces a link itself, not its target
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


PROTO_LIMIT = 2 ** 31 - 1       # protobuf's own bound on one message
LIST_LIMIT = 256 * 2 ** 20      # a list file (image_data_param.source, hdf5_data_param.source)


def size_text(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def regular_file(path, what, limit):
    """os.stat(path), or a NetspecError unless it is a regular file of at most `limit` bytes
    (a device such as /dev/zero would read without end, a FIFO would block forever)."""
    from .errors import NetspecError
    st = os.stat(path)                  # OSError (missing, no permission) is the caller's to word
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", os.fspath(path))
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
        raise NetspecError(f"{what} '{path}' is {kind}, not a regular file: netspec reads only regular files",
                           file=os.fspath(path), hint="name a file saved on disk")
    if st.st_size > limit:
        raise NetspecError(f"{what} '{path}' is {size_text(st.st_size)}, over the {size_text(limit)} "
                           "netspec reads for it", file=os.fspath(path), hint="check that the path names the intended file")
    return st


def read_regular(path, what, limit, text=False):
    """The bytes (or UTF-8 text) of a regular file of at most `limit` bytes."""
    regular_file(path, what, limit)
    with open(path, "rb") as f:
        data = f.read(limit + 1)        # a file that grew since stat() is still bounded
    if len(data) > limit:
        regular_file(path, what, len(data) - 1)
    return data.decode("utf-8", "replace") if text else data


def nonnegative_int(text):
    """An argparse type: an integer of 0 or more (a random seed, say)."""
    return _bounded_int(text, 0, None, "an integer of 0 or more")


def int32(text):
    """An argparse type: an integer that fits the schema's int32 fields (a net state's level)."""
    return _bounded_int(text, -2**31, 2**31 - 1, f"an integer from {-2**31} to {2**31 - 1}")


def _bounded_int(text, low, high, expected):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found '{text}'; expected {expected}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"found {value}; expected {expected}")
    return value


def split_stages(values):
    """--stage values as stage names: repeatable and comma-separated, as `caffe`'s --stage."""
    return [stage for value in values for stage in value.split(",") if stage]


def format_shape(shape):
    """A shape as people write it: 64x3x224x224; 'scalar' for a 0-d blob, '?' when unknown."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) if shape else "scalar"
