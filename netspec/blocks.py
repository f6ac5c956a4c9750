"""A checked net as drawing units and blocks, for `netspec draw` and the summary's --depth.

A unit is one layer as a reader sees it: in-place layers (ReLU, BatchNorm, Scale, Dropout
writing their bottom) are folded onto the layer that made the blob, as Caffe's draw does,
and implicit Splits vanish (an edge goes from the maker to each reader). A block is a run
of units between two points where a single blob carries everything on (an Inception module,
a ResNet bottleneck); runs of blocks with the same structure can be folded into one.
"""
import os


class Unit:
    def __init__(self, head, index):
        self.head = head            # shapes.LayerResult drawn as the node
        self.folded = []            # in-place LayerResults on its top
        self.inputs = []            # (blob as the file names it, source Unit or None, shape)
        self.index = index

    @property
    def layers(self):
        return [self.head] + self.folded

    @property
    def name(self):
        return self.head.name

    def signature(self, position):
        """The structure, without names or widths: types, and where each input comes from."""
        wiring = tuple(position.get(id(src), -1) for _, src, _ in self.inputs)
        return (self.head.type, tuple(r.type for r in self.folded), wiring)


class Block:
    def __init__(self, units):
        self.units = units

    @property
    def name(self):
        names = [r.name for u in self.units for r in u.layers]
        prefix = os.path.commonprefix(names).rstrip("/_-.")
        return prefix if len(prefix) >= 3 and len(self.units) > 1 else self.units[-1].name

    def signature(self):
        position = {id(u): k for k, u in enumerate(self.units)}
        return tuple(u.signature(position) for u in self.units)

    @property
    def layers(self):
        return [r for u in self.units for r in u.layers]


def units(layers):
    """The shape pass's LayerResults (execution order) as Units."""
    made_by, out = {}, []          # blob -> Unit that made it (split copies: their source's)
    origin = {}                    # a split copy -> the blob it copies
    for r in layers:
        node = r.node
        if node.split:
            for t in node.tops:
                made_by[t] = made_by.get(node.bottoms[0])
                origin[t] = origin.get(node.bottoms[0], node.bottoms[0])
            continue
        maker = made_by.get(node.bottoms[0]) if node.bottoms else None
        if len(node.bottoms) == 1 and len(node.tops) == 1 and node.in_place(0) and maker is not None:
            maker.folded.append(r)
            continue
        unit = Unit(r, len(out))
        unit.inputs = [(origin.get(b, b), made_by.get(b), s) for b, s in zip(node.bottoms, r.bottom_shapes)]
        out.append(unit)
        for t in node.tops:
            made_by[t] = unit
    return out


def blocks(unit_list):
    """Cut the units where one blob alone carries on (blobs of source layers, such as the
    labels, do not count: they are side inputs)."""
    last_read = {}
    for k, u in enumerate(unit_list):
        for _, src, _ in u.inputs:
            if src is not None:
                last_read[id(src)] = k
    out, current, open_sources = [], [], {}
    for k, u in enumerate(unit_list):
        current.append(u)
        if u.head.node.bottoms:
            open_sources[id(u)] = u
        open_sources = {i: s for i, s in open_sources.items() if last_read.get(i, -1) > k}
        if len(open_sources) <= 1:
            out.append(Block(current))
            current = []
    if current:
        out.append(Block(current))
    return out


def runs(block_list):
    """Consecutive blocks of more than one unit with the same structure: [[Block, ...], ...]."""
    out = []
    for b in block_list:
        if out and len(b.units) > 1 and len(out[-1][0].units) > 1 and out[-1][0].signature() == b.signature():
            out[-1].append(b)
        else:
            out.append([b])
    return out


__all__ = ["Unit", "Block", "units", "blocks", "runs"]
