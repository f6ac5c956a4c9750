"""HDF5Data and HDF5Output: rows of HDF5 datasets in, blobs appended to an HDF5 file out."""
import numpy as np

from ..utils import LIST_LIMIT, PROTO_LIMIT, read_regular, regular_file
from .base import Layer
from .data import _as_layer_error, _order, _Reading
from .registry import layer


@layer("HDF5Data")
class HDF5Data(_Reading):
    """Rows of HDF5 datasets named by the tops, from the .h5 files listed in a text file."""
    tops = (1, None)

    def setup(self):
        super().setup()
        p = self.lp.hdf5_data_param
        self.batch_size = self._need_batch_size(p.batch_size, "hdf5_data_param")
        self._files = None

    def files(self):
        """[(path, rows)], with every file's datasets checked against the tops."""
        if self._files is None:
            import h5py
            source = self.lp.hdf5_data_param.source
            try:
                text = _as_layer_error(lambda: read_regular(source, "hdf5_data_param.source", LIST_LIMIT, text=True))
                paths = text.split()     # whitespace-separated names, as Caffe reads them
            except OSError as e:
                self.fail(f"cannot read hdf5_data_param.source '{source}': {e.strerror}",
                          hint="it is a text file listing .h5 paths (one per line)")
            if not paths:
                self.fail(f"hdf5_data_param.source '{source}' lists no files")
            files, self.row_shapes = [], None
            for path in paths:
                try:
                    _as_layer_error(lambda: regular_file(path, f"HDF5 file (listed in '{source}')", PROTO_LIMIT * 1024))
                    with h5py.File(path, "r") as h5:
                        shapes = {}
                        for name in self.lp.top:
                            if name not in h5:
                                self.fail(f"HDF5 file '{path}' has no dataset '{name}' (it has: {', '.join(h5.keys())})",
                                          hint="name the tops after the datasets")
                            shapes[name] = h5[name].shape
                except OSError as e:
                    self.fail(f"cannot open HDF5 file '{path}' (listed in '{source}'): {e}")
                rows = {s[0] for s in shapes.values()}
                if len(rows) != 1:
                    self.fail(f"datasets in '{path}' have different numbers of rows: {shapes}")
                row_shapes = [tuple(shapes[name][1:]) for name in self.lp.top]
                if self.row_shapes is not None and row_shapes != self.row_shapes:
                    self.fail(f"'{path}' holds rows of shapes {row_shapes}, earlier files {self.row_shapes}")
                self.row_shapes = row_shapes
                files.append((path, rows.pop()))
            self._files = files
        return self._files

    def read_source(self):
        source = self.lp.hdf5_data_param.source
        self._need_files(("hdf5_data_param.source", source, False))
        text = _as_layer_error(lambda: read_regular(source, "hdf5_data_param.source", LIST_LIMIT, text=True))
        for path in text.split():
            self._need_files((f"HDF5 file (listed in '{source}')", path, False))
        self.files()
        return self.row_shapes

    def infer(self, bottoms, ctx):
        if ctx.source is None:      # only the files say how many axes each top has
            ctx.note(f"{self.batch_size} rows (batch_size); the rows' shapes are in the files")
            return [None] * len(self.lp.top)
        return [(self.batch_size,) + s for s in ctx.source]

    def producer(self):
        import h5py
        files, seed = self.files(), self._seed()
        shuffle = self.lp.hdf5_data_param.shuffle
        total = sum(rows for _, rows in files)
        cache = {}

        def rows_of(file_index, epoch):
            """The rows of one file, in this pass's order (kept while the pass reads it)."""
            key = (file_index, epoch)
            if key not in cache:
                cache.clear()
                with h5py.File(files[file_index][0], "r") as h5:
                    arrays = [np.asarray(h5[name], np.float32) for name in self.lp.top]
                order = _order(len(arrays[0]), epoch * len(files) + file_index, seed, shuffle)
                cache[key] = [a[order] for a in arrays]
            return cache[key]

        def produce(k):
            out = [[] for _ in self.lp.top]
            for pos in self.record_offsets(k):
                epoch, offset = divmod(pos, total)
                for f in _order(len(files), epoch, seed + 1, shuffle):
                    if offset < files[f][1]:
                        break
                    offset -= files[f][1]
                for col, rows in zip(out, rows_of(f, epoch)):
                    col.append(rows[offset])
            return tuple(np.stack(col) for col in out)
        return produce


@layer("HDF5Output")
class HDF5Output(Layer):
    """Appends its bottoms, as datasets "data" and "label", to hdf5_output_param.file_name.
    (Caffe writes the datasets once per forward; here every batch is appended.)"""
    bottoms = (2, 2)
    tops = (0, 0)

    def setup(self):
        if not self.lp.hdf5_output_param.file_name:
            self.fail("hdf5_output_param.file_name is not set")
        self._file = None

    def infer(self, bottoms, ctx):
        return []

    def forward(self, xp, bottoms, tops):
        import h5py
        from ..backend import to_numpy
        if self._file is None:       # opened at the first forward: `check` and Net() write nothing
            from ..outputs import claim
            path = self.lp.hdf5_output_param.file_name
            claim(path, "an HDF5 file", h5py.is_hdf5, "hdf5_output_param.file_name")
            try:
                self._file = h5py.File(path, "w")
            except OSError as e:
                self.fail(f"cannot write hdf5_output_param.file_name '{path}': {e}",
                          hint="name a file in a writable folder")
        for name, blob in zip(("data", "label"), bottoms):
            array = to_numpy(blob.data)
            if name not in self._file:
                self._file.create_dataset(name, data=array, maxshape=(None,) + array.shape[1:])
            else:
                ds = self._file[name]
                ds.resize(ds.shape[0] + len(array), axis=0)
                ds[-len(array):] = array
        self._file.flush()

    def backward(self, xp, tops, propagate_down, bottoms):
        pass
