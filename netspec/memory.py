"""Activations and their gradients that share memory, for training.

Caffe keeps a data and a diff array for every blob, though backward needs each diff only
between the layer that writes it and the last layer that reads it, and some data (a sum's
inputs) not at all after forward; PyTorch frees both as it goes, and in a ResNet-50 step they
were half of the memory. With share_memory a Net gives blobs whose arrays are never needed at
the same time one buffer:
- a diff lives from its first write (a consumer's backward, or the loss seed) to its last
  read (its producer's backward); a diff read before anything writes it in a pass (its stale
  value matters), or that no backward touches, keeps its own;
- a blob's data that no layer's backward reads (Layer.backward_reads) lives from its
  producer's forward to its last reader's forward; inputs, outputs and losses keep their own.
Two blobs share only when those spans do not meet. Afterwards such arrays hold another
blob's values, so this is for the solver only: a pycaffe user reading net.blobs[name] gets a
Net without it, as in Caffe.
"""
import math


def diff_spans(steps, seeded):
    """{blob: (first, last)} positions in backward order of the diffs that may share: written
    before they are read. `steps` in forward order (with propagate_down and needs_backward);
    `seeded` the blobs whose diff is set before backward starts (losses): position -1."""
    spans, read_first = {name: [-1, -1] for name in seeded}, set()
    order = [s for s in reversed(steps) if s.needs_backward]
    for position, step in enumerate(order):
        for name in step.node.tops:            # backward reads the tops' diffs first
            if name in spans:
                spans[name][1] = position
            else:
                read_first.add(name)
        for name, down in zip(step.node.bottoms, step.propagate_down):
            if not down or name in read_first:
                continue
            span = spans.setdefault(name, [position, position])
            span[1] = position
    return {name: tuple(span) for name, span in spans.items() if name not in read_first}


def share_buffers(spans, sizes):
    """[[blob, ...], ...]: groups whose spans are pairwise disjoint (closed intervals: a layer
    reads one blob while it writes another). Greedy by start, each blob into the
    free group whose largest member is closest above its size, else the largest free one."""
    groups, ends, biggest = [], [], []
    for name in sorted(spans, key=lambda n: (spans[n][0], -sizes[n])):
        first, last = spans[name]
        free = [g for g in range(len(groups)) if ends[g] < first]
        fitting = [g for g in free if biggest[g] >= sizes[name]]
        if fitting:
            g = min(fitting, key=lambda g: biggest[g])
        elif free:
            g = max(free, key=lambda g: biggest[g])
        else:
            groups.append([])
            ends.append(-2)
            biggest.append(0)
            g = len(groups) - 1
        groups[g].append(name)
        ends[g] = last
        biggest[g] = max(biggest[g], sizes[name])
    return groups


def data_spans(steps, keep):
    """{blob: (first, last)} forward positions of the blobs whose data no backward reads (a
    BatchNorm -> Scale chain into an Eltwise sum, ResNet's branch2c and branch1): such data is
    needed only from its producer's forward to its last reader's, as PyTorch frees it.
    `keep`: blobs whose data the caller reads (inputs, outputs, losses). Split's blobs, whose
    data is one array, are kept too."""
    needed, spans = set(keep), {}
    for position, step in enumerate(steps):
        node, layer = step.node, step.layer
        reads_bottoms, reads_tops = (True, True) if layer.shares_data else layer.backward_reads()
        if reads_bottoms:
            needed.update(node.bottoms)
        if reads_tops:
            needed.update(node.tops)
        for name in list(node.bottoms) + list(node.tops):
            spans.setdefault(name, [position, position])[1] = position
    return {name: tuple(span) for name, span in spans.items() if name not in needed}


def shared_data_arrays(xp, steps, keep, shapes, dtype):
    """{blob: data array} for the blobs of data_spans that can share a buffer."""
    return _grouped_arrays(xp, data_spans(steps, keep), shapes, dtype)


def shared_diff_arrays(xp, steps, seeded, shapes, dtype):
    """{blob: diff array}, views of one zeroed flat buffer per group, for the blobs that share."""
    return _grouped_arrays(xp, diff_spans(steps, seeded), shapes, dtype)


def _grouped_arrays(xp, spans, shapes, dtype):
    sizes = {name: math.prod(shapes[name]) for name in spans}
    out = {}
    for group in share_buffers(spans, sizes):
        if len(group) < 2:
            continue
        flat = xp.zeros(max(sizes[n] for n in group), dtype=dtype)
        out.update((n, flat[:sizes[n]].reshape(shapes[n])) for n in group)
    return out
