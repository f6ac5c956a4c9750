"""Blocks of the classic nets, in the NetSpec DSL: each helper adds its layers to n under names
derived from `name` and returns its output top (conv_relu, conv_bn, inception, basic_block,
bottleneck, preact_unit ...). models/generate.py builds the zoo from them."""
from netspec import layers as L


def conv_relu(n, bottom, name, num_output, kernel_size, relu_name=None, **conv):
    """Convolution + in-place ReLU, named <name>_relu unless relu_name says otherwise."""
    n[name] = convolution(bottom, num_output, kernel_size, **conv)
    n[relu_name or name + "_relu"] = L.ReLU(n[name], in_place=True)
    return n[name]


def convolution(bottom, num_output, kernel_size, stride=1, pad=None, **conv):
    """A convolution, padded by default to keep the size at stride 1 ((k-1)/2, as the papers do)."""
    pad = (kernel_size - 1) // 2 if pad is None else pad
    extra = {"stride": stride} if stride != 1 else {}
    if pad:
        extra["pad"] = pad
    return L.Convolution(bottom, num_output=num_output, kernel_size=kernel_size,
                              **extra, **conv)


def conv_bn(n, bottom, name, num_output, kernel_size, stride=1, pad=None, relu=True,
            bn=None, scale=None, relu_name=None, **conv):
    """Convolution (no bias) + BatchNorm + Scale (with bias) [+ ReLU], all but the first in place.

    Names default to <name>/bn, <name>/scale, <name>/relu; pass bn=, scale=, relu_name= to
    follow a published file (KaimingHe's are bn2a_branch2a, scale2a_branch2a, ...)."""
    n[name] = convolution(bottom, num_output, kernel_size, stride, pad, bias_term=False, **conv)
    n[bn or name + "/bn"] = L.BatchNorm(n[name], in_place=True)
    n[scale or name + "/scale"] = L.Scale(n[name], bias_term=True, in_place=True)
    if relu:
        n[relu_name or name + "/relu"] = L.ReLU(n[name], in_place=True)
    return n[name]


def bn_relu(n, bottom, name):
    """BatchNorm + Scale + ReLU into a new blob <name> (pre-activation: the input stays intact)."""
    n[name] = L.BatchNorm(bottom)
    n[name + "/scale"] = L.Scale(n[name], bias_term=True, in_place=True)
    n[name + "/relu"] = L.ReLU(n[name], in_place=True)
    return n[name]


def inception(n, bottom, name, c1, c3r, c3, c5r, c5, p3, **conv):
    """GoogLeNet's Inception module from its channel counts, as the paper's table lists them:
    #1x1, #3x3 reduce -> #3x3, #5x5 reduce -> #5x5, pool proj (3x3 max pool, stride 1).
    Blob names follow bvlc_googlenet (inception_3a/1x1, .../relu_1x1, ..., .../output)."""
    def branch(suffix, source, channels, kernel):
        return conv_relu(n, source, f"{name}/{suffix}", channels, kernel,
                         relu_name=f"{name}/relu_{suffix}", **conv)
    b1 = branch("1x1", bottom, c1, 1)
    b3 = branch("3x3", branch("3x3_reduce", bottom, c3r, 1), c3, 3)
    b5 = branch("5x5", branch("5x5_reduce", bottom, c5r, 1), c5, 5)
    n[f"{name}/pool"] = L.Pooling(bottom, pool="MAX", kernel_size=3, stride=1, pad=1)
    bp = branch("pool_proj", n[f"{name}/pool"], p3, 1)
    n[f"{name}/output"] = L.Concat(b1, b3, b5, bp)
    return n[f"{name}/output"]


def inception_bn(n, bottom, name, c1, c3r, c3, d3r, d3, pool, proj, stride=1, **conv):
    """The batch-normalized Inception module (Ioffe & Szegedy 2015, figure 5's table):
    #1x1, #3x3 reduce -> #3x3, double #3x3 reduce -> #3x3 -> #3x3, pool ('ave' or 'max') + proj.
    At stride 2 there is no 1x1 branch (c1 = 0) and the pool passes through (proj = 0)."""
    branches = []
    if c1:
        branches.append(conv_bn(n, bottom, f"{name}/1x1", c1, 1, **conv))
    reduce3 = conv_bn(n, bottom, f"{name}/3x3_reduce", c3r, 1, **conv)
    branches.append(conv_bn(n, reduce3, f"{name}/3x3", c3, 3, stride, **conv))
    double = conv_bn(n, bottom, f"{name}/double3x3_reduce", d3r, 1, **conv)
    double = conv_bn(n, double, f"{name}/double3x3a", d3, 3, **conv)
    branches.append(conv_bn(n, double, f"{name}/double3x3b", d3, 3, stride, **conv))
    n[f"{name}/pool"] = L.Pooling(bottom, pool=pool.upper(), kernel_size=3, stride=stride,
                                       pad=1 if stride == 1 else 0)
    branches.append(conv_bn(n, n[f"{name}/pool"], f"{name}/pool_proj", proj, 1, **conv)
                    if proj else n[f"{name}/pool"])
    n[f"{name}/output"] = L.Concat(*branches)
    return n[f"{name}/output"]


