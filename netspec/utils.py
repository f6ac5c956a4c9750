"""Small helpers shared by every stage."""
import argparse
import os


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


def atomic_write(path, data):
    """Write bytes or text to `path` through a temporary file and a rename: never half-written."""
    path = os.path.realpath(os.fspath(path))     # through a symbolic link: the link stays a link
    folder = os.path.dirname(path)
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    return "x".join(str(d) for d in shape) if shape else "scalar"
