"""Read ahead in a background thread, so compute never waits for the disk.

A Prefetcher runs `produce(k)` for k = start, start+1, ... in a daemon thread and keeps up
to `depth` finished batches in a queue (and calls `produce.close()`, if it has one, when the
thread ends). stop() (also called at interpreter exit) sets an
event and drains the queue so the thread ends promptly; a daemon thread never blocks exit.
An exception in the thread is raised again in the consumer's next() call.
"""
import atexit
import queue
import threading
import weakref

_live = weakref.WeakSet()


@atexit.register
def _stop_all():
    for p in list(_live):
        p.stop()


class Prefetcher:
    def __init__(self, produce, start=0, depth=4, name="prefetch"):
        self.produce = produce
        self.queue = queue.Queue(maxsize=max(1, depth))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(start,), name=name, daemon=True)
        _live.add(self)
        self.thread.start()

    def _run(self, k):
        try:
            while not self.stopping.is_set():
                item = ("ok", self.produce(k))
                k += 1
                while not self._put(item):
                    if self.stopping.is_set():
                        return
        except BaseException as e:  # handed to the consumer, which raises it with its own stack
            while not self._put(("error", e)) and not self.stopping.is_set():
                pass
        finally:
            close = getattr(self.produce, "close", None)     # e.g. the producer's database reader
            if close is not None:
                close()

    def _put(self, item):
        try:
            self.queue.put(item, timeout=0.1)
            return True
        except queue.Full:
            return False

    def next(self):
        while True:
            try:
                kind, value = self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the prefetch thread stopped unexpectedly") from None
                continue
            if kind == "error":
                self.stop()
                raise value
            return value

    def stop(self):
        self.stopping.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)
