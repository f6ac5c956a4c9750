"""Caffe's command-line spellings: `caffe train -solver s.prototxt -gpu 0` pasted with `caffe`
replaced by `netspec` runs unchanged. gflags takes `-flag value`, `-flag=value` and `--flag`;
here each of Caffe's flag names becomes the option netspec spells with two dashes."""
from ..errors import NetspecError

# Caffe's flags of train, test, time and device_query -> netspec's options
FLAGS = {"solver": "--solver", "weights": "--weights", "snapshot": "--snapshot", "iterations": "--iterations",
         "model": "--model", "gpu": "--gpu", "phase": "--phase", "level": "--level", "stage": "--stage",
         "sigint_effect": "--sigint-effect", "sighup_effect": "--sighup-effect"}
COMMANDS = ("train", "test", "time", "device_query")


def translate(argv):
    """argv with Caffe's -flag / -flag=value / --flag_name spellings in netspec's form."""
    if not argv or argv[0] not in COMMANDS:
        return list(argv)
    out = [argv[0]]
    for word in argv[1:]:
        name, eq, value = word.lstrip("-").partition("=")
        if word.startswith("-") and not word.startswith("---") and name in FLAGS:
            out.append(FLAGS[name] + eq + value)
        else:
            out.append(word)
    return out


def add_gpu_option(parser):
    parser.add_argument("--gpu", metavar="N[,N]|all",
                        help="run on the GPU(s) given, as Caffe's -gpu (CuPy; one device here)")


def backend_of(args, default="numpy"):
    """'cupy' (on the device -gpu names) or the --backend asked for; Caffe's -gpu rules."""
    if getattr(args, "gpu", None) is None:
        return args.backend or default
    if args.backend == "numpy":
        raise NetspecError("--gpu and --backend numpy both given", hint="drop one of them")
    from ..backend import get_xp
    try:
        xp = get_xp("cupy")
    except NetspecError as e:
        raise NetspecError(f"-gpu {args.gpu} asks for a GPU: {e.message}",
                           hint=f"to run on the CPU: {cpu_command(args)}") from None
    devices = gpu_ids(args.gpu, xp.cuda.runtime.getDeviceCount())
    if len(devices) > 1:
        raise NetspecError(f"-gpu {args.gpu} names {len(devices)} GPUs; netspec runs one process on one GPU",
                           hint=f"give one device (-gpu {devices[0]})")
    xp.cuda.Device(devices[0]).use()
    return "cupy"


def gpu_ids(text, count):
    """The device ids of -gpu 0 / 0,1 / all, each checked against the devices present."""
    if text == "all":
        return list(range(count))
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise NetspecError(f"-gpu '{text}' is not a list of device ids", hint="e.g. -gpu 0, -gpu 0,1 or -gpu all") from None
    for i in ids:
        if not 0 <= i < count:
            raise NetspecError(f"-gpu {i}: there are {count} GPU(s), ids 0 to {count - 1}")
    return ids


def cpu_command(args):
    """The exact command line that runs this one on the CPU: -gpu dropped, --backend numpy added."""
    import shlex        # here: every command reads this module, few print a command line
    argv = list(getattr(args, "argv", None) or [])
    words, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in ("--gpu", "--backend"):
            skip = True
            continue
        if word.startswith(("--gpu=", "--backend=")):
            continue
        words.append(word)
    return "netspec " + " ".join(shlex.quote(w) for w in words + ["--backend", "numpy"])
