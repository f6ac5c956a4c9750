"""The PyTorch twin of a netspec net, for tools/benchmark.py.

Built from the same checked graph netspec runs, layer by layer, so both frameworks do the same
operations on the same shapes; the first forward compares every blob's shape with netspec's
shape pass and refuses to time a net that differs. Written as a PyTorch user would: a
BatchNorm followed in place by a Scale is one nn.BatchNorm2d(affine=True), in-place ReLUs are
in place.
"""
import torch
import torch.nn.functional as F
from torch import nn

from netspec import caffe_pb2

PP = caffe_pb2.PoolingParameter
EP = caffe_pb2.EltwiseParameter


def _pair(single, h, w, has_hw, default):
    if has_hw:
        return (h, w)
    if isinstance(single, int):
        return (single, single)
    return (single[0], single[0]) if len(single) else (default, default)


class TorchNet(nn.Module):
    """Runs the graph's nodes in order over a dict of tensors."""

    def __init__(self, graph, blob_shapes, train=True):
        super().__init__()
        self.blob_shapes = blob_shapes
        self.steps = []                      # (function, bottoms, tops)
        self.mods = nn.ModuleList()
        self.inputs = []
        nodes = list(graph.nodes)
        skip = set()
        for i, node in enumerate(nodes):
            if i in skip:
                continue
            fn = self._lower(node, nodes[i + 1] if i + 1 < len(nodes) else None, skip, i, train)
            if fn is not None:
                self.steps.append((fn, list(node.bottoms), list(node.tops)))
        self.checked = False

    def _module(self, m):
        self.mods.append(m)
        return m

    def _lower(self, node, following, skip, i, train):
        t, lp = node.type, node.lp
        shape = lambda b: self.blob_shapes[b]  # noqa: E731
        if t == "Input":
            self.inputs += list(node.tops)
            return None
        if t == "Split":
            return lambda x: [x] * len(node.tops)
        if t == "Convolution":
            p = lp.convolution_param
            conv = self._module(nn.Conv2d(
                shape(node.bottoms[0])[1], p.num_output,
                _pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 1),
                _pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1),
                _pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0),
                _pair(p.dilation, 0, 0, False, 1), groups=p.group, bias=p.bias_term))
            return conv
        if t == "InnerProduct":
            p = lp.inner_product_param
            fc = self._module(nn.Linear(int(torch.tensor(shape(node.bottoms[0])[1:]).prod()), p.num_output,
                                        bias=p.bias_term))
            return lambda x: fc(x.flatten(1))
        if t == "ReLU":
            inplace = node.bottoms[0] == node.tops[0]
            return lambda x: F.relu(x, inplace=inplace)
        if t == "Pooling":
            p = lp.pooling_param
            hw = shape(node.bottoms[0])[2:]
            k = tuple(hw) if p.global_pooling else _pair(p.kernel_size, p.kernel_h, p.kernel_w,
                                                         p.HasField("kernel_h"), 1)
            s = _pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
            pad = _pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
            ceil = p.round_mode == PP.CEIL
            if p.pool == PP.MAX:
                return lambda x: F.max_pool2d(x, k, s, pad, ceil_mode=ceil)
            if p.pool == PP.AVE:
                return lambda x: F.avg_pool2d(x, k, s, pad, ceil_mode=ceil)
        if t == "LRN":
            p = lp.lrn_param
            return self._module(nn.LocalResponseNorm(p.local_size, p.alpha, p.beta, p.k))
        if t == "BatchNorm":
            p = lp.batch_norm_param
            affine = following is not None and following.type == "Scale" and \
                list(following.bottoms) == list(node.tops) and following.lp.scale_param.bias_term
            if affine:
                skip.add(i + 1)
            bn = self._module(nn.BatchNorm2d(shape(node.bottoms[0])[1], eps=p.eps,
                                             momentum=1 - p.moving_average_fraction, affine=affine))
            global_stats = p.use_global_stats if p.HasField("use_global_stats") else not train
            bn.train(not global_stats)
            return bn
        if t == "Scale":
            c = shape(node.bottoms[0])[1]
            w = nn.Parameter(torch.ones(c, 1, 1))
            b = nn.Parameter(torch.zeros(c, 1, 1)) if lp.scale_param.bias_term else None
            self.register_parameter(f"scale{i}_w", w)
            if b is None:
                return lambda x: x * w
            self.register_parameter(f"scale{i}_b", b)
            return lambda x: torch.addcmul(b, x, w)
        if t == "Eltwise":
            op = lp.eltwise_param.operation
            if op == EP.SUM and not lp.eltwise_param.coeff:
                return lambda *xs: sum(xs[1:], xs[0])
            if op == EP.PROD:
                return lambda *xs: torch.stack(xs).prod(0)
            if op == EP.MAX:
                return lambda *xs: torch.stack(xs).amax(0)
        if t == "Concat":
            axis = lp.concat_param.axis
            return lambda *xs: torch.cat(xs, axis)
        if t == "Dropout":
            ratio = lp.dropout_param.dropout_ratio
            return lambda x: F.dropout(x, ratio, training=train)
        if t == "SoftmaxWithLoss":
            return lambda x, y: F.cross_entropy(x, y.long())
        if t == "Softmax":
            return lambda x: F.softmax(x, 1)
        raise SystemExit(f"benchmark_torch: no PyTorch twin for layer {node.name!r} of type {t}")

    def forward(self, **feeds):
        blobs = dict(feeds)
        for fn, bottoms, tops in self.steps:
            out = fn(*[blobs[b] for b in bottoms])
            out = out if isinstance(out, list) else [out]
            for name, value in zip(tops, out):
                blobs[name] = value
                want = self.blob_shapes.get(name)
                if not self.checked and want is not None and tuple(value.shape) != tuple(want) \
                        and not (value.dim() == 0 and tuple(want) in ((), (1,))):
                    raise SystemExit(f"benchmark_torch: blob {name!r} is {tuple(value.shape)} in PyTorch, "
                                     f"{tuple(want)} in netspec")
        self.checked = True
        return blobs
