"""Fidelity to BVLC Caffe's rules where a first version diverged: each case states Caffe's
behaviour (from its layer sources) and checks ours against hand-computed numbers."""
import numpy as np
import pytest

from harness import check_layer, make_layer, run
from netspec import caffe_pb2
from netspec.data.datum import datum_to_array, encode_image, resize_linear
from netspec.errors import LayerError, NetspecError


def make(text):
    return make_layer(text, caffe_pb2.TEST)


# -- Eltwise: Caffe forbids coeff for PROD only; MAX accepts and ignores it ------------------------
def test_eltwise_max_accepts_and_ignores_coeff():
    layer = make_layer("type: 'Eltwise' eltwise_param { operation: MAX coeff: 2 coeff: -1 }")
    a, b = np.array([[1.0, 5.0, -2.0]]), np.array([[3.0, 4.0, -2.0]])
    np.testing.assert_array_equal(run(layer, [a, b]).y[0], [[3.0, 5.0, -2.0]])
    check_layer(layer, [np.array([[1.0, 5.0, -3.0]]), np.array([[3.0, 4.0, -2.0]])])


def test_eltwise_prod_still_rejects_coeff():
    with pytest.raises(LayerError, match="PROD"):
        make_layer("type: 'Eltwise' eltwise_param { operation: PROD coeff: 1 coeff: 1 }")


# -- ImageData: OpenCV's INTER_LINEAR resize, as Caffe's ReadImageToCVMat ------------------------------
def test_resize_linear_shrinks_without_smoothing():
    # 1 x 4 -> 1 x 2: centres map to source x = 0.5 and 2.5: (0 + 100) / 2 and (200 + 255) / 2 rounded.
    # (Pillow's BILINEAR widens its filter when shrinking and gives 71 and 209 here.)
    row = np.array([[[0, 100, 200, 255]]], np.uint8)
    np.testing.assert_array_equal(resize_linear(row, 1, 2), [[[50, 228]]])


def test_resize_linear_grows_with_edge_clamping():
    # 1 x 2 -> 1 x 4: source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    row = np.array([[[0, 100]]], np.uint8)
    np.testing.assert_array_equal(resize_linear(row, 1, 4), [[[0, 25, 75, 100]]])
    # both axes at once, 2 x 2 -> 3 x 3: source positions -1/6, 1/2, 7/6 along each axis
    square = np.array([[[0, 60], [120, 180]]], np.uint8)
    np.testing.assert_array_equal(resize_linear(square, 3, 3),
                                  [[[0, 30, 60], [60, 90, 120], [120, 150, 180]]])


def write_list(tmp_path, name="a.png"):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.array([[0, 100, 200, 255]] * 2, np.uint8)).save(folder / name)
    (tmp_path / "list.txt").write_text(f"{name} 3\n")
    return folder


IMAGE = ('name: "img" type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{}" '
         'root_folder: "{}" batch_size: 1 is_color: false {} }}')


def read_batch(layer):
    """One batch from a data layer, its reader closed."""
    tops = run(layer, []).y
    layer.close()
    return tops


def test_image_data_resizes_as_opencv(tmp_path):
    folder = write_list(tmp_path)
    data, label = read_batch(make(IMAGE.format(tmp_path / "list.txt", f"{folder}/", "new_height: 1 new_width: 2")))
    np.testing.assert_array_equal(data, [[[[50, 228]]]])
    np.testing.assert_array_equal(label, [3])


def test_image_data_root_folder_is_a_plain_prefix(tmp_path):
    # Caffe joins root_folder and the listed path by concatenation: "imgs/x" + "a.png" -> "imgs/xa.png"
    folder = write_list(tmp_path, name="xa.png")
    (tmp_path / "list.txt").write_text("a.png 3\n")
    data, _ = read_batch(make(IMAGE.format(tmp_path / "list.txt", f"{folder}/x", "")))
    assert data.shape == (1, 1, 2, 4)


def test_image_data_needs_both_new_height_and_new_width(tmp_path):
    with pytest.raises(LayerError, match="new_height 4 and new_width 0"):
        make(IMAGE.format(tmp_path / "list.txt", "", "new_height: 4"))


# -- MemoryData: every dimension must be positive --------------------------------------------------
def test_memory_data_needs_all_dimensions():
    with pytest.raises(LayerError, match="channels, height and width"):
        make('name: "m" type: "MemoryData" top: "d" top: "l" memory_data_param { batch_size: 2 channels: 1 }')


# -- encoded Datums: force_color and force_gray together are an error, as in Caffe ---------------------
def test_encoded_datum_rejects_force_color_with_force_gray():
    pixels = np.zeros((3, 2, 2), np.uint8)
    datum = caffe_pb2.Datum(data=encode_image(pixels), encoded=True)
    with pytest.raises(NetspecError, match="force_color and force_gray"):
        datum_to_array(datum, force_color=True, force_gray=True)


# -- raw Datums: channels x height x width must account for every stored value ------------------------
@pytest.mark.parametrize("datum", [caffe_pb2.Datum(channels=1, height=2, width=2, data=bytes(3)),
                                   caffe_pb2.Datum(channels=1, height=1, width=2, float_data=[1.0])],
                         ids=["uint8", "float"])
def test_datum_size_mismatch_is_a_clear_error(datum):
    with pytest.raises(NetspecError, match="holds"):
        datum_to_array(datum)


# -- HDF5Data: Caffe reads the source list as whitespace-separated file names --------------------------
def test_hdf5_source_list_is_whitespace_separated(tmp_path):
    import h5py
    names = []
    for f in range(2):
        path = tmp_path / f"p{f}.h5"
        with h5py.File(path, "w") as h5:
            h5["data"] = np.full((1, 2), f, np.float32)
        names.append(str(path))
    (tmp_path / "h5.txt").write_text(f"  {names[0]}\t{names[1]}  \n")     # two names on one line
    layer = make(f'name: "h" type: "HDF5Data" top: "data" hdf5_data_param {{ source: "{tmp_path / "h5.txt"}" '
                 'batch_size: 2 }')
    (data,) = read_batch(layer)
    np.testing.assert_array_equal(data, [[0, 0], [1, 1]])
