"""`netspec device_query -gpu N`: the GPU's properties, as `caffe device_query` prints them."""
from ..errors import NetspecError
from .caffe_flags import gpu_ids

# Caffe's words -> the CUDA property (cudaDeviceProp) it prints, in Caffe's order
PROPERTIES = [
    ("Major revision number", "major"), ("Minor revision number", "minor"), ("Name", "name"),
    ("Total global memory", "totalGlobalMem"), ("Total shared memory per block", "sharedMemPerBlock"),
    ("Total registers per block", "regsPerBlock"), ("Warp size", "warpSize"),
    ("Maximum memory pitch", "memPitch"), ("Maximum threads per block", "maxThreadsPerBlock"),
    ("Maximum dimension of block", "maxThreadsDim"), ("Maximum dimension of grid", "maxGridSize"),
    ("Clock rate", "clockRate"), ("Total constant memory", "totalConstMem"),
    ("Texture alignment", "textureAlignment"), ("Concurrent copy and execution", "deviceOverlap"),
    ("Number of multiprocessors", "multiProcessorCount"), ("Kernel execution timeout", "kernelExecTimeoutEnabled"),
]


def add_parser(subparsers):
    p = subparsers.add_parser("device_query", help="show a GPU's properties (as `caffe device_query`)",
                              description="Print the properties of the GPU(s) -gpu names, as Caffe does.")
    p.add_argument("--gpu", required=True, metavar="N[,N]|all", help="the device id(s), or all")
    return p


def run(args):
    from ..backend import get_xp
    from ..training import Log
    try:
        xp = get_xp("cupy")
    except NetspecError as e:
        raise NetspecError(f"no GPU to query: {e.message}",
                           hint="device_query needs CuPy and an NVIDIA GPU; netspec runs on the CPU without one "
                                "(--backend numpy)") from None
    log = Log(source="common.cpp")
    for device in gpu_ids(args.gpu, xp.cuda.runtime.getDeviceCount()):
        log.info(f"Querying GPUs {device}")
        props = xp.cuda.runtime.getDeviceProperties(device)
        log.info(f"Device id:                     {device}")
        for words, key in PROPERTIES:
            value = props.get(key)
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, (tuple, list)):
                value = ", ".join(str(v) for v in value)
            if key in ("deviceOverlap", "kernelExecTimeoutEnabled"):
                value = "Yes" if value else "No"
            log.info(f"{words + ':':<31}{value}")
    log.close()
    return 0
