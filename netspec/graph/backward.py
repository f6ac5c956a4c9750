"""Which layers, bottoms and parameters need backward, decided as Caffe's Net::Init decides
them: pure functions of the graph's nodes (each carries its tops' loss weights and its
Layer, or None)."""
from .. import caffe_pb2


def param_specs(lp, count):
    """The ParamSpec of each of a layer's `count` parameter blobs (Caffe's defaults past the list)."""
    return [lp.param[j] if j < len(lp.param) else caffe_pb2.ParamSpec() for j in range(count)]


_DEFAULT_LEARNS = caffe_pb2.ParamSpec().lr_mult > 0      # a blob the file gives no ParamSpec


class BackwardPlan:
    def __init__(self):
        self.layer = []             # layer i runs backward
        self.bottoms = []           # bottoms[i][k]: layer i writes bottom k's diff
        self.params = []            # params[i][j]: layer i's blob j gets a gradient
        self.reaches_loss = []      # layer i's output reaches a nonzero loss weight


def plan_backward(nodes, force_backward=False):
    """Which layers, bottoms and params need backward, as Caffe's Net::Init decides.

    Forward: a parameter learns when its file's lr_mult > 0 (negative or 0: frozen); a layer
    needs backward when a bottom blob needs it or a parameter learns, and then its tops need
    it; a bottom gets a diff when its blob needs one AND propagate_down allows it. Backward
    from the losses: a layer reaching no loss weight skips backward and writes no bottom
    diff; a layer whose every top is cut below (no diff wanted) skips it too. force_backward
    turns every layer and parameter on, and every bottom the layer allows (not labels).
    """
    plan = BackwardPlan()
    blob_needs = set()
    for node in nodes:
        needed = [b in blob_needs for b in node.bottoms]
        if any(needed):
            down = node.lp.propagate_down
            wanted = [need and (down[k] if k < len(down) else True) for k, need in enumerate(needed)]
        else:
            wanted = needed
        count = len(node.layer.param_blobs(None)) if node.layer is not None else 0
        given = [spec.lr_mult > 0 for spec in node.lp.param[:count]] if count else []
        params = given + [_DEFAULT_LEARNS] * (count - len(given))
        needs = any(needed) or any(params)
        if needs:
            blob_needs.update(node.tops)
        plan.layer.append(needs)
        plan.bottoms.append(wanted)
        plan.params.append(params)

    under_loss, cut = set(), set()
    plan.reaches_loss = [False] * len(nodes)
    for i in reversed(range(len(nodes))):
        node = nodes[i]
        reaches = any(w != 0 or t in under_loss for t, w in zip(node.tops, node.loss_weights))
        if not reaches or all(t in cut for t in node.tops):
            plan.layer[i] = False
            plan.bottoms[i] = [False] * len(node.bottoms)
        if reaches:
            under_loss.update(node.bottoms)
        cut.update(b for b, wanted in zip(node.bottoms, plan.bottoms[i]) if not wanted)
        plan.reaches_loss[i] = reaches

    if force_backward:
        for i, node in enumerate(nodes):
            allow = node.layer.allow_force_backward if node.layer is not None else (lambda k: True)
            plan.layer[i] = True
            plan.bottoms[i] = [wanted or allow(k) for k, wanted in enumerate(plan.bottoms[i])]
            plan.params[i] = [True] * len(plan.params[i])
    return plan



def mark_backward(graph):
    """Caffe's Net::Init bookkeeping : which layers, bottoms and parameters
    need a backward pass, and which layers reach a loss."""
    plan = plan_backward(graph.nodes, graph.force_backward)
    for i, n in enumerate(graph.nodes):
        n.needs_backward, n.propagate_down = plan.layer[i], plan.bottoms[i]
        n.param_propagate_down, n.reaches_loss = plan.params[i], plan.reaches_loss[i]
