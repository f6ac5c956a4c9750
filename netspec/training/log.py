"""Logs in glog's line format ("I1126 16:22:09.123456 4242 solver.py] ..."), so Caffe's
tools/extra/parse_log.py reads them, with a live progress line kept below them at a terminal."""
import os
import re
import sys
from datetime import datetime

from ..outputs import append_to


_LOG_LINE = re.compile(rb"([IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [^\]]*\] |Log file created at: )")


def is_log(path):
    """An empty file, or one that starts as a glog log (Caffe's or ours) does: a log to append to."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return not head or _LOG_LINE.match(head) is not None


class Log:
    """glog-style lines ("I1126 16:22:09.123456 4242 solver.py] ...") to a stream and a file,
    and a live progress line at a terminal only."""

    def __init__(self, path=None, stream=None, progress=None, source="solver.py"):
        self.source = source        # the name glog shows for the code that logs (Caffe: solver.cpp, caffe.cpp)
        self.stream = stream if stream is not None else sys.stdout
        self.file = append_to(path, "a log", is_log, "--log") if path else None
        self.show_progress = self.stream.isatty() if progress is None else progress
        self._progress_shown = False

    def _line(self, level, message):
        now = datetime.now()
        return f"{level}{now:%m%d %H:%M:%S.%f} {os.getpid()} {self.source}] {message}"

    def info(self, message, level="I"):
        self._clear_progress()
        for part in str(message).split("\n"):
            line = self._line(level, part)
            print(line, file=self.stream, flush=True)
            if self.file:
                self.file.write(line + "\n")
                self.file.flush()

    def warn(self, message):
        self.info(message, level="W")

    def progress(self, text):
        if self.show_progress:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._progress_shown = True

    def _clear_progress(self):
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False

    def close(self):
        self._clear_progress()
        if self.file:
            self.file.close()
            self.file = None


def fmt(x):
    """A number as C++'s ostream prints a float (6 significant digits)."""
    return f"{float(x):.6g}"
