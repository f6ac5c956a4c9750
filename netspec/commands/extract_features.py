"""`netspec extract_features`: Caffe's tools/extract_features: blobs of a trained net, batch by
batch, saved as Datums of float_data (key: the image index, 10 digits) in an LMDB, or as one
N x ... dataset (named after the blob) in an HDF5 file.

    netspec extract_features WEIGHTS MODEL BLOB[,BLOB] DB[,DB] NUM_BATCHES lmdb|hdf5 [CPU|GPU] [DEVICE_ID]
"""
import os

import numpy as np

from ..errors import NetspecError


def add_parser(subparsers):
    p = subparsers.add_parser("extract_features", help="save blobs of a trained net to LMDB or HDF5 "
                                                       "(as Caffe's extract_features)",
                              description="Run a net (TEST phase) for NUM_BATCHES batches and save each named "
                                          "blob, item by item, as Caffe's extract_features does.")
    p.add_argument("weights", help="the trained .caffemodel")
    p.add_argument("model", help="the net .prototxt (its data layers feed the batches)")
    p.add_argument("blobs", help="blob names, comma-separated")
    p.add_argument("datasets", help="output databases, comma-separated, one per blob")
    p.add_argument("num_batches", type=int, help="how many batches to run")
    p.add_argument("db_type", type=str.lower, choices=["lmdb", "hdf5", "leveldb"], help="output kind")
    p.add_argument("mode", nargs="?", type=str.upper, choices=["CPU", "GPU"], default="CPU",
                   help="CPU (default) or GPU")
    p.add_argument("device_id", nargs="?", type=int, default=0, help="the GPU's id with GPU (default 0)")
    return p


def run(args):
    from ..data.datum import array_to_datum
    from ..data.db import write_lmdb
    from ..net import Net
    blobs, datasets = args.blobs.split(","), args.datasets.split(",")
    if len(blobs) != len(datasets):
        raise NetspecError(f"{len(blobs)} blob names but {len(datasets)} datasets",
                           hint="give one output database per blob, in the same order")
    if args.num_batches < 1:
        raise NetspecError(f"num_batches must be at least 1, found {args.num_batches}")
    if args.db_type == "leveldb":
        raise NetspecError("LevelDB output is not written here", hint="use lmdb (or hdf5)")
    for path in datasets:
        if os.path.exists(path):
            raise NetspecError("the output already exists", file=path, hint="remove it or choose another name")
    backend = "numpy"
    if args.mode == "GPU":
        from ..backend import get_xp
        try:
            get_xp("cupy").cuda.Device(args.device_id).use()
        except NetspecError as e:
            raise NetspecError(f"GPU asked for: {e.message}", hint="leave out GPU to extract on the CPU") from None
        backend = "cupy"
    net = Net(args.model, weights=args.weights, phase="TEST", backend=backend)
    try:
        for name in blobs:
            net._known([name])
        print("Extracting Features")
        rows = {name: [] for name in blobs}
        for batch in range(args.num_batches):
            net.forward()
            for name in blobs:
                rows[name].append(np.array(net.blobs[name].data, copy=True) if backend == "numpy"
                                  else net.blobs[name].data.get())
        for name, path in zip(blobs, datasets):
            features = np.concatenate(rows[name])
            if args.db_type == "lmdb":
                items = (((b"%010d" % i), array_to_datum(_chw(f).astype(np.float32)).SerializeToString())
                         for i, f in enumerate(features))
                write_lmdb(path, items)
            else:
                _write_hdf5(path, name, features)
            print(f"Extracted features of {len(features)} query images for feature blob {name}")
    finally:
        net.close()
    print("Successfully extracted the features!")
    return 0


def _chw(item):
    """An item's values in a Datum's channels x height x width (Caffe: blob channels, height, width)."""
    shape = tuple(item.shape) + (1,) * (3 - item.ndim)
    if len(shape) > 3:
        shape = (int(np.prod(shape[:-2])),) + shape[-2:]
    return item.reshape(shape)


def _write_hdf5(path, name, features):
    from ..io import hdf5
    hdf5.write_file(path, lambda f: f.create_dataset(name, data=features.astype(np.float32)))
