"""Data layers: where a net's blobs come from (and, for HDF5Output, where they go).

Layers that read files find their shapes at setup as Caffe does (the first Datum of an LMDB,
an HDF5 file's dataset shapes, the first image of a list) and read ahead in a background
thread (netspec.data.prefetch). What a batch holds is a pure function of the layer's seed and
the batch's index, so a resumed run sees exactly the batches the uninterrupted one would:
data_state() and set_data_state() carry (seed, batches read, records passed) through a snapshot.

In data-parallel training the TRAIN layer of rank r of N reads records r, r+N, r+2N, ... of
its reading order, as Caffe's DataLayer::Skip deals them out (record_offsets()).
"""

import os

import numpy as np

from .. import caffe_pb2
from ..errors import LayerError, NetspecError
from ..utils import LIST_LIMIT, read_regular
from .base import Layer, MissingSource
from .registry import layer


def _put(xp, top, array):
    """Copy a host batch into a top blob, in place when the shape allows."""
    array = np.ascontiguousarray(array, np.float32)
    if top.data is not None and tuple(top.data.shape) == array.shape and top.data.dtype == array.dtype:
        if xp is np:
            np.copyto(top.data, array)
        else:
            top.data.set(array)
    else:
        top.data = xp.asarray(array)
        top.diff = xp.zeros_like(top.data)


def _as_layer_error(fn):
    """Run fn(); a NetspecError from the data helpers becomes a LayerError (the shape pass
    adds the layer's name, file and line)."""
    try:
        return fn()
    except NetspecError as e:
        raise LayerError(_naming_file(e), e.hint) from None


def _naming_file(error):
    """The message of a NetspecError about a file the layer reads (a mean_file, an HDF5 file),
    led by that file's name: the layer's own place is reported beside it."""
    return f"{error.where()}: {error.message}" if error.file else error.message


class _Source(Layer):
    """A layer with no bottoms and no parameters: backward has nothing to do."""
    bottoms = (0, 0)
    family = "data"

    def backward(self, xp, tops, propagate_down, bottoms):
        pass


