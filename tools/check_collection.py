#!/usr/bin/env python
"""Tally `netspec check` over a collection of nets.

  python tools/check_collection.py [-v] DIR...

Every .prototxt under the folders is checked (in its own state, as `netspec check FILE` does) and
counted as clean, warnings only, errors (the file reads, some layers are in error), unreadable
(netspec check exits 2) or a crash (exit 3, a bug). -v adds a line per file. Exit status 1 when a
file crashed, else 0. Run from anywhere: the tree's own netspec is used unless PYTHONPATH says
otherwise (the same tool measures an older tree that way).
"""
import argparse
import collections
import os
import pathlib
import sys

if "PYTHONPATH" not in os.environ:
    sys.path.insert(1, str(pathlib.Path(__file__).resolve().parents[1]))

KINDS = ("clean", "warnings only", "errors", "unreadable", "crash")


def nets(folders):
    for folder in folders:
        yield from sorted(str(p) for p in pathlib.Path(folder).rglob("*.prototxt"))


def verdict(path):
    """(kind, detail) for one file."""
    from netspec.errors import NetspecError
    from netspec.report import check
    try:
        report = check(path, phase=None, level=None)
    except NetspecError as e:
        return "unreadable", str(e).splitlines()[0]
    except Exception as e:      # noqa: BLE001 -- a crash is what this tool looks for
        return "crash", f"{type(e).__name__}: {e}"
    errors, warnings = report.found_errors, report.found_warnings
    if errors:
        layers = sorted({e.layer for e in errors if e.layer})
        return "errors", f"{len(errors)} error(s) on {len(layers)} layer(s): " + ", ".join(layers[:6]) + (
            " ..." if len(layers) > 6 else "")
    if warnings:
        return "warnings only", f"{len(warnings)} warning(s)"
    return "clean", ""


def tally(paths, out=None):
    """Counter of kinds over the paths; a line per file to `out` when given."""
    counts = collections.Counter()
    for path in paths:
        kind, detail = verdict(path)
        counts[kind] += 1
        if out is not None:
            print(f"{path}: {kind}" + (f" ({detail})" if detail else ""), file=out)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description="Tally netspec check over folders of .prototxt nets.")
    parser.add_argument("folders", nargs="+", metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per file")
    args = parser.parse_args(argv)
    missing = [f for f in args.folders if not os.path.isdir(f)]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    paths = list(nets(args.folders))
    counts = tally(paths, sys.stdout if args.verbose else None)
    print(f"{'files':<14}{len(paths):>5}")
    for kind in KINDS:
        print(f"{kind:<14}{counts[kind]:>5}")
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
