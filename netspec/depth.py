"""The numbers the papers count: depth (weight layers, convolutions and inner products, on the
longest path from an input to an output) and each weight layer's connections (input-output
pairs one item joins, its multiply-accumulates) beside its parameters (weights it learns):
a 2x2 convolution from 4x4 to 3x3 has 36 connections and 4 weights; full connection, 144 and 144.
"""


def _weighs(node):
    return node.layer is not None and getattr(node.layer, "weight_layer", False)


def depth(graph):
    """Weight layers along the longest path, as GoogLeNet counts its 22 and ResNet-50 its 50."""
    made_by, best = {}, {}
    for node in graph.nodes:                    # execution order: producers come first
        below = max((best[made_by[b]] for b in node.bottoms if b in made_by), default=0)
        best[node.name] = below + _weighs(node)
        for t in node.tops:
            made_by[t] = node.name
    return max(best.values(), default=0)


def connections(r):
    """(connections, weights) of one item through a weight layer's result r, or None."""
    if (not _weighs(r.node) or not r.bottom_shapes or r.bottom_shapes[0] is None or not r.param_shapes
            or not r.counted or None in r.param_shapes[0]):
        return None
    batch = r.bottom_shapes[0][0] or 1
    weights = 1
    for d in r.param_shapes[0]:
        weights *= d
    return r.macs // batch, weights
