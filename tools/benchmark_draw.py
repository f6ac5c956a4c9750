#!/usr/bin/env python
"""How long `netspec draw` takes on the big nets of the zoo (target: under 2 s each).

  python tools/benchmark_draw.py [--repeats R]

Times the shape check, building the graph and Graphviz's layout to SVG apart, for GoogLeNet
and ResNet-152, drawn whole and with --collapse; prints the median of R runs. Needs pydot
and Graphviz's dot. Not a test: timings are never asserted.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import netspec  # noqa: E402
from netspec.draw import drawing  # noqa: E402

NETS = ["models/googlenet/deploy.prototxt", "models/resnet-152/deploy.prototxt"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    for net in NETS:
        for collapse in (False, True):
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                report = netspec.check(os.path.join(root, net))
                t1 = time.perf_counter()
                d = drawing(report, collapse=collapse)
                t2 = time.perf_counter()
                d.render("svg")
                t3 = time.perf_counter()
                runs.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
            check, build, layout, total = (statistics.median(r[i] for r in runs) for i in range(4))
            print(f"{net}{' --collapse' if collapse else ''}: {total:.2f} s "
                  f"(check {check:.2f}, graph {build:.2f}, dot {layout:.2f}), {len(set(d.ids.values()))} layer nodes")


if __name__ == "__main__":
    main()
