"""`netspec compare`: run two things on the same input; name the first layer where they differ."""
from ..errors import NetspecError
from ..utils import nonnegative_int

NET_SUFFIXES = (".prototxt", ".pt", ".yaml", ".yml", ".json", ".pbtxt")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "compare", help="run a net two ways on one input; name the first layer that differs",
        description="Run two sides on the same input and list, layer by layer in execution order, the "
                    "maximum absolute and relative difference of every blob both sides have; the first "
                    "one out of tolerance is named. A side is netspec with a weights file "
                    "(.caffemodel or .caffemodel.h5), netspec on a --backend, an ONNX model (.onnx, run "
                    "by onnxruntime) or a dump of blob name -> array (.npz or HDF5, e.g. pycaffe's "
                    "net.blobs; input blobs in it are the input fed). Sides not given are netspec with "
                    "--weights, one per --backend. Exit 0: they agree; 1: they differ; 2: bad input.")
    p.add_argument("files", nargs="+", metavar="FILE", help="[NET.prototxt] A [B]")
    p.add_argument("--model", help="the net (instead of a NET.prototxt first argument)")
    p.add_argument("--weights", help="weights for the netspec sides not given as files")
    p.add_argument("--backend", action="append", choices=["numpy", "cupy"], default=[],
                   help="a netspec side on this backend (repeatable: --backend numpy --backend cupy)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="shape of an input blob (repeatable); filled with standard normal values")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    p.add_argument("--rtol", type=float, default=1e-4,
                   help="tolerance relative to each blob's largest magnitude (default 1e-4)")
    return p


def _split(args):
    files = list(args.files)
    model = args.model
    if model is None:
        if not files[0].lower().endswith(NET_SUFFIXES):
            raise NetspecError(f"'{files[0]}' is not a net definition and no --model was given",
                               hint="give the net first: netspec compare NET.prototxt A [B], or --model NET")
        model = files.pop(0)
    if len(files) > 2:
        raise NetspecError(f"compare takes two sides, found {len(files)}: {' '.join(files)}")
    return model, files


def run(args):
    from .. import compare as cmp
    from ..net import Net
    from ..report import parse_inputs
    from ..utils import format_shape
    if args.atol < 0 or args.rtol < 0:
        raise NetspecError("--atol and --rtol must not be negative")
    model, files = _split(args)
    backends = args.backend or ["numpy"]
    kinds = [cmp.kind_of(f) for f in files]
    own = 2 - len(files)           # netspec sides with --weights: one per --backend
    if own == 2 and len(backends) < 2:
        raise NetspecError("compare needs two sides; only the net was given",
                           hint="add a file (.caffemodel, .onnx, .npz/.h5 blobs), or --backend numpy --backend cupy")
    if len(backends) > max(own, 1):
        raise NetspecError(f"{len(backends)} --backend options but {own} netspec side(s) to run them",
                           hint="two sides in all: e.g. --backend numpy --backend cupy and no file")
    dumps = {f: cmp.dump_values(f) for f, k in zip(files, kinds) if k == "dump"}
    shapes = parse_inputs(args.input)
    base = Net(model, weights=args.weights, backend=backends[0], inputs=shapes or None, seed=0)
    feeds = {}
    for values in dumps.values():
        feeds.update({k: v for k, v in values.items() if k in base.inputs and k not in feeds})
    if len(feeds) < len(base.inputs):
        rest = {k: v for k, v in cmp.random_inputs(base, args.seed).items() if k not in feeds}
        feeds.update(rest)
    order, base_values = cmp.net_trace(base, feeds)
    fed = {k: v.shape for k, v in feeds.items()}
    names = [n for _, _, n in order] + list(base.inputs)

    label = "netspec {} " + (args.weights or "(filler weights)")
    sides = [(label.format(backends[0]), base_values)] if own else []
    if own == 2:
        net = Net(model, weights=args.weights, backend=backends[1], inputs=fed, seed=0)
        sides.append((label.format(backends[1]), cmp.net_trace(net, feeds)[1]))
    for f, kind in zip(files, kinds):
        if kind == "onnx":
            sides.append((f"onnxruntime {f}", cmp.onnx_values(f, feeds, names)))
        elif kind == "dump":
            sides.append((f"blobs {f}", dumps[f]))
        else:
            net = Net(model, weights=f, backend=backends[0], inputs=fed, seed=0)
            sides.append((f"netspec {backends[0]} {f}", cmp.net_trace(net, feeds)[1]))
    (a_label, a), (b_label, b) = sides
    rows = cmp.compare(order, a, b, args.atol, args.rtol)
    given = ", ".join(f"{k} {format_shape(v.shape)}" for k, v in feeds.items())
    print(f"A: {a_label}\nB: {b_label}\ninput: {given}; tolerance atol {args.atol:g} + rtol {args.rtol:g} * max|B|")
    if not rows:
        raise NetspecError("the two sides have no blob in common", hint="a dump's or model's names must be the "
                                                                       "net's blob names")
    print_rows(rows)
    bad = [r for r in rows if not r.ok]
    if not bad:
        print(f"agree: {len(rows)} blobs within tolerance")
        return 0
    r = bad[0]
    print(f"first divergence: layer '{r.layer}' ({r.layer_type}), blob '{r.blob}': max abs {r.max_abs:.3g}, "
          f"max rel {r.max_rel:.3g} ({len(bad)} of {len(rows)} blobs differ)")
    return 1


def print_rows(rows):
    width = max(len(r.layer) for r in rows)
    bwidth = max(len(r.blob) for r in rows)
    print(f"{'layer':<{width}}  {'blob':<{bwidth}}  {'shape':<16}  {'max abs':>9}  {'max rel':>9}")
    for r in rows:
        shape = "x".join(map(str, r.shape)) or "scalar"
        print(f"{r.layer:<{width}}  {r.blob:<{bwidth}}  {shape:<16}  {r.max_abs:9.3g}  {r.max_rel:9.3g}"
              f"{'' if r.ok else '  DIFFERS'}")
