"""Lowering decisions that need no arrays: which layers, bottoms and parameters need
backward, and the net's outputs. Pure functions of the graph (whose nodes carry each top's
loss weight), as in Caffe's Net::Init.
"""
from dataclasses import dataclass, field

from . import caffe_pb2


def param_specs(lp, count):
    """The ParamSpec of each of a layer's `count` parameter blobs (Caffe's defaults past the list)."""
    return [lp.param[j] if j < len(lp.param) else caffe_pb2.ParamSpec() for j in range(count)]


@dataclass
class BackwardPlan:
    layer: list = field(default_factory=list)    # layer i runs backward
    bottoms: list = field(default_factory=list)  # bottoms[i][k]: layer i writes bottom k's diff
    params: list = field(default_factory=list)   # params[i][j]: layer i's blob j gets a gradient


def plan_backward(nodes, param_lr_mults, force_backward=False):
    """Which layers, bottoms and params need backward, decided as Caffe's Net::Init does.

    param_lr_mults[i] lists layer i's lr_mult per parameter blob. A layer needs backward when
    a bottom needs it or a parameter learns (lr_mult != 0); a blob needs backward when the
    layer making it does; propagate_down: false cuts a bottom. Walking back from the losses,
    layers that reach no loss, or whose every top is cut, skip backward. force_backward
    turns everything on where the layer allows it (loss layers: not their labels).
    """
    blob_needs = {}
    plan = BackwardPlan()
    for node, mults in zip(nodes, param_lr_mults):
        lp = node.lp
        down = list(lp.propagate_down)
        bottoms = [blob_needs.get(b, False) and (down[k] if down else True) for k, b in enumerate(node.bottoms)]
        params = [m != 0 for m in mults]
        needs = any(blob_needs.get(b, False) for b in node.bottoms) or any(params)
        for t in node.tops:
            blob_needs[t] = blob_needs.get(t, False) or needs
        plan.layer.append(needs)
        plan.bottoms.append(bottoms)
        plan.params.append(params)

    under_loss, skip_backprop = set(), set()
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        contributes = any(w != 0 or t in under_loss for t, w in zip(node.tops, node.loss_weights))
        all_tops_cut = all(t in skip_backprop for t in node.tops)
        if plan.layer[i] and all_tops_cut:
            plan.layer[i] = False
            plan.bottoms[i] = [False] * len(node.bottoms)
        if not contributes:
            plan.layer[i] = False
        for k, b in enumerate(node.bottoms):
            if contributes:
                under_loss.add(b)
            else:
                plan.bottoms[i][k] = False
            if not plan.bottoms[i][k]:
                skip_backprop.add(b)

    if force_backward:
        for i, node in enumerate(nodes):
            plan.layer[i] = True
            plan.bottoms[i] = [need or node.layer.allow_force_backward(k)
                               for k, need in enumerate(plan.bottoms[i])]
            plan.params[i] = [True] * len(plan.params[i])
    return plan


def net_outputs(nodes):
    """Blobs made and never consumed afterwards, in Caffe's order (sorted by name)."""
    available = set()
    for node in nodes:
        available.difference_update(node.bottoms)
        available.update(node.tops)
    return sorted(available)
