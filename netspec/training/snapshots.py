"""Snapshots as Caffe writes them, and what an exact resume needs beside them.

A snapshot writes <prefix>_iter_N.caffemodel, <prefix>_iter_N.solverstate (Caffe's
SolverState: iter, current_step, learned_net, history) and beside it
<prefix>_iter_N.solverstate.rng.json: the seed, the random-generator state of every layer and
the number of batches each data layer has read. Caffe ignores that file; with it a resumed
run takes the very steps the uninterrupted one would (the same weights, bit for bit, on the CPU).
A data-parallel run adds "ranks": the train net's random state on ranks 1, 2, ...; the data
position (rank 0's, which counts the records of all ranks) resumes on any number of ranks.
"""
import json
import os

from .. import caffe_pb2
from ..errors import NetspecError
from ..io import hdf5
from ..utils import PROTO_LIMIT, atomic_write, read_regular
from . import guard

RNG_SUFFIX = ".rng.json"


def snapshot_prefix(sp, solver_path, log):
    """Caffe's rule for a solver read from a file: no snapshot_prefix is the solver's path
    without its extension; a prefix naming a directory gets the solver file's stem inside it.
    Decided once, before any snapshot makes a directory."""
    prefix = sp.snapshot_prefix
    if solver_path:
        stem = os.path.splitext(solver_path)[0]
        if not sp.HasField("snapshot_prefix"):
            prefix = stem
            log.info(f"snapshot_prefix was not specified and is set to {prefix}")
        elif os.path.isdir(prefix):
            prefix = os.path.join(prefix, os.path.basename(stem))
            log.info(f"snapshot_prefix is a directory and is set to {prefix}")
    return prefix or "snapshot"


def write_snapshot(prefix, iteration, net, solver, rng, log, write_diff=False, h5=False):
    """The three files of one snapshot; returns (caffemodel path, solverstate path). With `h5`
    (snapshot_format: HDF5) the weights and state are .caffemodel.h5 and .solverstate.h5."""
    kind, ext = ("HDF5", ".h5") if h5 else ("binary proto", "")
    model = f"{prefix}_iter_{iteration}.caffemodel{ext}"
    folder = os.path.dirname(model)
    if folder:
        os.makedirs(folder, exist_ok=True)
    state_path = f"{prefix}_iter_{iteration}.solverstate{ext}"
    guard.claim_snapshot(model, state_path, h5)
    log.info(f"Snapshotting to {kind} file {model}")
    (net.save_hdf5 if h5 else net.save)(model, write_diff=write_diff)
    log.info(f"Snapshotting solver state to {kind} file {state_path}")
    atomic_write(state_path + RNG_SUFFIX, json.dumps(dict(rng, weights_sha256=guard.weights_digest(model))))
    if h5:
        hdf5.write_state(state_path, solver.state(model))
    else:
        atomic_write(state_path, solver.state(model).SerializeToString())
    return model, state_path


def read_solver_state(path):
    if hdf5.is_hdf5(path):          # .solverstate.h5: Caffe picks the reader by the suffix too
        return hdf5.read_state(path)
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(read_regular(path, "the solver state", PROTO_LIMIT))
    except NetspecError:
        raise
    except OSError as e:
        raise NetspecError(f"cannot read solver state: {e.strerror}", file=path) from None
    except Exception as e:  # protobuf DecodeError
        raise NetspecError(f"not a .solverstate (binary SolverState): {e}", file=path) from None
    guard.refuse_weights(path, state)
    return state


def restore_snapshot(path, net, solver, nets, log, rank=0):
    """Caffe's Solver::Restore: the weights its learned_net names (looked for beside the state
    too), the solver's history, then the random state of `nets` where the side file exists."""
    state = read_solver_state(path)
    side = path + RNG_SUFFIX
    saved = guard.read_side(side) if os.path.exists(side) else None
    if state.learned_net:
        learned = state.learned_net
        if not os.path.exists(learned):
            beside = os.path.join(os.path.dirname(path), os.path.basename(learned))
            learned = beside if os.path.exists(beside) else learned
        guard.check_pair(state, path, learned, saved)
        net.copy_from(learned)
    solver.restore(state, path)
    if saved is not None:
        guard.apply_side(lambda nets, saved: set_rng_state(nets, saved, rank, log), nets, saved, side)
    else:
        log.warn(f"no {os.path.basename(side)} beside the solver state: data order and random "
                 "numbers restart from the beginning, as in Caffe")


def rng_state(seed, nets):
    """What a resumed run needs beyond Caffe's SolverState: every layer's random-generator
    state and every data layer's position, net by net."""
    saved = []
    for net in nets:
        layers = {}
        for layer in net.layers:
            entry = {}
            if hasattr(layer, "data_state"):
                entry["data"] = layer.data_state()
            if layer.rng is not None:
                entry["rng"] = layer.rng.bit_generator.state
            if entry:
                layers[layer.name] = entry
        saved.append(layers)
    return {"seed": seed, "nets": saved}


def set_rng_state(nets, saved, rank=0, log=None):
    """Every layer's state as saved; rank r > 0 (which has the train net alone) takes rank 0's
    data positions and its own random state where the snapshot has one."""
    if rank > 0:
        ranks = saved.get("ranks", [])
        own = ranks[rank - 1] if rank <= len(ranks) else {}
        if not own and log is not None:
            log.warn(f"the snapshot holds no random state for rank {rank}: its layers' random numbers start afresh")
        train = {}
        for name, entry in saved["nets"][0].items():
            train[name] = {"data": entry["data"]} if "data" in entry else {}
            if "rng" in own.get(name, {}):
                train[name]["rng"] = own[name]["rng"]
        saved = {"nets": [train]}
    if len(saved["nets"]) != len(nets):
        raise NetspecError("the saved random state is for a different number of nets",
                           hint="resume with the solver file that wrote the snapshot")
    for net, layers in zip(nets, saved["nets"]):
        for layer in net.layers:
            entry = layers.get(layer.name, {})
            if "rng" in entry and layer.rng is not None:
                layer.rng.bit_generator.state = entry["rng"]
            if "data" in entry and hasattr(layer, "set_data_state"):
                layer.set_data_state(entry["data"])
