"""`netspec classify`: python/classify.py of Caffe as a command: images (a file, a folder, or a
.npy of H x W x K images) through a trained net, the scores saved as .npy, and the top-k labels
printed from a synset file."""
import glob
import os

import numpy as np

from ..errors import NetspecError
from ..utils import LIST_LIMIT, PROTO_LIMIT, atomic_write, read_regular
from .caffe_flags import add_gpu_option, backend_of


def add_parser(subparsers):
    p = subparsers.add_parser("classify", help="classify images with a trained net (as Caffe's classify.py)",
                              description="Classify images: resize, crop (ten crops averaged, or the centre), "
                                          "subtract a mean, run the net; save the scores and print the top labels.")
    p.add_argument("input_file", help="an image, a folder of images (--ext), or a .npy of H x W x K images")
    p.add_argument("output_file", help="the .npy file for the N x classes scores")
    p.add_argument("--model_def", "--model-def", required=True, help="the deploy .prototxt")
    p.add_argument("--pretrained_model", "--pretrained-model", required=True, help="the trained .caffemodel")
    p.add_argument("--center_only", "--center-only", action="store_true",
                   help="the centre crop only (default: ten crops, corners and centre with their mirrors, averaged)")
    p.add_argument("--images_dim", "--images-dim", default="256,256",
                   help="H,W images are resized to before cropping (default 256,256)")
    p.add_argument("--mean_file", "--mean-file", default=None,
                   help="a mean to subtract: .npy (K x H x W) or .binaryproto")
    p.add_argument("--input_scale", "--input-scale", type=float, default=None, help="multiply the input after the mean")
    p.add_argument("--raw_scale", "--raw-scale", type=float, default=255.0,
                   help="multiply the [0, 1] image before the mean (default 255)")
    p.add_argument("--channel_swap", "--channel-swap", default="2,1,0",
                   help="channel order of the input (default 2,1,0: RGB to BGR as Caffe's models expect)")
    p.add_argument("--ext", default="jpg", help="image extension in a folder input (default jpg)")
    p.add_argument("--labels", help="a synset file: one label per line, line i for class i")
    p.add_argument("--top-k", "--top_k", type=int, default=5, help="labels printed per image (default 5)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None, help="array backend (default numpy)")
    add_gpu_option(p)
    return p


def _numbers(text, what, kind=int):
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise NetspecError(f"--{what} '{text}' is not a comma-separated list of numbers") from None


def read_inputs(path, ext):
    """(names, H x W x K float images) from an image, a folder of *.ext images, or a .npy."""
    from ..data.images import load_image
    if path.endswith(".npy"):
        array = _load_npy(path, "the input")
        return [f"{path}[{i}]" for i in range(len(array))], list(array)
    if os.path.isdir(path):
        names = sorted(glob.glob(os.path.join(path, f"*.{ext}")))
        if not names:
            raise NetspecError(f"no *.{ext} images in the folder", file=path, hint="set --ext to the images' extension")
    elif os.path.isfile(path):
        names = [path]
    else:
        raise NetspecError("cannot open the input: no such file or folder", file=path)
    images = []
    for name in names:
        try:
            images.append(load_image(name))
        except OSError as e:
            raise NetspecError(f"cannot read the image: {e}", file=name) from None
    return names, images


def read_mean(path):
    from ..data.transform import read_mean_file
    if path.endswith(".npy"):
        return _load_npy(path, "the mean")
    return read_mean_file(path)


def _load_npy(path, what):
    import io
    try:
        return np.load(io.BytesIO(read_regular(path, what, PROTO_LIMIT)))
    except OSError as e:
        raise NetspecError(f"cannot read {what}: {e.strerror or e}", file=path) from None
    except ValueError as e:
        raise NetspecError(f"cannot read {what} as a .npy array: {e}", file=path) from None


def read_labels(path):
    try:
        return [line.strip() for line in read_regular(path, "the labels file", LIST_LIMIT, text=True).splitlines()]
    except OSError as e:
        raise NetspecError(f"cannot read the labels file: {e.strerror}", file=path) from None


def run(args):
    from ..data.images import Preprocessor, predict
    from ..net import Net
    image_dims = _numbers(args.images_dim, "images_dim")
    channel_swap = _numbers(args.channel_swap, "channel_swap") if args.channel_swap else None
    if len(image_dims) != 2:
        raise NetspecError(f"--images_dim takes H,W, got '{args.images_dim}'")
    labels = read_labels(args.labels) if args.labels else None
    net = Net(args.model_def, weights=args.pretrained_model, phase="TEST", backend=backend_of(args))
    if not net.inputs:
        raise NetspecError("the net has no input blob to feed", file=args.model_def,
                           hint="a deploy net starts with an Input layer")
    in_, out = net.inputs[0], net.outputs[0]
    shape = net.blobs[in_].shape
    pre = Preprocessor({in_: shape})
    pre.set_transpose(in_, (2, 0, 1))
    try:
        if channel_swap:
            pre.set_channel_swap(in_, channel_swap)
        if args.mean_file:
            pre.set_mean(in_, read_mean(args.mean_file))
    except ValueError as e:
        raise NetspecError(str(e), hint="the mean and channel order must fit the net's input "
                                        f"{shape[1:]}") from None
    pre.set_raw_scale(in_, args.raw_scale)
    if args.input_scale is not None:
        pre.set_input_scale(in_, args.input_scale)
    names, images = read_inputs(args.input_file, args.ext)
    channels = {np.shape(im)[2] for im in images}
    if channels != {shape[1]}:
        raise NetspecError(f"the images have {sorted(channels)} channels; the net's input '{in_}' takes {shape[1]}",
                           file=args.input_file)
    batch = shape[0]

    def forward(x):
        return np.concatenate([net.forward(**{in_: x[i:i + batch]})[out].copy() for i in range(0, len(x), batch)])

    print(f"Classifying {len(images)} inputs.")
    scores = predict(forward, images, pre, in_, image_dims, shape[2:], ten_crops=not args.center_only)
    if labels is not None and len(labels) < scores.shape[1]:
        raise NetspecError(f"{len(labels)} labels for {scores.shape[1]} classes", file=args.labels,
                           hint="one label per line, line i for class i")
    for name, row in zip(names, scores):
        top = np.argsort(-row)[:args.top_k]
        words = ", ".join(f"{labels[k] if labels else k} ({row[k]:.4f})" for k in top)
        print(f"{name}: {words}")
    import io
    buffer = io.BytesIO()
    np.save(buffer, scores)
    atomic_write(args.output_file if args.output_file.endswith(".npy") else args.output_file + ".npy",
                 buffer.getvalue())
    print(f"Saved to {args.output_file}.")
    return 0
