"""`import caffe` resolving to netspec.pycaffe (the import hook lives with the Python layer, which
lends it to a user's module while it imports; the launcher keeps it for its whole run)."""
from ..layers.python import CAFFE_MODULES as MODULES, caffe_alias, install_caffe_alias  # noqa: F401
