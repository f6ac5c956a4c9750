#!/usr/bin/env python3
"""Compute the mean image of an LMDB of Datum records into a .binaryproto, as Caffe's
compute_image_mean does, and print the mean of each channel.

    python tools/compute_image_mean.py train_lmdb mean.binaryproto
"""
import argparse
import sys

from netspec.data.convert import compute_mean
from netspec.data.transform import write_mean_file
from netspec.errors import NetspecError


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", help="input LMDB or LevelDB folder")
    ap.add_argument("output", nargs="?", help="output .binaryproto (omit to only print channel means)")
    ap.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"],
                    help="ignored: the folder's contents say which it is")
    args = ap.parse_args(argv)
    try:
        mean = compute_mean(args.db)
    except NetspecError as e:
        print(f"compute_image_mean: error: {e}", file=sys.stderr)
        return 2
    if args.output:
        write_mean_file(args.output, mean)
    print(f"Number of channels: {mean.shape[0]}")
    for c, value in enumerate(mean.reshape(mean.shape[0], -1).mean(axis=1)):
        print(f"mean_value channel [{c}]: {value:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
