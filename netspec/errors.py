"""Errors meant for people: where, what was found, what was expected, and a fix."""


class NetspecError(Exception):
    """A mistake in the user's input. The CLI prints it without a traceback and exits 2."""

    def __init__(self, message, *, file=None, line=None, column=None, layer=None,
                 layer_type=None, hint=None):
        super().__init__(message)
        self.message = message
        self.file, self.line, self.column = file, line, column
        self.layer, self.layer_type, self.hint = layer, layer_type, hint

    def where(self):
        """'file:line:col' (as much of it as is known), or ''."""
        parts = [str(p) for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(parts)

    def __str__(self):
        head = self.where()
        if self.layer is not None:
            kind = f" ({self.layer_type})" if self.layer_type else ""
            head = f"{head}: layer '{self.layer}'{kind}" if head else f"layer '{self.layer}'{kind}"
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class LayerError(Exception):
    """A problem local to one layer (bad parameter, bad bottom shapes).

    Raised by a layer's setup() or infer() with a short message; the shape pass adds the
    layer's name, type, file and line, as ONNX's shape inference does.
    """

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message, self.hint = message, hint


class UnknownFieldError(NetspecError):
    """A field the schema lacks, inside a layer: the readers raise it with the layer's type and
    the field, and the layer floor rephrases it when the type itself is unknown (a fork's)."""

    def __init__(self, message, *, message_name, field_name, excerpt="", **where):
        super().__init__(message + excerpt, **where)
        self.message_name, self.field_name, self.excerpt = message_name, field_name, excerpt


class ShapeUnknown(LayerError):
    """A layer whose top shapes cannot be known here (a Python layer whose module does not
    import): the shape pass warns and goes on with those shapes unknown; a Net refuses it."""
