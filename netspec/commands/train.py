"""`netspec train`: train a net from a Caffe solver file, as `caffe train` does."""
import os
import shutil
import tempfile

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..utils import int32, nonnegative_int, split_stages
from .caffe_flags import cpu_command
from .test import warn_unused_stages

EFFECTS = ("stop", "snapshot", "none")

EXAMPLE_ITERATIONS = 300


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a net from a solver file (as `caffe train`)",
        description="Train from a Caffe solver file; logs in Caffe's format (parse_log.py reads them).")
    p.add_argument("--solver", help="the solver .prototxt")
    p.add_argument("--example", action="store_true",
                   help="train LeNet on the Fashion-MNIST sample shipped with netspec (no download)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"with --example: iterations to train (default {EXAMPLE_ITERATIONS})")
    p.add_argument("--weights", help="the .caffemodel(s) to fine-tune from, copied by layer name "
                                      "(comma-separated: each in turn, as Caffe)")
    p.add_argument("--weights-legacy-reshape", action="store_true",
                   help="with --weights: take blobs whose element count matches but whose shape is another (legacy) form")
    p.add_argument("--snapshot", help="a .solverstate to resume from")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: cupy when the solver says solver_mode: GPU, else numpy)")
    p.add_argument("--stage", action="append", default=[],
                   help="a train net stage (repeatable or comma-separated), added to the solver's train_state")
    p.add_argument("--level", type=int32, default=0,
                   help="the train net's level; as `caffe train`, it replaces any level in the files (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="random seed (overrides the solver's random_seed)")
    p.add_argument("-gpu", "--gpu", metavar="IDS",
                   help="train on these GPUs, one rank each ('0,1' or 'all', as Caffe's flag; the gradients "
                        "are summed through NCCL); several start under mpirun by themselves")
    p.add_argument("--sigint-effect", "--sigint_effect", choices=EFFECTS, default="stop",
                   help="what Ctrl-C (SIGINT) does: stop after the iteration (default, as Caffe), snapshot and go on, or none")
    p.add_argument("--sighup-effect", "--sighup_effect", choices=EFFECTS, default="snapshot",
                   help="what SIGHUP does: snapshot and go on (default, as Caffe), stop, or none")
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("--plot", metavar="PNG", help="write the training curves (loss, test outputs, learning "
                   "rate) to this .png, .svg or .pdf (needs matplotlib: pip install 'netspec[plot]')")
    p.add_argument("--force", action="store_true",
                   help="replace an existing file of another kind at an output path the net or solver names")
    return p


def run(args):
    """One process, or one rank of a data-parallel run (started by mpirun, or by -gpu itself)."""
    from ..parallel import world
    gpus = None
    if args.gpu is not None:
        from ..parallel.launcher import gpu_list
        if args.backend == "numpy":
            raise NetspecError("-gpu trains on GPUs, but --backend numpy asks for the CPU", hint="drop one of them")
        args.backend = "cupy"
        gpus = gpu_list(args.gpu)
    group = world()
    if group is None and gpus and len(gpus) > 1:
        from ..parallel.launcher import relaunch
        return relaunch(len(gpus), args.argv)
    if group is None:
        if gpus:
            from ..parallel.launcher import use_device
            use_device(gpus[0])
        return train(args)
    return train_rank(args, group, gpus)


def train_rank(args, group, gpus):
    """One rank: a failure all ranks share is reported once, by rank 0; a failure of this rank
    alone while the others train ends the whole job, naming this rank."""
    from ..parallel.mpi import RankError
    try:
        if args.example:
            raise NetspecError("--example trains in one process", hint="under mpirun, give --solver")
        return train(args, group, gpus)
    except RankError:
        if group.root:
            raise
        return 2
    except NetspecError as e:
        group.abort(f"rank {group.rank}: {e}")
    except Exception as e:          # a bug on one rank must not leave the others waiting
        group.abort(f"rank {group.rank}: {type(e).__name__}: {e}")


def train(args, group=None, gpus=None):
    """Train in this process: alone, or as one rank of `group` (only rank 0 logs and writes)."""
    from ..training import Log
    root = group is None or group.root
    quiet = None if root else open(os.devnull, "w")
    # under a launcher stdout may look like a terminal while it is a pipe: no live progress line there
    log = Log(args.log, progress=False if group else None) if root else Log(stream=quiet, progress=False)
    workdir = tempfile.mkdtemp(prefix="netspec-example-") if args.example else None
    try:
        parallel = None
        if group is not None:
            from ..parallel.sync import DataParallel
            parallel = DataParallel(group)
        set_up = lambda: _set_up(args, log, workdir, parallel, gpus)     # noqa: E731
        trainer, sp = set_up() if group is None else group.agree(set_up, "setting up")
        # A loss that goes non-finite is caught and explained by the trainer; NumPy's own
        # overflow warnings on the way there would only bury that message.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            scores = trainer.solve(resume=args.snapshot)
        if args.plot and root:
            from ..curves import Curves, plot_curves
            plot_curves(args.plot, Curves(trainer.loss_curve, trainer.test_curves, trainer.lr_curve),
                        title=trainer.net.name)
            log.info(f"Curves written to {args.plot}")
        if args.example and scores:
            accuracy = scores[0].get("accuracy")
            if accuracy is not None:
                log.info(f"Test accuracy after {sp.max_iter} iterations: {100 * float(accuracy):.2f}% "
                         "(1000 held-out Fashion-MNIST images)")
    finally:
        log.close()
        if quiet:
            quiet.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _set_up(args, log, workdir, parallel, gpus):
    """The solver, the trainer and its start weights: (trainer, solver parameter)."""
    from ..training import Trainer, read_solver
    if args.example == bool(args.solver):
        raise NetspecError("give --solver SOLVER.prototxt, or --example")
    if args.iterations is not None and not args.example:
        raise NetspecError("--iterations goes with --example", hint="set max_iter in the solver file")
    if args.iterations is not None and args.iterations < 1:
        raise NetspecError(f"--iterations must be at least 1, found {args.iterations}",
                           hint=f"leave it out to train {EXAMPLE_ITERATIONS} iterations")
    if args.weights and args.snapshot:
        raise NetspecError("--weights and --snapshot both given",
                           hint="give a snapshot to resume training, or weights to fine-tune, not both")
    if args.plot:                   # written after training: refused before it
        from ..outputs import check_writable
        check_writable(args.plot, "--plot")
    if args.example:
        sp = example_solver(workdir, args.iterations or EXAMPLE_ITERATIONS, log)
        solver_path = None
    else:
        sp, solver_path = read_solver(args.solver, log), args.solver
        set_train_state(sp, args.level, args.stage, log)
    backend = args.backend or _default_backend(sp, solver_path, args)
    if parallel is not None and backend == "cupy":      # one GPU per rank
        from ..parallel.launcher import device_for, use_device
        use_device(device_for(parallel.group.local_rank, gpus))
    trainer = Trainer(sp, backend=backend, seed=args.seed, log=log, solver_path=solver_path, parallel=parallel)
    trainer.sigint_effect, trainer.sighup_effect = args.sigint_effect, args.sighup_effect
    if not args.example:            # the example prints its own check first
        print_shapes(trainer, log)
    warn_unused_stages([trainer.net] + trainer.test_nets, log)
    for path in (args.weights.split(",") if args.weights else ()):
        fine_tune(trainer, path, args.weights_legacy_reshape, log)
    return trainer, sp


def set_train_state(sp, level, stages, log):
    """`caffe train`'s rule: the train net's level is always the command's (default 0), replacing a
    level the solver's train_state or the net file's state sets; stages are added to train_state."""
    if sp.train_state.HasField("level") and sp.train_state.level != level:
        log.warn(f"the solver's train_state level {sp.train_state.level} is replaced by --level {level}, "
                 "as `caffe train` does; pass --level to keep it")
    sp.train_state.level = level
    sp.train_state.stage.extend(split_stages(stages))


def fine_tune(trainer, path, legacy_reshape, log):
    """Copy one weights file into the train net (the table says what happened to each layer) and
    into the layers only a test net has, as Caffe's CopyLayers; nothing is copied if any layer
    is refused."""
    from ..io import read_weights
    found = read_weights(path)
    plans = [trainer.net.weights_plan(found, legacy_reshape)]
    rows = list(plans[0].rows)
    trained = set(trainer.net.layer_names)
    for i, net in enumerate(trainer.test_nets):
        plans.append(net.weights_plan(found, legacy_reshape))
        rows += [(f"{name} (test net #{i})", status, detail) for name, status, detail in plans[-1].rows
                 if name not in trained and status != "skipped"]
    log.info(f"Fine-tuning from {path}:\n" + weights_table(rows))
    refused = [r for r in rows if r[1] == "refused"]
    if refused:
        raise NetspecError(
            f"{len(refused)} layer(s) in {path} do not fit the net: "
            + "; ".join(f"'{name}' ({detail})" for name, _, detail in refused),
            hint="rename the layer in the net so it starts from its filler (the usual way to "
                 "replace a classifier), or pass --weights-legacy-reshape if only the shape's form differs")
    for plan, net in zip(plans, [trainer.net] + trainer.test_nets):
        plan.apply(net)


def weights_table(rows):
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'status':<8} detail"]
    lines += [f"{name:<{width}}  {status:<8} {detail}" for name, status, detail in rows]
    return "\n".join(lines)


def print_shapes(trainer, log):
    """The train net's shape table, once (Caffe logs every top's shape as it sets the net up)."""
    from ..report import check
    net = trainer.net
    report = check(net.source, phase="TRAIN", stages=net.graph.stages, level=net.graph.level)
    log.info(f"Train net '{net.name}':\n" + report.format())


def _default_backend(sp, solver_path, args=None):
    """A solver that says `solver_mode: GPU` asks for CuPy (an error where there is none, never a
    silent fallback); one that leaves solver_mode unset runs on NumPy."""
    if not (sp.HasField("solver_mode") and sp.solver_mode == caffe_pb2.SolverParameter.GPU):
        return "numpy"
    from ..backend import get_xp
    try:
        get_xp("cupy")
    except NetspecError as e:
        raise NetspecError(f"the solver asks for the GPU (solver_mode: GPU): {e.message}", file=solver_path,
                           hint=f"to train on the CPU: {cpu_command(args)} (or set solver_mode: CPU)" if args else
                           "pass --backend numpy to train on the CPU, or set solver_mode: CPU") from None
    return "cupy"


def example_solver(workdir, iterations, log):
    """LeNet over LMDBs made from the shipped Fashion-MNIST sample; the net's shape check is
    printed first."""
    from google.protobuf import text_format
    from ..data.convert import mnist_to_lmdb
    from ..report import check
    here = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "example")
    sources = {}
    for split, name in (("train", "train"), ("t10k", "test")):
        db = os.path.join(workdir, f"{name}_lmdb")
        count = mnist_to_lmdb(os.path.join(here, f"{split}-images-idx3-ubyte.gz"),
                              os.path.join(here, f"{split}-labels-idx1-ubyte.gz"), db)
        log.info(f"Converted {count} {name} images of the shipped Fashion-MNIST sample to {db}")
        sources[name] = db
    with open(os.path.join(here, "lenet_train_test.prototxt")) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    for lp in net.layer:
        if lp.HasField("data_param"):
            train = any(rule.phase == caffe_pb2.TRAIN for rule in lp.include)
            lp.data_param.source = sources["train" if train else "test"]
    print(check(net, phase="TRAIN").format(), flush=True)
    return caffe_pb2.SolverParameter(
        net_param=net, test_iter=[10], test_interval=iterations, test_initialization=False,
        base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="inv", gamma=0.0001, power=0.75,
        display=50, max_iter=iterations, snapshot_after_train=False, solver_mode=caffe_pb2.SolverParameter.CPU,
        random_seed=1)
