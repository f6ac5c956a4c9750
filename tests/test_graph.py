"""The graph: NetStateRule filtering, implicit Splits, loss weights, wiring errors, backward marks."""
import pytest

from netspec import caffe_pb2
from netspec.graph import build_graph
from netspec.io import parse_net_text

INPUT = 'layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n'


def graph(body, **kw):
    return build_graph(parse_net_text(INPUT + body, "net.prototxt"), **kw)


def names(g):
    return [n.name for n in g.nodes]


def messages(g):
    return [e.message for e in g.errors]


# -- NetStateRule filtering -----------------------------------------------------------------------

RULES = """
layer { name: "train_only" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN } }
layer { name: "test_only" type: "ReLU" bottom: "data" top: "b" include { phase: TEST } }
layer { name: "not_deploy" type: "ReLU" bottom: "data" top: "c" exclude { stage: "deploy" } }
layer { name: "deploy" type: "ReLU" bottom: "data" top: "d" include { stage: "deploy" } }
layer { name: "two_stages" type: "ReLU" bottom: "data" top: "e" include { stage: "x" stage: "y" } }
layer { name: "no_x" type: "ReLU" bottom: "data" top: "f" include { not_stage: "x" } }
layer { name: "level_ge_2" type: "ReLU" bottom: "data" top: "g" include { min_level: 2 } }
layer { name: "level_le_1" type: "ReLU" bottom: "data" top: "h" include { max_level: 1 } }
layer { name: "train_or_x" type: "ReLU" bottom: "data" top: "i" include { phase: TRAIN } include { stage: "x" } }
"""


def kept(**kw):
    return {n.name for n in graph(RULES, **kw).nodes if not n.split} - {"data"}


def test_default_state_is_test_level_0_no_stage():
    assert kept() == {"test_only", "not_deploy", "no_x", "level_le_1"}


def test_phase_rules():
    assert kept(phase=caffe_pb2.TRAIN) == {"train_only", "not_deploy", "no_x", "level_le_1", "train_or_x"}
    assert kept(phase="train") == kept(phase=caffe_pb2.TRAIN)


def test_stage_rules_need_every_stage_and_no_not_stage():
    assert kept(stages=("deploy",)) == {"test_only", "deploy", "no_x", "level_le_1"}
    assert kept(stages=("x",)) == {"test_only", "not_deploy", "level_le_1", "train_or_x"}
    assert kept(stages=("x", "y")) == {"test_only", "not_deploy", "two_stages", "level_le_1", "train_or_x"}


def test_conditions_of_one_rule_all_hold_and_any_exclude_rule_drops():
    text = ('layer { name: "train_x" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN stage: "x" } }\n'
            'layer { name: "not_x_nor_low" type: "ReLU" bottom: "data" top: "b" exclude { stage: "x" } exclude { max_level: 0 } }\n')
    kept_by = lambda **kw: {n.name for n in graph(text, **kw).nodes} - {"data"}  # noqa: E731
    assert kept_by(phase="TRAIN") == set()
    assert kept_by(phase="TRAIN", stages=("x",)) == {"train_x"}
    assert kept_by(level=1) == {"not_x_nor_low"}
    assert kept_by(level=1, stages=("x",)) == set()


def test_level_rules():
    assert "level_ge_2" in kept(level=2) and "level_le_1" not in kept(level=2)
    assert "level_ge_2" not in kept(level=1) and "level_le_1" in kept(level=1)


def test_the_files_state_gives_the_defaults():
    state = 'state { phase: TRAIN level: 3 stage: "x" }\n'
    g = build_graph(parse_net_text(state + INPUT + RULES))
    assert g.phase == caffe_pb2.TRAIN and g.level == 3 and g.stages == ("x",)
    assert {n.name for n in g.nodes if not n.split} - {"data"} == {"train_only", "not_deploy", "level_ge_2", "train_or_x"}
    # the caller's phase and level replace the file's; the caller's stages add to them
    g = build_graph(parse_net_text(state + INPUT + RULES), phase="TEST", level=0, stages=("y",))
    assert g.stages == ("x", "y")
    assert {n.name for n in g.nodes if not n.split} - {"data"} == {"test_only", "not_deploy", "two_stages", "level_le_1", "train_or_x"}


