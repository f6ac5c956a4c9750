"""A layer's parameter block that no schema netspec knows holds (a fork's `foo_param`): the
block is set aside so the rest of the file parses, and the layer alone is in error.

The graph turns each DroppedField into an error on its layer (its outputs unknown, every
independent layer still checked); `netspec upgrade` refuses to write a file that lost one.
"""
import re

TYPO = 0.85        # this close to a known field name, an unknown one is taken for a misspelling


class DroppedField(str):
    """A warning (the text) that also names the layer whose field was set aside; the text, YAML
    and JSON readers make the same one."""

    def __new__(cls, path, line, layer, layer_type, field_name):
        obj = super().__new__(cls, f"{path}:{line}: layer '{layer}' ({layer_type}): '{field_name}' is in no "
                                   "schema netspec knows; set aside, the layer is not checked")
        obj.layer, obj.field_name, obj.line = layer, field_name, line
        return obj

    @property
    def message(self):
        return (f"'{self.field_name}' is in no schema netspec knows (BVLC Caffe's or the forks' it reads): "
                "this layer is not checked")

    hint = "netspec reads the parameters of the forks listed in docs/forks.md; remove or rename this block"


def droppable(message_name, field_name, known_fields, layer_type=None):
    """A `*_param` directly in a layer, not a misspelling of a known field (a typo stays an error);
    a block named after the layer's own type (RBMInnerProduct's rbm_inner_product_param) is that
    type's parameters, however close it comes to a known name."""
    if message_name != "caffe.LayerParameter" or not field_name.endswith("_param"):
        return False
    import difflib      # here, as in utils.closest: only an unknown field needs it
    return (field_name == own_param(layer_type)
            or not difflib.get_close_matches(field_name, list(known_fields), n=1, cutoff=TYPO))


def own_param(layer_type):
    """The parameter field a type's name implies: Yolov3DetectionOutput -> yolov3_detection_output_param."""
    if not isinstance(layer_type, str):
        return None
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", layer_type))
    return words.lower() + "_param"


def _line_starts(text):
    return [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]


def blank_field(text, line, col, tokens):
    """`text` with the field whose name starts at (line, col) blanked out (name, value or
    {...} block), every other position kept; None when the field does not end."""
    begin = _line_starts(text)[line - 1] + col - 1
    rest = text[begin:]
    starts = _line_starts(rest)
    depth, end = 0, None
    for index, (_, tok, t_line, t_col) in enumerate(tokens(rest)):
        at = starts[t_line - 1] + t_col - 1
        if index == 0 or (tok == ":" and depth == 0):
            continue                # the field name, and the colon after it
        if tok in "{<":
            depth += 1
            continue
        if tok in "}>":
            depth -= 1
        if depth == 0:
            end = at + len(tok)
            break
    if end is None:
        return None
    gap = "".join(c if c == "\n" else " " for c in rest[:end])
    return text[:begin] + gap + rest[end:]
