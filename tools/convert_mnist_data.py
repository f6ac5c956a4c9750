#!/usr/bin/env python3
"""Convert MNIST-format IDX files (MNIST, Fashion-MNIST; gzip or not) to an LMDB of Datum
records keyed "%08d", as Caffe's convert_mnist_data does.

    python tools/convert_mnist_data.py train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz train_lmdb
"""
import argparse
import sys

from netspec.data.convert import mnist_to_lmdb
from netspec.errors import NetspecError


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", help="IDX images file (e.g. train-images-idx3-ubyte[.gz])")
    ap.add_argument("labels", help="IDX labels file (e.g. train-labels-idx1-ubyte[.gz])")
    ap.add_argument("db", help="output LMDB (or LevelDB) folder (must not exist)")
    ap.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"], help="database to write (default lmdb)")
    args = ap.parse_args(argv)
    try:
        count = mnist_to_lmdb(args.images, args.labels, args.db, backend=args.backend)
    except NetspecError as e:
        print(f"convert_mnist_data: error: {e}", file=sys.stderr)
        return 2
    print(f"Processed {count} files into {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
