"""vision layers."""
from .base import Layer
from .registry import layer
