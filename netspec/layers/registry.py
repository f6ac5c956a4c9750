"""The explicit registry: Caffe's layer type string -> the class that implements it."""
from .. import caffe_pb2
from ..errors import LayerError, NetspecError, UnknownFieldError
from ..utils import did_you_mean
from .forks_known import probable_fork

LAYERS = {}


def layer(type_name):
    """Class decorator: register a layer class under Caffe's type string (once only)."""
    def register(cls):
        if type_name in LAYERS:
            raise ValueError(f"layer type '{type_name}' is registered twice "
                             f"({LAYERS[type_name].__name__} and {cls.__name__})")
        cls.type = type_name
        if cls.param_fields is None:
            cls.param_fields = _own_param_fields(type_name) + (("loss_param",) if cls.loss else ())
        LAYERS[type_name] = cls
        return cls
    return register


def layer_class(type_name):
    """The class for a type string; an unknown type names the nearest known ones."""
    try:
        return LAYERS[type_name]
    except KeyError:
        fork = probable_fork(type_name)
        if fork:
            raise LayerError(f"unknown layer type '{type_name}': a type of {fork}, which netspec does not "
                             "implement", hint="remove the layer, or check the net with that fork's Caffe") from None
        raise LayerError(f"unknown layer type '{type_name}'{did_you_mean(type_name, LAYERS)}",
                         hint="known types: " + ", ".join(sorted(LAYERS))) from None


def create(lp, phase):
    """Instantiate the layer for a LayerParameter in a phase (caffe_pb2.TRAIN or TEST)."""
    return layer_class(lp.type)(lp, phase)


def _own_param_fields(type_name):
    """The schema's parameter message named after the type (ConvolutionParameter for
    Convolution): the LayerParameter fields of that message type."""
    return tuple(f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
                 if f.message_type is not None and f.message_type.name == type_name + "Parameter")


def blame_unknown_type(error):
    """A reader's UnknownFieldError inside a layer whose type netspec does not know (SSD's
    Normalize with its norm_param, AnnotatedData with transform_param's resize_param): the type
    is the real problem, so say that. Any other error comes back as it was."""
    if not isinstance(error, UnknownFieldError) or error.layer_type in LAYERS:
        return error
    try:
        layer_class(error.layer_type)
    except LayerError as e:
        inside = "" if error.message_name == "caffe.LayerParameter" else f" (in {error.message_name.split('.')[-1]})"
        return NetspecError(f"{e.message}, so its '{error.field_name}'{inside} is no field of Caffe's schema "
                            f"either (a type from a Caffe fork?){error.excerpt}", file=error.file, line=error.line,
                            column=error.column, layer=error.layer, layer_type=error.layer_type, hint=e.hint)