class _Reading(_Source):
    """A data layer that reads batches in a background thread."""
    tops = (1, 2)

    def setup(self):
        self.batches = 0            # batches handed out so far
        self.seed = None            # drawn from self.rng on first use
        self._prefetcher = None
        self.transformer = None
        self.solver_rank, self.solver_count = 0, 1
        # where the present reading began: (batches read, records passed) at a resume
        self.resume_batch, self.resume_offset = 0, 0

    # -- what subclasses provide ---------------------------------------------------------
    def producer(self):
        """A function k -> tuple of arrays (one per top) for the k-th batch, called with
        k = start, start+1, ... in the reading thread."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------
    def _transformer(self):
        if self.transformer is None:
            from ..data.transform import Transformer
            self.transformer = _as_layer_error(lambda: Transformer(self.lp.transform_param, self.phase))
        return self.transformer

    def _seed(self):
        if self.seed is None:
            rng = self.rng if self.rng is not None else np.random.default_rng()
            self.seed = int(rng.integers(2 ** 62))
        return self.seed

    def batch_rng(self, k):
        """The random stream of batch k (crops, mirrors): the same on every run with this seed
        (and, with several ranks, another stream on each rank)."""
        key = [self._seed(), k] if self.solver_count == 1 else [self._seed(), k, self.solver_rank]
        return np.random.default_rng(key)

    # -- data parallelism ----------------------------------------------------------------
    def set_solver_rank(self, rank, count):
        """Caffe's solver_rank and solver_count: which share of the records this layer reads."""
        self.close()
        self.solver_rank, self.solver_count = int(rank), int(count)

    def skip(self, offset):
        """Caffe's DataLayer::Skip: whether the record `offset` records after the start of the
        reading belongs to another rank (rank r keeps offset % N == r). A TEST layer keeps every
        record: only rank 0 tests."""
        return self.phase != caffe_pb2.TEST and offset % self.solver_count != self.solver_rank

    def record_offsets(self, k):
        """Positions in the reading order of batch k's records: those skip() keeps, counted from
        where the reading began (the start, or a resume's position, which any rank count takes up)."""
        count = 1 if self.phase == caffe_pb2.TEST else self.solver_count
        rank = self.solver_rank if count > 1 else 0
        kept = (k - self.resume_batch) * self.batch_size + np.arange(self.batch_size)
        return self.resume_offset + rank + count * kept

    def forward(self, xp, bottoms, tops):
        if self._prefetcher is None:
            from ..data.prefetch import Prefetcher
            self._seed()
            self._prefetcher = Prefetcher(self.producer(), self.batches,
                                          self.prefetch_depth(), name=f"data:{self.name}")
        try:
            arrays = self._prefetcher.next()
        except NetspecError as e:
            raise NetspecError(_naming_file(e), layer=self.name, layer_type=self.type, hint=e.hint) from None
        self.batches += 1
        for top, array in zip(tops, arrays):
            _put(xp, top, array)

    def prefetch_depth(self):
        return 4

    def data_state(self):
        """records: the position of the next record no rank has read (all ranks read in step)."""
        count = 1 if self.phase == caffe_pb2.TEST else self.solver_count
        records = self.resume_offset + count * (self.batches - self.resume_batch) * self.batch_size
        return {"seed": self._seed(), "batches": self.batches, "records": int(records)}

    def set_data_state(self, state):
        self.close()
        self.seed, self.batches = int(state["seed"]), int(state["batches"])
        self.resume_batch = self.batches
        self.resume_offset = int(state.get("records", self.batches * self.batch_size))

    def close(self):
        if self._prefetcher is not None:
            self._prefetcher.stop()
            self._prefetcher = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _need_batch_size(self, value, message):
        if not value:
            self.fail(f"{message}.batch_size is not set (or 0)", hint=f"add {message} {{ batch_size: 64 }}")
        return int(value)

    def _rand_skip(self, rand_skip):
        """Caffe skips a random number (below rand_skip) of records once, at the start."""
        return int(np.random.default_rng([self._seed(), 1 << 20]).integers(rand_skip)) if rand_skip else 0

    def _shapes(self, item_shape, batch_size):
        shape = (batch_size,) + self._transformer().shape(item_shape)
        return [shape, (batch_size,)][:len(self.lp.top)]

    def _need_files(self, *named):
        """MissingSource for the first (what, path, folder) that does not exist; a mean_file
        too, since the transformer reads it."""
        tp = self.lp.transform_param
        if tp.HasField("mean_file"):
            named += (("transform_param.mean_file", tp.mean_file, False),)
        for what, path, folder in named:
            if not os.path.lexists(path):       # there but of the wrong kind: the reader says so
                raise MissingSource(f"{what} '{path}' does not exist",
                                    "convert your data first (tools/convert_imageset.py, tools/convert_mnist_data.py,"
                                    " tools/compute_image_mean.py), or fix the path")

    def _shapes_without_source(self, ctx, channels, size, what):
        """(N, C, H, W) and labels (N,) from the parameters alone: C and H x W as given, else None."""
        tp = self.lp.transform_param
        if tp.crop_size:
            size, what = (tp.crop_size, tp.crop_size), "crop_size"
        if channels is None:
            channels = (3 if tp.force_color else 1 if tp.force_gray else
                        len(tp.mean_value) if len(tp.mean_value) > 1 else None)
        h, w = size or (None, None)
        ctx.note(f"{self.batch_size} items (batch_size)" + (f", {h}x{w} from {what}" if size else ", size unknown")
                 + (f", {channels} channels" if channels else ", channels unknown"))
        return [(self.batch_size, channels, h, w), (self.batch_size,)][:len(self.lp.top)]


