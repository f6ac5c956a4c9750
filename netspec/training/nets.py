"""The nets a solver file names: the train net and its test nets, each with its NetState,
in Caffe's order and with Caffe's rules; and the parameters in Caffe's learnable order."""
from .. import caffe_pb2
from ..errors import NetspecError
from ..graph import load_source, param_specs
from ..net import Net, ParamSlot


def read_solver(path, log=None):
    """A SolverParameter from a solver file (upgraded: legacy solver_type -> type ...);
    the upgrade notes go to the log as warnings."""
    from ..io import read_solver as read
    notes = []
    sp = read(path, warnings=notes)
    if log is not None:
        for note in notes:
            log.warn(str(note))
    return sp


def _state(phase, source, extra=None):
    """Caffe's rule: the phase, then the net file's own state, then the solver's train/test_state."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(source.param.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def train_net_source(sp, path=None):
    """The train net's NetSource and NetState; path: the solver file, named in errors."""
    fields = [f for f in ("train_net_param", "train_net", "net_param", "net") if sp.HasField(f)]
    if not fields:
        raise NetspecError("the solver names no net", file=path,
                           hint="add net: \"path/to/train_val.prototxt\" to the solver file")
    if len(fields) > 1:
        raise NetspecError(f"the solver names its train net more than once ({', '.join(fields)})", file=path,
                           hint="keep one of train_net_param, train_net, net_param, net")
    source = load_source(getattr(sp, fields[0]), f"<solver {fields[0]}>")
    return source, _state(caffe_pb2.TRAIN, source, sp.train_state if sp.HasField("train_state") else None)


def test_net_sources(sp):
    """[(NetSource, NetState)] for each test net, in Caffe's order: test_net_param, test_net,
    then the generic net once for each remaining test_iter."""
    generic = [f for f in ("net_param", "net") if sp.HasField(f)]
    if len(generic) > 1:
        raise NetspecError("the solver sets both net and net_param", hint="keep one")
    specific = [(p, "test_net_param") for p in sp.test_net_param] + [(p, "test_net") for p in sp.test_net]
    if generic:
        if len(sp.test_iter) < len(specific):
            raise NetspecError(f"{len(specific)} test nets but only {len(sp.test_iter)} test_iter values",
                               hint="give one test_iter per test net")
        specific += [(getattr(sp, generic[0]), generic[0])] * (len(sp.test_iter) - len(specific))
    elif len(sp.test_iter) != len(specific):
        raise NetspecError(f"{len(specific)} test nets but {len(sp.test_iter)} test_iter values",
                           hint="give one test_iter per test net")
    if len(sp.test_state) and len(sp.test_state) != len(specific):
        raise NetspecError(f"{len(sp.test_state)} test_state entries for {len(specific)} test nets",
                           hint="give test_state once per test net, or not at all")
    if specific and sp.test_interval <= 0:
        raise NetspecError("the solver has test nets but no test_interval", hint="add test_interval: 500")
    out = []
    for i, (value, what) in enumerate(specific):
        source = load_source(value, f"<solver {what}>")
        out.append((source, _state(caffe_pb2.TEST, source, sp.test_state[i] if len(sp.test_state) else None)))
    return out


def caffe_learnable_params(net):
    """The parameters in Caffe's learnable_params order: every blob a layer owns, layer by layer.
    Unlike the net's own list it keeps BatchNorm's statistics (lr_mult 0, so they never move, and
    decay_mult as the file says, default 1, as Caffe's BatchNorm set-up leaves it): Caffe keeps
    history for them, and a .solverstate must hold as many history blobs as Caffe's."""
    slots = {id(slot.blob): slot for slot in net.learnable_params}
    out, seen = [], set()
    for node, layer in zip(net.nodes, net.layers):
        for j, (blob, spec) in enumerate(zip(layer.blobs, param_specs(node.lp, len(layer.blobs)))):
            if id(blob) not in seen:
                seen.add(id(blob))
                out.append(slots.get(id(blob)) or ParamSlot(blob, layer.name, j, 0.0, spec.decay_mult))
    return out


def make_net(source, state, backend, seed, share_memory=False):
    return Net(source, phase=state.phase, backend=backend, seed=seed, stages=tuple(state.stage), level=state.level,
               share_memory=share_memory)