def test_excluded_layers_come_with_reasons():
    g = graph(RULES)
    reasons = dict(g.excluded)
    assert reasons["train_only"] == ("include { phase: TRAIN } does not match the net state "
                                     "(phase TEST, level 0, stages: none)")
    g = graph(RULES, stages=("deploy",))
    assert dict(g.excluded)["not_deploy"].startswith('exclude { stage: "deploy" } matches the net state')


def test_include_and_exclude_together_is_an_error():
    g = graph('layer { name: "r" type: "ReLU" bottom: "data" top: "r" include { phase: TRAIN } exclude { stage: "a" } }')
    assert messages(g) == ["a layer may have include rules or exclude rules, not both"]
    assert g.errors[0].line == 2 and g.errors[0].layer == "r"


def test_unknown_phase_is_refused():
    from netspec.errors import NetspecError
    with pytest.raises(NetspecError, match="unknown phase 'VAL'"):
        graph("", phase="VAL")


# -- implicit Split layers ----------------------------------------------------------------------------

FAN_OUT = """
layer { name: "r1" type: "ReLU" bottom: "data" top: "data" }
layer { name: "a" type: "TanH" bottom: "data" top: "a" }
layer { name: "b" type: "Sigmoid" bottom: "data" top: "b" }
layer { name: "c" type: "AbsVal" bottom: "data" top: "c" }
"""


def test_a_blob_read_three_times_is_split_after_its_last_writer():
    g = graph(FAN_OUT)
    assert names(g) == ["data", "r1", "data_r1_0_split", "a", "b", "c"]
    split = g.nodes[2]
    assert split.type == "Split" and split.split and split.layer is not None
    assert split.bottoms == ["data"]
    assert split.tops == [f"data_r1_0_split_{k}" for k in range(3)]
    assert [g.node(n).bottoms for n in "abc"] == [[f"data_r1_0_split_{k}"] for k in range(3)]
    assert [n.index for n in g.nodes] == list(range(6))
    assert split.line == g.node("r1").line == 3


def test_no_split_for_a_blob_read_once_or_when_splits_are_off():
    g = graph('layer { name: "a" type: "TanH" bottom: "data" top: "a" }')
    assert not any(n.split for n in g.nodes)
    g = graph(FAN_OUT, insert_splits=False)
    assert names(g) == ["data", "r1", "a", "b", "c"] and g.node("b").bottoms == ["data"]


def test_legacy_net_inputs_become_an_input_layer_named_input():
    text = ('input: "x" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
            'layer { name: "a" type: "TanH" bottom: "x" top: "a" }\n'
            'layer { name: "b" type: "TanH" bottom: "x" top: "b" }\n')
    g = build_graph(parse_net_text(text))
    assert names(g) == ["input", "x_input_0_split", "a", "b"]
    assert list(g.nodes[0].lp.input_param.shape[0].dim) == [1, 3, 8, 8]
    assert g.inputs == ["x"]


def test_an_explicit_loss_weight_counts_as_a_reader():
    g = graph('layer { name: "e" type: "TanH" bottom: "data" top: "e" loss_weight: 0.5 }\n'
              'layer { name: "f" type: "AbsVal" bottom: "e" top: "f" }')
    assert names(g) == ["data", "e", "e_e_0_split", "f"]
    split = g.nodes[2]
    assert split.loss_weights == [0.5, 0.0]
    assert g.node("e").loss_weights == [0.0]
    assert g.node("f").bottoms == ["e_e_0_split_1"]   # split_0 carries the loss


def test_a_blob_read_twice_by_one_layer_is_split_per_bottom():
    g = graph('layer { name: "sq" type: "Eltwise" bottom: "data" bottom: "data" top: "sq" eltwise_param { operation: PROD } }')
    assert names(g) == ["data", "data_data_0_split", "sq"]
    assert g.node("sq").bottoms == ["data_data_0_split_0", "data_data_0_split_1"]


def test_caffes_loss_insertion_case():
    # Caffe's test_split_layer.cpp TestLossInsertion: a loss_weight on a top others read moves
    # to top 0 of its Split, and the reader takes split_1
    g = graph('layer { name: "innerproduct1" type: "InnerProduct" bottom: "data" top: "innerproduct1" '
              'inner_product_param { num_output: 10 } loss_weight: 2.5 }\n'
              'layer { name: "innerproduct2" type: "InnerProduct" bottom: "data" top: "innerproduct2" '
              'inner_product_param { num_output: 10 } }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "innerproduct1" bottom: "innerproduct2" }')
    assert names(g) == ["data", "data_data_0_split", "innerproduct1", "innerproduct1_innerproduct1_0_split",
                        "innerproduct2", "loss"]
    split = g.node("innerproduct1_innerproduct1_0_split")
    assert split.loss_weights == [2.5, 0.0] and g.node("innerproduct1").loss_weights == [0.0]
    assert g.node("loss").bottoms == ["innerproduct1_innerproduct1_0_split_1", "innerproduct2"]
    assert g.node("innerproduct2").bottoms == ["data_data_0_split_1"]


