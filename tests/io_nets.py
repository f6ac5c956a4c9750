"""Compact nets shaped like LeNet, AlexNet, GoogLeNet and ResNet, for the I/O tests."""
import pathlib

from netspec import caffe_pb2 as pb
from netspec.io import parse_net_text

DATA = pathlib.Path(__file__).resolve().parent / "data_io"


def _conv(name, bottom, n, k, stride=1, pad=0, bias=True):
    return f"""layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{ num_output: {n} kernel_size: {k} stride: {stride} pad: {pad}
    bias_term: {str(bias).lower()} weight_filler {{ type: "gaussian" std: 0.01 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
"""


def _relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def _pool(name, bottom, k, stride, pool="MAX", pad=0):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f"pooling_param {{ pool: {pool} kernel_size: {k} stride: {stride} pad: {pad} }} }}\n")


def alexnet():
    text = 'name: "AlexNet"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 } } }\n'
    text += _conv("conv1", "data", 96, 11, stride=4) + _relu("relu1", "conv1")
    text += ('layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" '
             "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n")
    text += _pool("pool1", "norm1", 3, 2)
    text += _conv("conv2", "pool1", 256, 5, pad=2).replace("stride: 1", "stride: 1 group: 2")
    text += _relu("relu2", "conv2") + _pool("pool5", "conv2", 3, 2)
    text += ('layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" '
             'inner_product_param { num_output: 4096 weight_filler { type: "gaussian" std: 0.005 } } }\n')
    text += _relu("relu6", "fc6")
    text += ('layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" '
             "dropout_param { dropout_ratio: 0.5 } }\n")
    text += 'layer { name: "prob" type: "Softmax" bottom: "fc6" top: "prob" }\n'
    return parse_net_text(text).param


def googlenet():
    text = 'name: "GoogLeNet"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 192 dim: 28 dim: 28 } } }\n'
    branches = []
    for name, k, n in (("1x1", 1, 64), ("3x3", 3, 128), ("5x5", 5, 32)):
        branches.append(f"inception_3a/{name}")
        text += _conv(f"inception_3a/{name}", "data", n, k, pad=k // 2)
        text += _relu(f"inception_3a/relu_{name}", f"inception_3a/{name}")
    text += _pool("inception_3a/pool", "data", 3, 1, pad=1)
    text += _conv("inception_3a/pool_proj", "inception_3a/pool", 32, 1)
    branches.append("inception_3a/pool_proj")
    bottoms = " ".join(f'bottom: "{b}"' for b in branches)
    text += f'layer {{ name: "inception_3a/output" type: "Concat" {bottoms} top: "inception_3a/output" }}\n'
    text += _pool("pool5/7x7_s1", "inception_3a/output", 7, 1, pool="AVE")
    text += ('layer { name: "loss3/classifier" type: "InnerProduct" bottom: "pool5/7x7_s1" '
             'top: "loss3/classifier" inner_product_param { num_output: 1000 } }\n')
    return parse_net_text(text).param


def resnet(with_weights=True):
    """A ResNet block (BatchNorm + Scale, an Eltwise shortcut), with weights when asked."""
    text = 'name: "ResNet"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }\n'
    text += _conv("res2a_branch2a", "data", 4, 3, pad=1, bias=False)
    text += ('layer { name: "bn2a_branch2a" type: "BatchNorm" bottom: "res2a_branch2a" top: "res2a_branch2a" '
             "batch_norm_param { use_global_stats: true eps: 1e-05 } }\n")
    text += ('layer { name: "scale2a_branch2a" type: "Scale" bottom: "res2a_branch2a" top: "res2a_branch2a" '
             "scale_param { bias_term: true } }\n")
    text += ('layer { name: "res2a" type: "Eltwise" bottom: "data" bottom: "res2a_branch2a" top: "res2a" '
             "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }\n")
    text += _relu("res2a_relu", "res2a")
    text += ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "res2a" bottom: "data" top: "loss" '
             "loss_weight: 1 include { phase: TRAIN stage: \"finetune\" } "
             "loss_param { ignore_label: -1 normalization: BATCH_SIZE } }\n")
    net = parse_net_text(text).param
    if with_weights:
        conv = net.layer[1]
        conv.blobs.add().shape.dim.extend([4, 4, 3, 3])
        conv.blobs[0].data.extend([0.1 * i - 3.5e-7 for i in range(144)])
        bn = net.layer[2]
        for values in ([0.5, -1.25, 3e30, 1e-30], [1, 2, 3, 4], [999.0]):
            bn.blobs.add(data=values).shape.dim.append(len(values))
        net.layer[3].blobs.add(double_data=[0.1, 1e-300], num=1, channels=1, height=1, width=2)
    return net


def lenet():
    return parse_net_text((DATA / "lenet_train_test.prototxt").read_text()).param


NETS = {"lenet": lenet, "alexnet": alexnet, "googlenet": googlenet, "resnet": resnet}


def odd_values_solver():
    """A solver with values that test every scalar type's round trip."""
    solver = pb.SolverParameter(net="tests/data_io/lenet_train_test.prototxt", base_lr=0.01,
                                lr_policy="multistep", gamma=0.1, stepvalue=[100, 200],
                                random_seed=2**40 + 1, type="Adam", delta=1e-8,
                                momentum2=0.999, solver_mode=pb.SolverParameter.CPU,
                                weights=["a.caffemodel", "b.caffemodel"], clip_gradients=-1)
    solver.test_iter.append(100)
    solver.test_state.add(stage=["val", "résumé"], level=-3)
    solver.train_state.phase = pb.TRAIN
    return solver