def _kaiming(block, branch):
    """KaimingHe's names: res2a_branch2a, bn2a_branch2a, scale2a_branch2a, res2a_branch2a_relu."""
    return dict(name=f"res{block}_{branch}", bn=f"bn{block}_{branch}",
                scale=f"scale{block}_{branch}", relu_name=f"res{block}_{branch}_relu")


def _shortcut(n, bottom, block, channels, stride, project, conv):
    """The identity, or with project a 1x1 convolution + BN, for the block where the shape changes."""
    if not project:
        return bottom
    return conv_bn(n, bottom, num_output=channels, kernel_size=1, stride=stride, relu=False,
                   **_kaiming(block, "branch1"), **conv)


def _residual(n, block, shortcut, branch):
    n[f"res{block}"] = L.Eltwise(shortcut, branch)
    n[f"res{block}_relu"] = L.ReLU(n[f"res{block}"], in_place=True)
    return n[f"res{block}"]


def basic_block(n, bottom, block, channels, stride=1, project=False, **conv):
    """ResNet-18/34's block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, then ReLU.
    project: a 1x1 convolution + BN on the shortcut, for the block where the shape changes."""
    shortcut = _shortcut(n, bottom, block, channels, stride, project, conv)
    a = conv_bn(n, bottom, num_output=channels, kernel_size=3, stride=stride,
                **_kaiming(block, "branch2a"), **conv)
    b = conv_bn(n, a, num_output=channels, kernel_size=3, relu=False,
                **_kaiming(block, "branch2b"), **conv)
    return _residual(n, block, shortcut, b)


def bottleneck(n, bottom, block, channels, stride=1, project=False, **conv):
    """ResNet-50/101/152's block as KaimingHe's prototxts write it: 1x1 (channels, carrying the
    stride), 3x3 (channels), 1x1 (4 x channels), each with BN + Scale; the shortcut is a
    projection (1x1 conv + BN) where the shape changes, else the identity; Eltwise sum, ReLU."""
    out = 4 * channels
    shortcut = _shortcut(n, bottom, block, out, stride, project, conv)
    a = conv_bn(n, bottom, num_output=channels, kernel_size=1, stride=stride,
                **_kaiming(block, "branch2a"), **conv)
    b = conv_bn(n, a, num_output=channels, kernel_size=3, **_kaiming(block, "branch2b"), **conv)
    c = conv_bn(n, b, num_output=out, kernel_size=1, relu=False,
                **_kaiming(block, "branch2c"), **conv)
    return _residual(n, block, shortcut, c)


def preact_unit(n, bottom, block, channels, stride=1, project=False, activate=True, **conv):
    """The pre-activation bottleneck (He et al. 2016, 'Identity Mappings'): BN-ReLU-conv 1x1,
    BN-ReLU-conv 3x3 (carrying the stride), BN-ReLU-conv 1x1; nothing after the addition.
    A projection shortcut reads the pre-activated input; activate=False for a unit whose input
    is already activated (the first, after conv1-BN-ReLU-pool)."""
    pre = bn_relu(n, bottom, f"res{block}_preact") if activate else bottom
    out = 4 * channels
    shortcut = (convolution(pre, out, 1, stride, bias_term=False, **conv) if project else bottom)
    if project:
        n[f"res{block}_branch1"] = shortcut
    n[f"res{block}_branch2a"] = convolution(pre, channels, 1, bias_term=False, **conv)
    a = bn_relu(n, n[f"res{block}_branch2a"], f"res{block}_branch2a_act")
    n[f"res{block}_branch2b"] = convolution(a, channels, 3, stride, bias_term=False, **conv)
    b = bn_relu(n, n[f"res{block}_branch2b"], f"res{block}_branch2b_act")
    n[f"res{block}_branch2c"] = convolution(b, out, 1, bias_term=False, **conv)
    n[f"res{block}"] = L.Eltwise(shortcut, n[f"res{block}_branch2c"])
    return n[f"res{block}"]
