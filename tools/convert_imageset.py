#!/usr/bin/env python3
"""Convert images to an LMDB (or LevelDB) of Datum records, as Caffe's convert_imageset does.

    python tools/convert_imageset.py ROOTFOLDER/ LISTFILE DB_NAME
LISTFILE has one "path label" per line, paths relative to ROOTFOLDER; or give a folder
instead of LISTFILE, holding one sub-folder per class (labels in sorted order).
"""
import argparse
import os
import sys

from netspec.data.convert import imageset_to_lmdb, read_list
from netspec.errors import NetspecError


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="folder the listed paths are relative to")
    ap.add_argument("listfile", help="list file ('path label' per line) or a folder of class folders")
    ap.add_argument("db", help="output LMDB (or LevelDB) folder (must not exist)")
    ap.add_argument("--gray", action="store_true", help="store images as greyscale")
    ap.add_argument("--shuffle", action="store_true", help="shuffle the order of the images")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    ap.add_argument("--resize_height", type=int, default=0)
    ap.add_argument("--resize_width", type=int, default=0)
    ap.add_argument("--encoded", action="store_true", help="store encoded image bytes instead of raw pixels")
    ap.add_argument("--encode_type", default="", help="re-encode as this format (png, jpg)")
    ap.add_argument("--check_size", "--check-size", action="store_true",
                    help="check that every image has the same channels x height x width")
    ap.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"], help="database to write (default lmdb)")
    args = ap.parse_args(argv)
    if bool(args.resize_height) != bool(args.resize_width):
        print("convert_imageset: error: give both --resize_height and --resize_width", file=sys.stderr)
        return 2
    try:
        entries = read_list(args.listfile)
        root = args.listfile if os.path.isdir(args.listfile) else args.root
        imageset_to_lmdb(root, entries, args.db, args.resize_height, args.resize_width, args.gray,
                         args.encoded, args.encode_type, args.shuffle, args.seed, backend=args.backend,
                         check_size=args.check_size)
    except NetspecError as e:
        print(f"convert_imageset: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
