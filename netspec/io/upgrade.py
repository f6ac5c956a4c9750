"""Legacy nets and solvers upgraded to the current schema, as Caffe's upgrade_proto.cpp does.

Steps, in Caffe's order: V0 layers (with padding layers folded into the next conv/pool)
to V1; legacy data-layer transformation fields to transform_param; V1 `layers` to
`layer`; top-level input/input_dim/input_shape to an Input layer; old BatchNorm param
specs. Where Caffe aborts or silently drops, we raise a located NetspecError or warn.
Every step that changes something adds a warning saying what it changed.
"""
from .. import caffe_pb2
from ..errors import NetspecError
from .text import suggest

V1 = caffe_pb2.V1LayerParameter
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}
# V0 type strings and the V1 enum they became.
V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}
_CONV, _IP, _POOL = "convolution_param", "inner_product_param", "pooling_param"
_DATA = {"data": "data_param", "hdf5_data": "hdf5_data_param", "images": "image_data_param",
         "window_data": "window_data_param"}
# V0 field -> {V0 type (or "*": any) -> (V1 parameter message, its field)}.
V0_FIELDS = {
    "num_output": {"conv": (_CONV, "num_output"), "innerproduct": (_IP, "num_output")},
    "biasterm": {"conv": (_CONV, "bias_term"), "innerproduct": (_IP, "bias_term")},
    "weight_filler": {"conv": (_CONV, "weight_filler"), "innerproduct": (_IP, "weight_filler")},
    "bias_filler": {"conv": (_CONV, "bias_filler"), "innerproduct": (_IP, "bias_filler")},
    "pad": {"conv": (_CONV, "pad"), "pool": (_POOL, "pad")},
    "kernelsize": {"conv": (_CONV, "kernel_size"), "pool": (_POOL, "kernel_size")},
    "group": {"conv": (_CONV, "group")},
    "stride": {"conv": (_CONV, "stride"), "pool": (_POOL, "stride")},
    "pool": {"pool": (_POOL, "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {**{t: (p, "source") for t, p in _DATA.items()},
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {"*": ("transform_param", "scale")},
    "meanfile": {"*": ("transform_param", "mean_file")},
    "batchsize": {t: (p, "batch_size") for t, p in _DATA.items()},
    "cropsize": {"*": ("transform_param", "crop_size")},
    "mirror": {"*": ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
}
# Data layers whose own parameters once held the transformation fields.
_LEGACY_TRANSFORM = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                     "WINDOW_DATA": "window_data_param", "Data": "data_param",
                     "ImageData": "image_data_param", "WindowData": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def _line(at):
    return at[0] if at else None


def _place(path, at):
    return ":".join(str(p) for p in (path, _line(at)) if p is not None) or "<net>"


def _aligned(found, count):
    """Positions for `count` entries, or Nones when the scan could not pair them up."""
    return list(found) if found and len(found) == count else [None] * count


def needs_upgrade(net):
    return bool(len(net.layers) or len(net.input) or len(net.input_dim) or len(net.input_shape)
                or _legacy_transform_layers(net) or _old_batch_norms(net))


def upgrade_net(net, path=None, positions=None):
    """Upgrade `net` in place. Returns (layer positions aligned with net.layer, warnings)."""
    positions = positions or {}
    layer_at = _aligned(positions.get("layer"), len(net.layer))
    v1_at = _aligned(positions.get("layers"), len(net.layers))
    warnings = []
    if any(v1.HasField("layer") for v1 in net.layers):
        v1_at = upgrade_v0(net, v1_at, path, warnings)
    upgrade_transform_fields(net, path, warnings)
    if len(net.layers):
        layer_at = upgrade_v1(net, layer_at, v1_at, path, warnings)
    if len(net.input) or len(net.input_dim) or len(net.input_shape):
        at = (positions.get("input") or positions.get("input_dim") or [None])[0]
        layer_at = upgrade_input(net, layer_at, at, path, warnings)
    upgrade_batch_norm(net, layer_at, path, warnings)
    return layer_at, warnings


# --- V0 ----------------------------------------------------------------------------------

def upgrade_v0(net, v1_at, path, warnings):
    """V0 layers (`layers { layer { type: "conv" } }`) to V1, padding layers folded in."""
    original = [V1.FromString(v.SerializePartialToString()) for v in net.layers]
    kept, last_top = [], {name: None for name in net.input}
    for i, conn in enumerate(original):
        if conn.layer.type != "padding":
            kept.append((conn, v1_at[i]))
        for j, bottom in enumerate(conn.bottom):
            if bottom not in last_top:
                raise NetspecError(f"found bottom '{bottom}', which no earlier layer or input "
                                   "produces; expected the top of an earlier layer",
                                   file=path, line=_line(v1_at[i]), layer=conn.layer.name)
            source = last_top[bottom]
            if source is not None and original[source].layer.type == "padding":
                _fold_padding(original[source], conn, j, kept[-1][0], path, v1_at[i], warnings)
        for top in conn.top:
            last_top[top] = i
    del net.layers[:]
    upgraded = 0
    for conn, at in kept:
        if conn.HasField("layer"):
            conn = _v0_to_v1(conn, path, at, warnings)
            upgraded += 1
        net.layers.add().CopyFrom(conn)
    warnings.append(f"{_place(path, None)}: upgraded {upgraded} V0 layer(s) "
                    "(layers { layer { type: \"conv\" } }) to the current form")
    return [at for _, at in kept]


def _fold_padding(pad_conn, conn, j, target, path, at, warnings):
    where = dict(file=path, line=_line(at), layer=conn.layer.name)
    if conn.layer.type not in ("conv", "pool"):
        raise NetspecError(f"found V0 padding layer '{pad_conn.layer.name}' feeding a "
                           f"'{conn.layer.type}' layer; expected it to feed a conv or pool layer",
                           **where)
    if len(conn.bottom) != 1 or len(pad_conn.bottom) != 1 or len(pad_conn.top) != 1:
        raise NetspecError(f"found V0 padding layer '{pad_conn.layer.name}' with several blobs; "
                           "expected one bottom and one top on it and on the layer it feeds", **where)
    target.layer.pad = pad_conn.layer.pad
    target.bottom[j] = pad_conn.bottom[0]
    warnings.append(f"{_place(path, at)}: V0 padding layer '{pad_conn.layer.name}' (pad "
                    f"{pad_conn.layer.pad}) folded into '{conn.layer.name}'")


def _v0_to_v1(conn, path, at, warnings):
    v0 = conn.layer
    v1 = V1()
    v1.bottom.extend(conn.bottom)
    v1.top.extend(conn.top)
    if v0.HasField("name"):
        v1.name = v0.name
    if v0.HasField("type"):
        if v0.type not in V0_TYPES:
            raise NetspecError(f"found V0 layer type '{v0.type}'; expected one of "
                               + ", ".join(sorted(V0_TYPES)), file=path,
                               line=_line(at), layer=v0.name,
                               hint=suggest(v0.type, list(V0_TYPES)))
        v1.type = V1.LayerType.Value(V0_TYPES[v0.type])
    v1.blobs.extend(v0.blobs)
    v1.blobs_lr.extend(v0.blobs_lr)
    v1.weight_decay.extend(v0.weight_decay)
    for fd, value in v0.ListFields():
        if fd.name in ("name", "type", "blobs", "blobs_lr", "weight_decay"):
            continue
        target = V0_FIELDS.get(fd.name, {})
        target = target.get(v0.type) or target.get("*")
        if target is None:
            warnings.append(f"{_place(path, at)}: V0 layer '{v0.name}' ({v0.type}): field "
                            f"'{fd.name}' has no meaning for this type and was dropped, as Caffe does")
            continue
        _assign(getattr(v1, target[0]), target[1], fd, value)
    return v1


def _assign(param, name, fd, value):
    if name is None:
        param.CopyFrom(value)
        return
    field = param.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        getattr(param, name).append(value)
    elif field.message_type is not None:
        getattr(param, name).CopyFrom(value)
    else:
        setattr(param, name, value)


# --- data transformation -----------------------------------------------------------------

def _legacy_transform_layers(net):
    found = []
    for layer in list(net.layers) + list(net.layer):
        kind = V1.LayerType.Name(layer.type) if isinstance(layer, V1) and layer.HasField("type") \
            else layer.type
        param_name = _LEGACY_TRANSFORM.get(kind)
        if param_name and layer.HasField(param_name):
            param = getattr(layer, param_name)
            if any(param.HasField(f) for f in _TRANSFORM_FIELDS):
                found.append((layer, param))
    return found


def upgrade_transform_fields(net, path, warnings):
    """scale/mean_file/crop_size/mirror in data_param and the like -> transform_param."""
    moved = []
    for layer, param in _legacy_transform_layers(net):
        for name in _TRANSFORM_FIELDS:
            if param.HasField(name):
                setattr(layer.transform_param, name, getattr(param, name))
                param.ClearField(name)
        moved.append(layer.name)
    if moved:
        warnings.append(f"{_place(path, None)}: moved the legacy transformation fields (scale, "
                        "mean_file, crop_size, mirror) of data layer(s) "
                        + ", ".join(f"'{n}'" for n in dict.fromkeys(moved))   # TRAIN and TEST twins once
                        + " into transform_param")


# --- V1 ----------------------------------------------------------------------------------

_V1_PARAMS = [fd.name for fd in V1.DESCRIPTOR.fields
              if fd.message_type is not None and fd.name.endswith("_param")]


def upgrade_v1_layer(v1):
    """One V1LayerParameter as a LayerParameter."""
    lp = caffe_pb2.LayerParameter()
    lp.bottom.extend(v1.bottom)
    lp.top.extend(v1.top)
    if v1.HasField("name"):
        lp.name = v1.name
    lp.include.extend(v1.include)
    lp.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        lp.type = V1_TYPES[V1.LayerType.Name(v1.type)]
    lp.blobs.extend(v1.blobs)
    specs = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for _ in range(specs):
        lp.param.add()
    for spec, name in zip(lp.param, v1.param):
        spec.name = name
    for spec, mode in zip(lp.param, v1.blob_share_mode):
        spec.share_mode = mode          # STRICT and PERMISSIVE have the same numbers
    for spec, lr in zip(lp.param, v1.blobs_lr):
        spec.lr_mult = lr
    for spec, decay in zip(lp.param, v1.weight_decay):
        spec.decay_mult = decay
    lp.loss_weight.extend(v1.loss_weight)
    for name in _V1_PARAMS:
        if v1.HasField(name):
            getattr(lp, name).CopyFrom(getattr(v1, name))
    return lp


def upgrade_v1(net, layer_at, v1_at, path, warnings):
    """`layers { type: CONVOLUTION }` -> `layer { type: "Convolution" }`, kept in source order."""
    mixed = len(net.layer) > 0
    entries = [(at, 1, lp) for at, lp in zip(layer_at, net.layer)]
    for at, v1 in zip(v1_at, net.layers):
        lp = upgrade_v1_layer(v1)
        entries.append((at, 0, lp))
        if mixed:
            old = V1.LayerType.Name(v1.type) if v1.HasField("type") else "(none)"
            warnings.append(f"{_place(path, at)}: layer '{lp.name}' is written in the legacy V1 "
                            f"form (layers {{ type: {old} }}) in a net that also uses 'layer'; "
                            f"read as layer {{ type: \"{lp.type}\" }}")
    if all(at for at, _, _ in entries):
        entries.sort(key=lambda e: e[0])
    elif mixed:
        entries.sort(key=lambda e: e[1])
        warnings.append(f"{_place(path, None)}: the order of 'layer' and legacy 'layers' entries "
                        "is unknown here; the legacy layers were placed first")
    if not mixed:
        warnings.append(f"{_place(path, None)}: upgraded {len(net.layers)} legacy V1 layer(s) "
                        "(layers { type: CONVOLUTION }) to the current form "
                        "(layer { type: \"Convolution\" })")
    del net.layers[:]
    del net.layer[:]
    for _, _, lp in entries:
        net.layer.add().CopyFrom(lp)
    return [at for at, _, _ in entries]


# --- inputs and BatchNorm ------------------------------------------------------------------

def upgrade_input(net, layer_at, at, path, warnings):
    """Top-level input + input_dim / input_shape -> an Input layer 'input' at the front."""
    names, dims, shapes = list(net.input), list(net.input_dim), list(net.input_shape)
    where = dict(file=path, line=_line(at))
    if dims and shapes:
        raise NetspecError("found both input_dim and input_shape; expected one of them", **where)
    if dims and len(dims) != 4 * len(names):
        raise NetspecError(f"found {len(dims)} input_dim values for {len(names)} input(s); "
                           "expected 4 per input (num, channels, height, width)", **where)
    if shapes and len(shapes) != len(names):
        raise NetspecError(f"found {len(shapes)} input_shape(s) for {len(names)} input(s); "
                           "expected one per input", **where)
    net.ClearField("input")
    net.ClearField("input_dim")
    net.ClearField("input_shape")
    if not names:
        warnings.append(f"{_place(path, at)}: input_dim/input_shape without 'input' names no "
                        "blob; dropped")
        return layer_at
    if not (dims or shapes):
        warnings.append(f"{_place(path, at)}: top-level 'input' without a shape (as in old "
                        "caffemodels) dropped")
        return layer_at
    layer = caffe_pb2.LayerParameter(name="input", type="Input", top=names)
    for i in range(len(names)):
        shape = layer.input_param.shape.add()
        if shapes:
            shape.CopyFrom(shapes[i])
        else:
            shape.dim.extend(dims[4 * i:4 * i + 4])
    layers = [layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    described = ", ".join(f"{n} {tuple(s.dim)}" for n, s in zip(names, layer.input_param.shape))
    warnings.append(f"{_place(path, at)}: top-level input fields upgraded to an Input layer "
                    f"'input' ({described})")
    return [at] + list(layer_at)


def _old_batch_norms(net):
    return [lp for lp in net.layer if lp.type == "BatchNorm" and len(lp.param) == 3]


def upgrade_batch_norm(net, layer_at, path, warnings):
    """BatchNorm with three param specs (old Caffe's way of freezing its statistics): zero them."""
    changed = []
    for lp in _old_batch_norms(net):
        before = [(s.lr_mult, s.decay_mult, s.HasField("lr_mult"), s.HasField("decay_mult"))
                  for s in lp.param]
        for spec in lp.param:
            spec.lr_mult, spec.decay_mult = 0.0, 0.0
        if before != [(0.0, 0.0, True, True)] * 3:
            changed.append(lp.name)
    if changed:
        warnings.append(f"{_place(path, None)}: BatchNorm layer(s) "
                        + ", ".join(f"'{n}'" for n in changed)
                        + " declare three param specs (old Caffe); set their lr_mult and "
                          "decay_mult to 0, as Caffe does: the statistics are not learned")


# --- solver ------------------------------------------------------------------------------

def upgrade_solver(solver, path=None):
    """solver_type enum -> type string; inline nets upgraded. Returns warnings."""
    warnings = []
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise NetspecError("found both solver_type (legacy enum) and type; expected only type",
                               file=path, hint="delete the solver_type line")
        old = caffe_pb2.SolverParameter.SolverType.Name(solver.solver_type)
        solver.type = SOLVER_TYPES[old]
        solver.ClearField("solver_type")
        warnings.append(f"{_place(path, None)}: legacy 'solver_type: {old}' upgraded to "
                        f"'type: \"{solver.type}\"'")
    inline = [("net_param", solver.net_param)] if solver.HasField("net_param") else []
    if solver.HasField("train_net_param"):
        inline.append(("train_net_param", solver.train_net_param))
    inline += [(f"test_net_param[{i}]", n) for i, n in enumerate(solver.test_net_param)]
    for name, net in inline:
        if needs_upgrade(net):
            _, more = upgrade_net(net, f"{path or '<solver>'} ({name})")
            warnings.extend(more)
    return warnings
