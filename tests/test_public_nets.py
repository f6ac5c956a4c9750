"""Public nets of the Caffe forks, unchanged but for a header naming their source, checked
with the shapes their forks compute. Each expected number is worked out by hand from the
fork's own rule in the comment beside it (Caffe's conv: floor((H + 2p - k)/s) + 1; pooling
rounds up)."""
import os

from netspec.graph import build_graph
from netspec.shapes import infer_shapes

HERE = os.path.join(os.path.dirname(__file__), "nets")


def check(name, inputs=None, folder="public"):
    return infer_shapes(build_graph(os.path.join(HERE, folder, name)), inputs)


def test_mobilenet_ssd_300():
    r = check("mobilenet_ssd_deploy.prototxt")
    assert not r.errors and not r.warnings
    s = r.blob_shapes
    assert s["conv0"] == (1, 32, 150, 150)          # (300 + 2 - 3)/2 = 149.5 -> 149, + 1
    assert s["conv11"] == (1, 512, 19, 19)          # strides 2 at conv0, 2, 4, 6: 150, 75, 38, 19
    assert s["conv13"] == (1, 1024, 10, 10)         # conv12/dw stride 2: (19 + 2 - 3)/2 + 1 = 10
    assert [s[f"conv{i}_2"][2] for i in (14, 15, 16, 17)] == [5, 3, 2, 1]   # (10-1)/2+1 = 5, then 3, 2, 1
    # SSD's PriorBox: priors per cell = min_sizes x (1 + 2 per flipped aspect ratio) + max_sizes:
    # conv11 has min 60 and ratio 2 -> 3; the others ratios 2, 3 and a max -> 1 + 4 + 1 = 6
    assert s["conv11_mbox_priorbox"] == (1, 2, 19 * 19 * 3 * 4)     # 4332
    assert s["conv13_mbox_priorbox"] == (1, 2, 10 * 10 * 6 * 4)     # 2400
    priors = 19 * 19 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6   # 1083 + 834 = 1917
    assert s["mbox_priorbox"] == (1, 2, priors * 4)                 # 7668
    assert s["mbox_loc"] == (1, priors * 4)
    assert s["mbox_conf"] == (1, priors * 21)                       # 40257 scores, 21 classes
    assert s["mbox_conf_reshape"] == (1, priors, 21)
    assert s["detection_out"] == (1, 1, None, 7)   # how many survive NMS is known when it runs


def test_faster_rcnn_zf_is_shaped_past_its_python_proposal_layer():
    r = check("faster_rcnn_zf_test.prototxt")
    assert not r.errors
    assert [w.layer for w in r.warnings] == ["pool1", "proposal"]   # pooling's ceil; module 'rpn' absent
    s = r.blob_shapes
    assert s["conv1"] == (1, 96, 112, 112)          # (224 + 6 - 7)/2 = 111.5 -> 111, + 1
    assert s["pool1"] == (1, 96, 57, 57)            # (112 + 2 - 3)/2 = 55.5 -> ceil 56, + 1
    assert s["conv2"] == (1, 256, 29, 29)           # (57 + 4 - 5)/2 + 1 = 29
    assert s["conv5"] == (1, 256, 15, 15)           # pool2: (29 + 2 - 3)/2 + 1 = 15
    assert s["rpn_cls_score_reshape"] == (1, 2, 135, 15)   # 18 x 15 x 15 / (2 x 15) = 135
    assert s["rpn_cls_prob_reshape"] == (1, 18, 15, 15)
    assert s["rois"] is None                        # the Python layer's tops: not even their rank
    # ROIPooling reads the regions as (?, 5) rows: ? regions of conv5's 256 channels in 6x6 bins
    assert s["roi_pool_conv5"] == (None, 256, 6, 6)
    assert r.layer("fc6").param_shapes == [(4096, 256 * 6 * 6), (4096,)]
    assert s["cls_prob"] == (None, 21) and s["bbox_pred"] == (None, 84)    # 21 classes, 4 x 21 boxes