def test_a_split_clears_all_the_layers_loss_weights_as_caffe_does():
    # a loss layer's own default of 1 then applies again (Caffe counts that loss twice: a warning)
    g = graph('layer { name: "l2" type: "EuclideanLoss" bottom: "data" bottom: "data" top: "l2" loss_weight: 3 }\n'
              'layer { name: "t" type: "TanH" bottom: "l2" top: "t" }')
    assert g.node("l2").loss_weights == [1.0] and g.node("l2_l2_0_split").loss_weights == [3.0, 0.0]
    assert [w.message for w in g.warnings] == [
        "its top is read by other layers, so Caffe moves its loss_weight to a Split and gives this layer "
        "its default weight of 1 as well: the loss is counted twice"]
    # another top's weight goes with them (Caffe's clear_loss_weight clears every top's)
    g = graph('layer { name: "s" type: "Slice" bottom: "data" top: "s0" top: "s1" loss_weight: 1 loss_weight: 2 '
              'slice_param { axis: 0 } }\n'
              'layer { name: "t" type: "TanH" bottom: "s0" top: "t" }')
    assert g.node("s").loss_weights == [0.0, 0.0] and g.node("s0_s_0_split").loss_weights == [1.0, 0.0]
    assert g.warnings == []


def test_in_place_on_a_blob_others_read_is_refused_as_caffe_does():
    g = graph('layer { name: "a" type: "TanH" bottom: "data" top: "a" }\n'
              'layer { name: "b" type: "AbsVal" bottom: "a" top: "b" }\n'
              'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }')
    assert messages(g) == ["top 'a' is already produced by 'a' (line 2)"]
    assert "read by other layers too" in g.errors[0].hint


# -- loss weights --------------------------------------------------------------------------------------

def test_loss_weights_by_caffes_rule():
    g = graph('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" top: "prob" loss_weight: 1 loss_weight: 0 }\n'
              'layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" }\n'
              'layer { name: "t" type: "TanH" bottom: "data" top: "t" loss_weight: 0.25 }\n'
              'layer { name: "l2" type: "EuclideanLoss" bottom: "t" bottom: "data" top: "l2" loss_weight: 0 }')
    weights = {n.name: n.loss_weights for n in g.nodes if n.type != "Split" or n.bottoms == ["t"]}
    # t is also read by l2, so its Split's top 0 carries the 0.25
    assert weights == {"data": [0.0, 0.0], "loss": [1.0, 0.0], "acc": [0.0], "t": [0.0],
                       "t_t_0_split": [0.25, 0.0], "l2": [0.0]}
    assert g.has_loss and g.errors == []


def test_a_loss_layer_of_two_tops_needs_its_weights_written():
    # Caffe's LossLayer adds one default weight, then refuses it for two tops
    g = graph('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" top: "prob" }')
    assert messages(g) == ["a loss layer with 2 tops needs its loss_weight given once per top: "
                           "Caffe's default is one weight, for top 0 alone"]
    assert g.errors[0].hint == "write loss_weight: 1 then loss_weight: 0 for each other top"


def test_a_loss_layer_without_tops_gets_an_anonymous_one_as_in_caffe():
    g = graph('layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "data" }')
    assert g.errors == [] and g.node("loss").tops == ["loss (automatic top 0)"]
    assert g.node("loss").loss_weights == [1.0] and g.node("loss").anonymous == ["loss (automatic top 0)"]
    assert g.outputs == ["label"]              # Caffe lists no anonymous top among the outputs
    g = graph('layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "data" }\n'
              'layer { name: "t" type: "TanH" bottom: "loss (automatic top 0)" top: "t" }')
    assert messages(g) == ["bottom 'loss (automatic top 0)' (bottom 0) is produced by no layer before it"]
    g = graph('layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" }')   # not a loss layer
    assert messages(g) == ["takes 1 to 2 tops, got 0"]


def test_loss_weight_count_must_match_tops():
    g = graph('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" top: "prob" loss_weight: 1 }')
    assert messages(g) == ["1 loss_weight values for 2 tops"]


