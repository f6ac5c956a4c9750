"""caffe.draw: a NetParameter as a Graphviz graph through pydot, as pycaffe draws it (layers as
boxes coloured by type, blobs as octagons, in-place neuron layers as ellipses)."""
from .. import caffe_pb2

LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900", "InnerProduct": "#CC33FF"}


def get_pooling_types_dict():
    return {v: k for k, v in caffe_pb2.PoolingParameter.PoolMethod.items()}


def _params(layer):
    """The layer's parameter messages, as its class names them."""
    from ..layers import LAYERS
    cls = LAYERS.get(layer.type)
    return [getattr(layer, f) for f in (cls.param_fields if cls else ())]


def get_edge_label(layer):
    """What an edge out of the layer says: a data layer's batch size, a layer's num_output."""
    for p in _params(layer):
        fields = p.DESCRIPTOR.fields_by_name
        if "num_output" in fields:
            return str(p.num_output)
        if "batch_size" in fields and p.DESCRIPTOR.name == "DataParameter":
            return f"Batch {p.batch_size}"
    return None


def _first(values, default):
    return values[0] if len(values) else default


def get_layer_label(layer, rankdir):
    """'name (type)' with the window of a convolution or pooling layer."""
    separator = " " if rankdir in ("TB", "BT") else "\n"
    head, words = f"{layer.name}{separator}({layer.type})", ()
    for p in _params(layer):
        if p.DESCRIPTOR.name == "ConvolutionParameter":
            words = (f"kernel size: {_first(p.kernel_size, 1)}", f"stride: {_first(p.stride, 1)}",
                     f"pad: {_first(p.pad, 0)}")
        elif p.DESCRIPTOR.name == "PoolingParameter":
            head = f"{layer.name}{separator}({layer.type} {get_pooling_types_dict()[p.pool]})"
            words = (f"kernel size: {p.kernel_size}", f"stride: {p.stride}", f"pad: {p.pad}")
    return '"' + separator.join((head,) + words) + '"'


def choose_color_by_layertype(layertype):
    return COLORS.get(layertype, "#6495ED")


def _in_phase(layer, phase):
    if phase is None:
        return True
    included = not layer.include or any(rule.phase == phase for rule in layer.include if rule.HasField("phase")) \
        or all(not rule.HasField("phase") for rule in layer.include)
    excluded = any(rule.phase == phase for rule in layer.exclude if rule.HasField("phase"))
    return included and not excluded


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None):
    """A pydot.Dot of the net; phase (caffe.TRAIN/TEST) draws only that phase's layers."""
    import pydot
    graph = pydot.Dot(caffe_net.name if caffe_net.name else "Net", graph_type="digraph", rankdir=rankdir)
    nodes, edges = {}, []
    for layer in caffe_net.layer:
        if not _in_phase(layer, phase):
            continue
        name = f"{layer.name}_{layer.type}"
        label = get_layer_label(layer, rankdir)
        if len(layer.bottom) == 1 and len(layer.top) == 1 and layer.bottom[0] == layer.top[0]:
            nodes[name] = pydot.Node(label, **NEURON_LAYER_STYLE)        # an in-place neuron layer
        else:
            nodes[name] = pydot.Node(label, **dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type)))
        for bottom in layer.bottom:
            nodes[bottom + "_blob"] = pydot.Node(bottom, **BLOB_STYLE)
            edges.append((bottom + "_blob", name, '""'))
        for top in layer.top:
            nodes[top + "_blob"] = pydot.Node(top, **BLOB_STYLE)
            edges.append((name, top + "_blob", (get_edge_label(layer) if label_edges else None) or '""'))
    for node in nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=label))
    return graph


def draw_net(caffe_net, rankdir, ext="png", phase=None):
    """The net drawn as image bytes in format `ext` (png, svg, pdf ...)."""
    return get_pydot_graph(caffe_net, rankdir, phase=phase).create(format=ext)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None):
    """Draw the net to a file; the format is the file's extension."""
    from ..utils import atomic_write
    ext = filename[filename.rfind(".") + 1:]
    atomic_write(filename, draw_net(caffe_net, rankdir, ext, phase))
