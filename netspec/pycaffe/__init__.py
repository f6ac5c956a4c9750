"""pycaffe's Python API (BVLC Caffe 1.0's python/caffe), as a thin client over netspec.

    from netspec import pycaffe as caffe           # or, unchanged scripts: python -m netspec.pycaffe SCRIPT
    caffe.set_mode_cpu()
    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="w.caffemodel")
    out = net.forward(data=batch)

Nets are netspec.Net, solvers netspec's training loop, net_spec netspec's DSL; what pycaffe
adds here is its names, its argument forms and its exceptions.
"""
from ..caffe_pb2 import TEST, TRAIN  # noqa: F401
from ..layers.python import PythonLayer as Layer  # noqa: F401
from .pycaffe import (  # noqa: F401
    AdaDeltaSolver, AdaGradSolver, AdamSolver, Net, NesterovSolver, RMSPropSolver, SGDSolver, Solver,
    get_solver, layer_type_list, set_device, set_mode_cpu, set_mode_gpu, set_random_seed)
from .runtime import (  # noqa: F401
    Timer, has_nccl, init_log, log, set_multiprocess, set_solver_count, set_solver_rank, solver_count, solver_rank)
from . import io, proto  # noqa: F401,E402
from .classifier import Classifier  # noqa: F401,E402
from .detector import Detector  # noqa: F401,E402
from .net_spec import NetSpec, layers, params, to_proto  # noqa: F401,E402

__version__ = "1.0.0"
