"""Scoring a net as Caffe does (`caffe test`, and the solver's test phase): every output blob,
batch by batch, then the averages over the batches."""
import numpy as np

from .log import fmt


def score(net, iterations, each_batch=None):
    """(means, mean loss) over `iterations` forward passes: {output name: mean array (float64)}.
    each_batch(i, outputs) sees every batch's outputs as they come."""
    sums, loss = {}, 0.0
    for i in range(iterations):
        outputs = net.forward()
        loss += net.loss
        for name in net.outputs:
            sums[name] = sums.get(name, 0.0) + np.asarray(outputs[name], np.float64)
        if each_batch is not None:
            each_batch(i, outputs)
    means = {name: total / iterations for name, total in sums.items()}
    return means, (loss / iterations if iterations else float("nan"))      # Caffe's 0/0


def output_lines(net, outputs, label):
    """Caffe's lines for a net's outputs, numbered across all values, with the loss each
    output contributes: `label output #k: name = v (* w = wv loss)` (label '' for none)."""
    weights = {id(blob): w for blob, w in net.loss_tops}
    lines, index = [], 0
    for name in net.outputs:
        w = weights.get(id(net.blobs[name]), 0.0)
        for value in np.ravel(outputs[name]):
            extra = f" (* {fmt(w)} = {fmt(w * value)} loss)" if w else ""
            head = f"{label} output #{index}: " if label else ""
            lines.append(f"{head}{name} = {fmt(value)}{extra}")
            index += 1
    return lines