def test_segnet_basic_shapes_from_the_images_or_unknown_without_them():
    r = check("segnet_basic_inference.prototxt")
    assert not r.errors
    assert any("'/SegNet/CamVid/test.txt' does not exist" in w.message for w in r.warnings)
    assert r.blob_shapes["data"] == (1, 3, None, None)      # batch_size 1, colour; no size without the images
    assert r.blob_shapes["prob"] == (1, 11, None, None)     # 11 CamVid classes, spatial sizes follow
    r = check("segnet_basic_inference.prototxt", {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)})
    assert not r.errors
    s = r.blob_shapes
    assert [s[f"pool{i}"][2:] for i in (1, 2, 3, 4)] == [(180, 240), (90, 120), (45, 60), (23, 30)]
    # pool4 rounds 45 up: (45 - 2)/2 = 21.5 -> 22, + 1 = 23; upsample4's pad_out_h takes one row off
    assert s["upsample4"] == (1, 64, 45, 60)        # 23 x 2 - 1 = 45, 30 x 2 = 60: pool3's mask again
    assert s["upsample1"] == (1, 64, 360, 480)
    assert s["prob"] == (1, 11, 360, 480)


def test_yolov3_tiny_416():
    r = check("yolov3_tiny_deploy.prototxt")
    assert not r.errors and not r.warnings
    s = r.blob_shapes
    assert s["layer10-maxpool"] == (1, 256, 13, 13)     # five 2x2 stride-2 pools: 416 / 32 = 13
    assert s["layer12-maxpool"] == (1, 512, 13, 13)     # kernel 1 stride 1 keeps 13
    assert s["layer16-conv"] == (1, 255, 13, 13)        # 3 anchors x (80 classes + 5)
    assert s["layer20-upsample"] == (1, 128, 26, 26)    # deconvolution: (13 - 1) x 2 + 4 - 2 x 1 = 26
    assert s["layer21-route"] == (1, 128 + 256, 26, 26)
    assert s["layer23-conv"] == (1, 255, 26, 26)
    assert s["layer24-yolo"] == (1, 1, None, 7)


def test_a_yolov3_tiny_port_whose_pooling_darknet_pads_does_not_concatenate_in_caffe():
    # ChenYingpeng's port keeps darknet's 2x2 stride-1 pool: darknet pads it to keep 13, Caffe's
    # rule gives (13 - 2)/1 + 1 = 12, so the route joins 12 x 2 = 24 with layer9's 26
    r = check("caffe_yolov3_tiny.prototxt", folder="collection")
    assert r.blob_shapes["layer12-maxpool"] == (1, 512, 12, 12)
    assert r.blob_shapes["layer20-upsample"] == (1, 128, 24, 24)    # the nearest-neighbour Upsample, scale 2
    assert [e.layer for e in r.errors] == ["layer21-route"]


# -- the collection ----------------------------------------------------------------------------------
def collection_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "check_collection", os.path.join(os.path.dirname(HERE), os.pardir, "tools", "check_collection.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_collection_reads_without_a_crash_and_most_of_it_checks():
    tool = collection_tool()
    paths = list(tool.nets([os.path.join(HERE, "public"), os.path.join(HERE, "collection")]))
    assert len(paths) >= 40
    counts = tool.tally(paths)
    assert counts["unreadable"] == 0 and counts["crash"] == 0, counts
    assert counts["clean"] >= 9 and counts["clean"] + counts["warnings only"] >= 29, counts


def test_every_collected_net_names_its_source_in_its_header_and_in_sources_md():
    sources = open(os.path.join(HERE, "SOURCES.md")).read()
    for folder in ("public", "collection"):
        for name in sorted(os.listdir(os.path.join(HERE, folder))):
            with open(os.path.join(HERE, folder, name)) as f:
                assert f.readline().startswith("# Source: "), name
            assert f"| {folder}/{name} |" in sources, name


def test_the_tool_prints_a_table_and_a_line_per_file(capsys):
    tool = collection_tool()
    assert tool.main(["-v", os.path.join(HERE, "public")]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_ssd_deploy.prototxt: clean" in out
    assert "faster_rcnn_zf_test.prototxt: warnings only (2 warning(s))" in out
    assert out.splitlines()[-6:] == ["files             4", "clean             2", "warnings only     2",
                                     "errors            0", "unreadable        0", "crash             0"]