# -- wiring errors --------------------------------------------------------------------------------------

def test_a_bottom_nobody_made_names_the_closest_blobs():
    g = graph('layer { name: "a" type: "TanH" bottom: "dta" top: "a" }')
    e = g.errors[0]
    assert e.message == "bottom 'dta' (bottom 0) is produced by no layer before it"
    assert e.hint == "did you mean 'data'?" and (e.layer, e.type, e.line) == ("a", "TanH", 2)
    assert "net.prototxt:2: a (TanH): bottom 'dta'" in str(e)


def test_a_bottom_made_later_says_move_it():
    g = graph('layer { name: "a" type: "TanH" bottom: "b" top: "a" }\n'
              'layer { name: "b" type: "TanH" bottom: "data" top: "b" }')
    assert messages(g) == ["bottom 'b' is produced only later, by 'b' (line 3)"]
    assert g.errors[0].hint == "layers run in file order: move 'b' above 'a'"


def test_a_cycle_is_named():
    g = graph('layer { name: "a" type: "TanH" bottom: "c" top: "a" }\n'
              'layer { name: "b" type: "TanH" bottom: "a" top: "b" }\n'
              'layer { name: "c" type: "TanH" bottom: "b" top: "c" }')
    assert messages(g) == ["cycle: bottom 'c' comes from 'c', which depends on this layer (a -> c -> b -> a)"]


def test_a_top_made_twice_is_an_error_but_in_place_is_not():
    g = graph('layer { name: "a" type: "TanH" bottom: "data" top: "x" }\n'
              'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
              'layer { name: "b" type: "TanH" bottom: "data" top: "x" }')
    assert messages(g) == ["top 'x' is already produced by 'a' (line 2)"]
    assert g.errors[0].layer == "b"


def test_in_place_means_same_name_at_the_same_index():
    g = graph('layer { name: "e" type: "Eltwise" bottom: "data" bottom: "label" top: "label" }')
    assert "top 'label' is already produced by 'data'" in messages(g)[0]


def test_blob_counts_and_unknown_types():
    g = graph('layer { name: "a" type: "TanH" bottom: "data" bottom: "label" top: "a" }\n'
              'layer { name: "b" type: "Tanh" bottom: "data" top: "b" }\n'
              'layer { name: "c" type: "TanH" bottom: "data" top: "c" propagate_down: true propagate_down: false }')
    assert messages(g)[0] == "takes 1 bottom, got 2"
    assert messages(g)[1] == "unknown layer type 'Tanh' (did you mean 'TanH'?)"
    assert messages(g)[2] == "2 propagate_down values for 1 bottoms"
    assert g.node("b").layer is None


def test_duplicate_layer_names_warn():
    g = graph('layer { name: "a" type: "TanH" bottom: "data" top: "a" }\n'
              'layer { name: "a" type: "TanH" bottom: "a" top: "b" }')
    assert [w.message for w in g.warnings] == ["the layer name 'a' is used before (line 2)"]


def test_check_raises_the_first_error():
    from netspec.errors import NetspecError
    g = graph('layer { name: "a" type: "TanH" bottom: "dta" top: "a" }')
    with pytest.raises(NetspecError, match="net.prototxt:2: layer 'a' \\(TanH\\): bottom 'dta'"):
        g.check()


# -- backward marks and outputs ------------------------------------------------------------------------------

def test_backward_is_needed_only_under_a_loss_and_not_for_labels():
    g = graph('layer { name: "p" type: "PReLU" bottom: "data" top: "p" }\n'
              'layer { name: "t" type: "TanH" bottom: "p" top: "t" }\n'
              'layer { name: "side" type: "TanH" bottom: "p" top: "side" }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "t" bottom: "label" top: "loss" }')
    need = {n.name: n.needs_backward for n in g.nodes}
    assert need == {"data": False, "p": True, "p_p_0_split": True, "t": True, "side": False, "loss": True}
    assert g.node("loss").propagate_down == [True, False]
    assert g.node("p").propagate_down == [False]
    assert g.outputs == ["loss", "side"]      # Caffe lists its outputs by name (a std::set)