def _order(n, epoch, seed, shuffle):
    """The order of the n records in a given pass over them (a fresh shuffle every pass)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, 2 << 20, epoch]).permutation(n)


@layer("Data")
class Data(_Reading):
    """Datum records from an LMDB or a LevelDB, in key order, wrapping at the end."""
    labelled = True

    def setup(self):
        super().setup()
        p = self.lp.data_param
        self.batch_size = self._need_batch_size(p.batch_size, "data_param")
        self.source = p.source
        self._first = None

    def prefetch_depth(self):
        return self.lp.data_param.prefetch

    def _first_item(self):
        if self._first is None:
            from ..data.datum import datum_to_array, parse_datum
            reader = _as_layer_error(lambda: self._reader())
            value = reader.first_value()
            reader.close()
            t = self._transformer()
            self._first = datum_to_array(parse_datum(value), t.force_color, t.force_gray)
        return self._first

    def read_source(self):
        self._need_files(("data_param.source", self.source, True))
        return self._first_item().shape

    def infer(self, bottoms, ctx):
        if ctx.source is None:
            return self._shapes_without_source(ctx, None, None, None)
        return self._shapes(ctx.source, self.batch_size)

    def _reader(self):
        """An LMDB or LevelDB reader (the folder's contents decide; else data_param.backend)."""
        from ..data.db import open_reader
        p = self.lp.data_param
        declared = "leveldb" if p.HasField("backend") and p.backend == caffe_pb2.DataParameter.LEVELDB else "lmdb"
        return open_reader(self.source, declared, "data_param.source")

    def producer(self):
        from ..data.datum import datum_to_array, parse_datum
        from ..data.db import advance_to
        transform = self._transformer()
        start = self._rand_skip(self.lp.data_param.rand_skip)
        reader = None

        def produce(k):
            nonlocal reader
            if reader is None:
                reader = self._reader()
            datums = []
            for offset in self.record_offsets(k):
                advance_to(reader, start + int(offset))
                datums.append(parse_datum(reader.next_value()))
            items = [datum_to_array(d, transform.force_color, transform.force_gray) for d in datums]
            try:
                batch = np.stack(items)
            except ValueError:
                raise NetspecError(f"records of different shapes in one batch of '{self.source}' "
                                   f"({items[0].shape} and others)", hint="use batch_size: 1, or "
                                   "resize the images when converting (convert_imageset --resize_height/--resize_width)") from None
            labels = np.array([d.label for d in datums], np.float32)
            return transform(batch, self.batch_rng(k)), labels
        produce.close = lambda: reader is not None and reader.close()
        return produce


@layer("ImageData")
class ImageData(_Reading):
    """Images named in a list file ("path label" per line), read with Pillow."""
    labelled = True

    def setup(self):
        super().setup()
        p = self.lp.image_data_param
        self.batch_size = self._need_batch_size(p.batch_size, "image_data_param")
        if (p.new_height > 0) != (p.new_width > 0):
            self.fail(f"image_data_param sets new_height {p.new_height} and new_width {p.new_width}: "
                      "images are resized only when both are set, as in Caffe",
                      hint="set both new_height and new_width, or neither")
        self._lines = None
        self._first_shape = None

    def lines(self):
        if self._lines is None:
            p = self.lp.image_data_param
            try:
                text = _as_layer_error(lambda: read_regular(p.source, "image_data_param.source", LIST_LIMIT, text=True))
                raw = [line.strip() for line in text.splitlines() if line.strip()]
            except OSError as e:
                self.fail(f"cannot read image_data_param.source '{p.source}': {e.strerror}",
                          hint="write a list file with one 'path label' per line")
            lines = []
            for i, line in enumerate(raw, 1):
                path, _, label = line.rpartition(" ")
                if not path or not label.lstrip("-").isdigit():
                    self.fail(f"{p.source}:{i}: expected 'path label', found '{line}'")
                lines.append((p.root_folder + path, int(label)))     # joined as Caffe does: no separator added
            if not lines:
                self.fail(f"image_data_param.source '{p.source}' lists no images")
            self._lines = lines
        return self._lines

    def _read(self, path):
        from ..data.datum import read_image
        p = self.lp.image_data_param
        try:
            return read_image(path, p.new_height, p.new_width, p.is_color)
        except OSError as e:
            raise NetspecError(f"cannot read image '{path}': {e.strerror or e}",
                               hint="check image_data_param.root_folder and the paths in the list file") from None

    def read_source(self):
        self._need_files(("image_data_param.source", self.lp.image_data_param.source, False))
        self._transformer()                 # reads the mean file, if any
        if self._first_shape is None:
            self._first_shape = _as_layer_error(lambda: self._read(self.lines()[0][0])).shape
        return self._first_shape

    def infer(self, bottoms, ctx):
        if ctx.source is None:      # images are read as colour (3 channels) unless is_color is false
            p = self.lp.image_data_param
            size = (p.new_height, p.new_width) if p.new_height > 0 else None
            return self._shapes_without_source(ctx, 3 if p.is_color else 1, size, "new_height/new_width")
        return self._shapes(ctx.source, self.batch_size)

    def producer(self):
        p, lines, transform = self.lp.image_data_param, self.lines(), self._transformer()
        start, n, seed = self._rand_skip(p.rand_skip), len(lines), self._seed()
        orders = {}

        def order(epoch):
            if epoch not in orders:
                orders.clear()
                orders[epoch] = _order(n, epoch, seed, p.shuffle)
            return orders[epoch]

        def produce(k):
            pos = start + self.record_offsets(k)
            picks = [lines[order(e)[i]] for e, i in zip(pos // n, pos % n)]
            batch = np.stack([self._read(path) for path, _ in picks])
            labels = np.array([label for _, label in picks], np.float32)
            return transform(batch, self.batch_rng(k)), labels
        return produce


@layer("MemoryData")
class MemoryData(_Source):
    """Batches from arrays given in Python: set_input_arrays(data, labels), as in pycaffe."""
    labelled = True
    tops = (2, 2)

    def setup(self):
        p = self.lp.memory_data_param
        if not (p.batch_size and p.channels and p.height and p.width):
            self.fail("memory_data_param needs batch_size, channels, height and width, all positive; got "
                      f"{p.batch_size}, {p.channels}, {p.height}, {p.width}",
                      hint="e.g. memory_data_param { batch_size: 64 channels: 1 height: 28 width: 28 }")
        self.shape = (p.batch_size, p.channels, p.height, p.width)
        self.data = self.labels = None
        self.position = 0

    def infer(self, bottoms, ctx):
        return [self.shape, (self.shape[0],)]

    def set_input_arrays(self, data, labels):
        data, labels = np.asarray(data, np.float32), np.asarray(labels, np.float32).reshape(-1)
        if data.shape[1:] != self.shape[1:]:
            raise NetspecError(f"MemoryData '{self.name}' expects items of shape {self.shape[1:]}, got {data.shape[1:]}")
        if len(data) != len(labels):
            raise NetspecError(f"MemoryData '{self.name}': {len(data)} items but {len(labels)} labels")
        if len(data) == 0 or len(data) % self.shape[0]:
            raise NetspecError(f"MemoryData '{self.name}': {len(data)} items is not a multiple of the batch size {self.shape[0]}")
        self.data, self.labels, self.position = data, labels, 0

    def forward(self, xp, bottoms, tops):
        if self.data is None:
            raise NetspecError(f"MemoryData '{self.name}' has no data", hint="call set_input_arrays(data, labels) first")
        end = self.position + self.shape[0]
        _put(xp, tops[0], self.data[self.position:end])
        _put(xp, tops[1], self.labels[self.position:end])
        self.position = end % len(self.data)

    def data_state(self):
        return {"position": self.position}

    def set_data_state(self, state):
        self.position = int(state["position"])


@layer("Input")
class Input(_Source):
    """Blobs fed from outside (Net.forward(data=...)); forward leaves them as they are."""
    is_input = True
    tops = (1, None)

    def setup(self):
        shapes = self.lp.input_param.shape
        if len(shapes) not in (1, len(self.lp.top)):
            self.fail(f"{len(shapes)} shapes for {len(self.lp.top)} tops",
                      hint="give one input_param.shape for all tops, or one per top")

    def infer(self, bottoms, ctx):
        shapes = [tuple(int(d) for d in s.dim) for s in self.lp.input_param.shape]
        if not shapes:
            self.fail("input_param has no shape", hint="add input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } }")
        return shapes * len(self.lp.top) if len(shapes) == 1 else shapes

    def forward(self, xp, bottoms, tops):
        pass


@layer("DummyData")
class DummyData(_Source):
    """Blobs filled by fillers: once for constant fillers, at every forward otherwise."""
    tops = (1, None)

    def setup(self):
        p, n = self.lp.dummy_data_param, len(self.lp.top)
        if len(p.data_filler) not in (0, 1, n):
            self.fail(f"{len(p.data_filler)} data_fillers for {n} tops", hint="give 0, 1 or one per top")
        legacy = [p.num, p.channels, p.height, p.width]
        if any(len(f) for f in legacy):
            if len(p.shape):
                self.fail("both shape and the legacy num/channels/height/width are set", hint="keep shape only")
            if any(len(f) not in (1, n) for f in legacy):
                self.fail("num, channels, height and width must each be given once, or once per top")
            self.shapes = [tuple(int(f[0 if len(f) == 1 else i]) for f in legacy) for i in range(n)]
        else:
            if len(p.shape) not in (1, n):
                self.fail(f"{len(p.shape)} shapes for {n} tops", hint="give one shape for all tops, or one per top")
            self.shapes = [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]
        default = caffe_pb2.FillerParameter(type="constant", value=0)
        fillers = list(p.data_filler) or [default]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(n)]
        self.filled = False

    def infer(self, bottoms, ctx):
        return list(self.shapes)

    def forward(self, xp, bottoms, tops):
        from ..fillers import fill
        rng = self.rng if self.rng is not None else np.random.default_rng()
        for top, shape, filler in zip(tops, self.shapes, self.fillers):
            if filler.type != "constant" or not self.filled:
                top.data = fill(xp, rng, shape, filler, top.data.dtype if top.data is not None else np.float32)
        self.filled = True


@layer("WindowData")
class WindowData(_Source):
    """R-CNN window sampling: shapes only here; its forward is not supported."""
    labelled = True
    tops = (2, 2)

    def setup(self):
        # as Caffe: the crop size is transform_param's (where the upgrade moves a V1 file's
        # window_data_param.crop_size); the legacy place still counts for a layer not upgraded
        self.crop_size = self.lp.transform_param.crop_size or self.lp.window_data_param.crop_size
        if not self.lp.window_data_param.batch_size or not self.crop_size:
            self.fail("WindowData needs window_data_param.batch_size and transform_param.crop_size")

    def infer(self, bottoms, ctx):
        n, size = self.lp.window_data_param.batch_size, self.crop_size
        return [(n, 3, size, size), (n,)]

    def forward(self, xp, bottoms, tops):
        raise NetspecError("WindowData layers can be checked but not run", layer=self.name, layer_type=self.type,
                           hint="convert the windows to an LMDB or HDF5 file and use a Data or HDF5Data layer")