def test_propagate_down_false_and_force_backward():
    body = ('layer { name: "p" type: "PReLU" bottom: "data" top: "p" }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "p" bottom: "label" top: "loss" propagate_down: false propagate_down: false }')
    g = graph(body)
    assert not g.node("p").needs_backward          # nothing below the loss wants a gradient
    g = build_graph(parse_net_text("force_backward: true\n" + INPUT + body))
    assert all(n.needs_backward for n in g.nodes)
    assert g.node("loss").propagate_down == [True, False]   # never into the labels


# The nets of Caffe's test_net.cpp (TinyNet, TinyNetEuclidean, TrickyNet) and what Net::Init
# decides for them there (bottom_need_backward, layer_need_backward).
IP = 'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" inner_product_param {{ num_output: 1 }} }}\n'
TINY = IP.format(name="ip", bottom="data", top="ip")


def backward_marks(text, force=False):
    g = build_graph(parse_net_text(("force_backward: true\n" if force else "") + INPUT + text))
    assert g.errors == [], [str(e) for e in g.errors]
    return {n.name: n.propagate_down for n in g.nodes}, {n.name: n.needs_backward for n in g.nodes}


def test_caffes_tiny_nets():
    softmax = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "top_loss" }'
    euclidean = softmax.replace("SoftmaxWithLoss", "EuclideanLoss")
    down, _ = backward_marks(TINY + softmax)
    assert (down["ip"], down["loss"]) == ([False], [True, False])
    down, _ = backward_marks(TINY + softmax, force=True)
    assert (down["ip"], down["loss"]) == ([True], [True, False])
    down, _ = backward_marks(TINY + euclidean, force=True)
    assert (down["ip"], down["loss"]) == ([True], [True, True])


def test_caffes_tricky_net_labels_under_weights_need_backward():
    text = (IP.format(name="ip1", bottom="data", top="transformed_data")
            + IP.format(name="ip2", bottom="label", top="transformed_label")
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "transformed_data" bottom: "transformed_label" }')
    down, need = backward_marks(text)
    assert (down["ip1"], down["ip2"], down["loss"]) == ([False], [False], [True, True])
    assert need == {"data": False, "ip1": True, "ip2": True, "loss": True}


def test_propagate_down_true_is_anded_with_the_blobs_need():
    # nothing below t learns: Caffe gives t no backward whatever propagate_down says
    down, need = backward_marks('layer { name: "t" type: "TanH" bottom: "data" top: "t" propagate_down: true }\n'
                                'layer { name: "loss" type: "EuclideanLoss" bottom: "t" bottom: "data" top: "l" }')
    assert down["t"] == [False] and not need["t"]


def test_only_a_positive_lr_mult_learns():
    frozen = TINY.replace("inner_product_param", "param { lr_mult: -1 } param { lr_mult: 0 } inner_product_param")
    down, need = backward_marks(frozen + 'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" top: "l" }')
    assert not need["ip"] and not need["loss"] and down["loss"] == [False, False]
    g = build_graph(parse_net_text(INPUT + TINY.replace("inner_product_param", "param { lr_mult: 0 } inner_product_param")
                                   + 'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" top: "l" }'))
    assert g.node("ip").param_propagate_down == [False, True] and g.node("ip").needs_backward


def test_every_top_cut_below_skips_the_layer():
    # the loss takes no diff into t (propagate_down false): t and the PReLU below it skip backward
    down, need = backward_marks('layer { name: "p" type: "PReLU" bottom: "data" top: "p" }\n'
                                'layer { name: "t" type: "TanH" bottom: "p" top: "t" }\n'
                                'layer { name: "loss" type: "EuclideanLoss" bottom: "t" bottom: "data" top: "l" '
                                'propagate_down: false propagate_down: false }')
    assert (need["t"], need["p"]) == (False, False)
    assert need["loss"] and down["loss"] == [False, False]    # as Caffe: its own top is not cut


def test_a_blob_nobody_makes_can_be_fed_from_outside():
    text = 'layer { name: "a" type: "TanH" bottom: "x" top: "a" }\nlayer { name: "b" type: "TanH" bottom: "x" top: "b" }\n'
    g = build_graph(parse_net_text(text))
    assert g.errors[0].message == "bottom 'x' (bottom 0) is produced by no layer before it"
    assert g.errors[0].hint == "add a layer with this top before it, or give its shape: --input x=N,C,H,W"
    g = build_graph(parse_net_text(text), inputs={"x": (2, 5)})
    assert g.errors == [] and names(g) == ["input", "x_input_0_split", "a", "b"]
    assert g.inputs == ["x"] and list(g.nodes[0].lp.input_param.shape[0].dim) == [2, 5]
