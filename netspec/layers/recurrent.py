"""Recurrent layers with Caffe's blob layout: RNN, LSTM and the single-step LSTMUnit.

Bottoms: x (T x N x ...), cont (T x N: 0 starts a new sequence, 1 continues one),
optionally x_static (N x ...), and with recurrent_param.expose_hidden the initial states
(h0 for RNN; h0, c0 for LSTM, each 1 x N x num_output), which come back as extra tops
(hT; hT, cT). Without expose_hidden the last state of one forward is the first state of
the next (as Caffe carries it), so a batch whose cont[0] is 1 continues the previous batch.

Caffe unrolls the recurrence into a hidden net of InnerProduct, Eltwise, Scale and
LSTMUnit layers; here the time loop is written directly, each step vectorised over the N
streams, and the input transforms of all T steps are one matrix product. The learnable
blobs keep Caffe's order and shapes, so weights interchange. Backward is full
backpropagation through time; through expose_hidden it also reaches h0/c0 and takes the
gradients arriving at hT/cT (Caffe drops both, which only matters when they are used).
"""
import math

from ..errors import LayerError
from .base import Layer, ParamBlob
from .registry import layer


def sigmoid(xp, x):
    return 0.5 * (1 + xp.tanh(0.5 * x))   # the logistic function, overflow-free


def lstm_cell(xp, c_prev, gates, cont):
    """One LSTM step for N streams. gates: (N, 4H) pre-activations in Caffe's order i, f, o, g;
    cont: (N,). Returns c, h and what the backward step needs."""
    h = c_prev.shape[1]
    i = sigmoid(xp, gates[:, :h])
    f_sig = sigmoid(xp, gates[:, h:2 * h])
    o = sigmoid(xp, gates[:, 2 * h:3 * h])
    g = xp.tanh(gates[:, 3 * h:])
    f = cont[:, None] * f_sig                 # cont = 0 forgets the previous cell
    c = f * c_prev + i * g
    tanh_c = xp.tanh(c)
    return c, o * tanh_c, (i, f_sig, f, o, g, tanh_c)


def lstm_cell_backward(xp, dc, dh, c_prev, cont, cache, dgates):
    """Gradients of one step: writes d(gates) into dgates (N, 4H); returns d(c_prev)."""
    i, f_sig, f, o, g, tanh_c = cache
    h = c_prev.shape[1]
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    dgates[:, :h] = dc * g * i * (1 - i)
    dgates[:, h:2 * h] = dc * c_prev * cont[:, None] * f_sig * (1 - f_sig)
    dgates[:, 2 * h:3 * h] = dh * tanh_c * o * (1 - o)
    dgates[:, 3 * h:] = dc * i * (1 - g * g)
    return dc * f


class Recurrent(Layer):
    """What RNN and LSTM share: the bottom/top layout, checks, input transforms, state carry."""
    param_fields = ("recurrent_param",)
    state_names = ()        # names of the recurrent states, in Caffe's order
    gate_factor = 1         # rows of the transforms per hidden unit (LSTM: 4 gates)

    def setup(self):
        p = self.lp.recurrent_param
        self.hidden = p.num_output
        if self.hidden <= 0:
            raise LayerError(f"{self.type} needs a positive num_output (found {self.hidden})",
                             hint="set recurrent_param { num_output: H }, the hidden state size")
        self.expose = p.expose_hidden
        self.exposed = len(self.state_names) if self.expose else 0     # state bottoms (and tops)
        self.bottoms = (2 + self.exposed, 3 + self.exposed)
        self.tops = (1 + self.exposed, 1 + self.exposed)
        self.weight_filler, self.bias_filler = p.weight_filler, p.bias_filler
        self.carry = None

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1    # not the sequence indicators

    # -- shapes ----------------------------------------------------------------------------------
    def has_static(self, count):
        return count > 2 + self.exposed

    def first_state_bottom(self, count):
        """Where h0 (and c0) sit among `count` bottoms with expose_hidden: after x, cont [, x_static]."""
        return 2 + self.has_static(count)

    def infer(self, bottoms, ctx):
        low, high = self.bottoms
        if not low <= len(bottoms) <= high:
            raise LayerError(f"takes {low} to {high} bottoms (x, cont, [x_static]"
                             + (", " + ", ".join(n + "0" for n in self.state_names) if self.expose else "")
                             + f"), got {len(bottoms)}")
        x, cont = bottoms[0], bottoms[1]
        if len(x) < 2:
            raise LayerError(f"bottom[0] {x} must have at least 2 axes: (timesteps T, streams N, ...)")
        steps, streams = x[0], x[1]
        if tuple(cont) != (steps, streams):
            raise LayerError(f"bottom[1] (the sequence continuation indicators) must be T x N = "
                             f"{(steps, streams)} to match x {x}; found {tuple(cont)}",
                             hint="cont holds 0 at the first step of a sequence and 1 after it")
        static = self.has_static(len(bottoms))
        if static and (len(bottoms[2]) < 1 or bottoms[2][0] != streams):
            raise LayerError(f"bottom[2] (the static input) must be N x ... with N = {streams}; "
                             f"found {tuple(bottoms[2])}")
        state_shape = (1, streams, self.hidden)
        if self.expose:
            first = self.first_state_bottom(len(bottoms))
            for k, name in enumerate(self.state_names):
                if tuple(bottoms[first + k]) != state_shape:
                    raise LayerError(f"bottom[{first + k}] (initial state {name}0) must be "
                                     f"1 x N x num_output = {state_shape}; found {tuple(bottoms[first + k])}")
        ctx.note(f"{steps} timesteps x {streams} streams of {math.prod(x[2:])} inputs"
                 + (f" + a static input of {math.prod(bottoms[2][1:])}" if static else "")
                 + f" -> hidden {self.hidden}; output {(steps, streams, self.hidden)}")
        return [(steps, streams, self.hidden)] + [state_shape] * self.exposed

    def input_shapes(self, bottoms):
        """(D, D_static or None): the per-step input size and the static input size."""
        dim = math.prod(bottoms[0][2:])
        static = math.prod(bottoms[2][1:]) if self.has_static(len(bottoms)) else None
        return dim, static

    def input_blobs(self, bottoms):
        """The input-to-hidden weight and bias, and the static input's weight where there is one."""
        rows = self.gate_factor * self.hidden
        dim, static = self.input_shapes(bottoms) if bottoms else (None, None)
        blobs = [ParamBlob(dim and (rows, dim), self.weight_filler), ParamBlob((rows,), self.bias_filler)]
        if self.has_static(len(self.lp.bottom)):
            blobs.append(ParamBlob(static and (rows, static), self.weight_filler))
        return blobs

    # -- compute helpers ---------------------------------------------------------------------------
    def transform_inputs(self, xp, bottoms):
        """W x_t + b for every step at once (T, N, rows), plus W_static x_static broadcast over T."""
        x = bottoms[0].data
        steps, streams = x.shape[:2]
        w, b = self.blobs[0].data, self.blobs[1].data
        out = (x.reshape(steps * streams, -1) @ w.T + b).reshape(steps, streams, -1)
        if self.has_static(len(bottoms)):
            out += (bottoms[2].data.reshape(streams, -1) @ self.blobs[2].data.T)[None]
        return out

    def transform_inputs_backward(self, xp, bottoms, propagate_down, dpre):
        """Given d(W x_t + b [+ W_static x_static]) for all steps, fill the input and param diffs."""
        x = bottoms[0].data
        steps, streams = x.shape[:2]
        flat = dpre.reshape(steps * streams, -1)
        if self.param_wanted(0):
            self.blobs[0].diff += flat.T @ x.reshape(steps * streams, -1)
        if self.param_wanted(1):
            self.blobs[1].diff += flat.sum(axis=0)
        if propagate_down[0]:
            bottoms[0].diff[...] = (flat @ self.blobs[0].data).reshape(x.shape)
        if self.has_static(len(bottoms)):
            dstatic = dpre.sum(axis=0)
            xs = bottoms[2].data
            if self.param_wanted(2):
                self.blobs[2].diff += dstatic.T @ xs.reshape(streams, -1)
            if propagate_down[2]:
                bottoms[2].diff[...] = (dstatic @ self.blobs[2].data).reshape(xs.shape)
        if propagate_down[1]:
            bottoms[1].diff[...] = 0       # no gradient to the sequence indicators

    def initial_states(self, xp, bottoms, dtype):
        """h0 (and c0): exposed bottoms, else the states the last forward ended with (zeros at first)."""
        streams = bottoms[0].data.shape[1]
        if self.expose:
            first = self.first_state_bottom(len(bottoms))
            return [bottoms[first + k].data[0] for k in range(len(self.state_names))]
        if self.carry is None or self.carry[0].shape != (streams, self.hidden) \
                or self.carry[0].dtype != dtype:
            self.carry = [xp.zeros((streams, self.hidden), dtype=dtype) for _ in self.state_names]
        return self.carry

    def finish_states(self, tops, finals):
        """Expose the final states as tops, or keep them for the next forward."""
        if self.expose:
            for k, state in enumerate(finals):
                tops[1 + k].data[...] = state[None]
        else:
            self.carry = [s.copy() for s in finals]

    def final_state_diffs(self, xp, tops, like):
        return [tops[1 + k].diff[0] if self.expose else xp.zeros_like(like)
                for k in range(len(self.state_names))]

    def initial_state_diffs(self, bottoms, propagate_down, diffs):
        if self.expose:
            first = self.first_state_bottom(len(bottoms))
            for k, d in enumerate(diffs):
                if propagate_down[first + k]:
                    bottoms[first + k].diff[...] = d[None]


@layer("LSTM")
class LSTM(Recurrent):
    """Long short-term memory, as Caffe's LSTM layer (Graves' variant without peepholes).

    Learnable blobs: W_xc (4H x D), b_c (4H), [W_xc_static (4H x D_static)], W_hc (4H x H);
    gate rows in the order input, forget, output, cell candidate.
    """
    state_names = ("h", "c")
    gate_factor = 4
    bottoms = (2, 5)
    tops = (1, 3)

    def param_blobs(self, bottoms):
        return self.input_blobs(bottoms) + [ParamBlob((4 * self.hidden, self.hidden), self.weight_filler)]

    def macs(self, bottoms, tops):
        steps, streams = bottoms[0][:2]
        dim, static = self.input_shapes(bottoms)
        rows = 4 * self.hidden
        return steps * streams * rows * (dim + self.hidden) + streams * rows * (static or 0) \
            + steps * streams * self.hidden * 3

    def forward(self, xp, bottoms, tops):
        pre = self.transform_inputs(xp, bottoms)
        steps, streams, _ = pre.shape
        cont = bottoms[1].data.astype(pre.dtype, copy=False)
        w_hc = self.blobs[-1].data
        h, c = self.initial_states(xp, bottoms, pre.dtype)
        hs = xp.empty((steps + 1, streams, self.hidden), dtype=pre.dtype)
        cs = xp.empty_like(hs)
        hs[0], cs[0] = h, c
        caches = []
        for t in range(steps):
            gates = pre[t] + (cont[t][:, None] * hs[t]) @ w_hc.T
            cs[t + 1], hs[t + 1], cache = lstm_cell(xp, cs[t], gates, cont[t])
            caches.append(cache)
        tops[0].data[...] = hs[1:]
        self.finish_states(tops, [hs[steps], cs[steps]])
        self.saved = hs, cs, caches, cont

    def backward(self, xp, tops, propagate_down, bottoms):
        hs, cs, caches, cont = self.saved
        steps = len(caches)
        w_hc = self.blobs[-1].data
        dh_next, dc_next = self.final_state_diffs(xp, tops, hs[0])
        dgates = xp.empty((steps,) + (hs.shape[1], 4 * self.hidden), dtype=hs.dtype)
        dtop = tops[0].diff
        for t in reversed(range(steps)):
            dc_next = lstm_cell_backward(xp, dc_next, dtop[t] + dh_next, cs[t], cont[t],
                                         caches[t], dgates[t])
            dh_next = (dgates[t] @ w_hc) * cont[t][:, None]
        if self.param_wanted(len(self.blobs) - 1):
            conted = hs[:-1] * cont[:, :, None]
            self.blobs[-1].diff += dgates.reshape(-1, dgates.shape[2]).T @ conted.reshape(-1, self.hidden)
        self.transform_inputs_backward(xp, bottoms, propagate_down, dgates)
        self.initial_state_diffs(bottoms, propagate_down, [dh_next, dc_next])


@layer("RNN")
class RNN(Recurrent):
    """Elman network, as Caffe's RNN layer: h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static]
    + W_hh (cont_t h_{t-1})), o_t = tanh(W_ho h_t + b_o); the top is o.

    Learnable blobs: W_xh (H x D), b_h (H), [W_xh_static (H x D_static)], W_hh (H x H),
    W_ho (H x H), b_o (H).
    """
    state_names = ("h",)
    bottoms = (2, 4)
    tops = (1, 2)

    def param_blobs(self, bottoms):
        hid, w, b = self.hidden, self.weight_filler, self.bias_filler
        return self.input_blobs(bottoms) + [ParamBlob((hid, hid), w), ParamBlob((hid, hid), w), ParamBlob((hid,), b)]

    def macs(self, bottoms, tops):
        steps, streams = bottoms[0][:2]
        dim, static = self.input_shapes(bottoms)
        hid = self.hidden
        return steps * streams * hid * (dim + 2 * hid) + streams * hid * (static or 0)

    def forward(self, xp, bottoms, tops):
        pre = self.transform_inputs(xp, bottoms)
        steps, streams, _ = pre.shape
        cont = bottoms[1].data.astype(pre.dtype, copy=False)
        w_hh, w_ho, b_o = (b.data for b in self.blobs[-3:])
        (h,) = self.initial_states(xp, bottoms, pre.dtype)
        hs = xp.empty((steps + 1, streams, self.hidden), dtype=pre.dtype)
        hs[0] = h
        for t in range(steps):
            hs[t + 1] = xp.tanh(pre[t] + (cont[t][:, None] * hs[t]) @ w_hh.T)
        out = xp.tanh(hs[1:].reshape(steps * streams, -1) @ w_ho.T + b_o)
        tops[0].data[...] = out.reshape(steps, streams, -1)
        self.finish_states(tops, [hs[steps]])
        self.saved = hs, out, cont

    def backward(self, xp, tops, propagate_down, bottoms):
        hs, out, cont = self.saved
        steps, streams = cont.shape
        w_hh, w_ho = self.blobs[-3].data, self.blobs[-2].data
        d_out = tops[0].diff.reshape(steps * streams, -1) * (1 - out * out)
        last = len(self.blobs) - 1
        if self.param_wanted(last - 1):
            self.blobs[-2].diff += d_out.T @ hs[1:].reshape(steps * streams, -1)
        if self.param_wanted(last):
            self.blobs[-1].diff += d_out.sum(axis=0)
        dh_out = (d_out @ w_ho).reshape(steps, streams, -1)
        (dh_next,) = self.final_state_diffs(xp, tops, hs[0])
        dpre = xp.empty_like(dh_out)
        for t in reversed(range(steps)):
            dpre[t] = (dh_out[t] + dh_next) * (1 - hs[t + 1] * hs[t + 1])
            dh_next = (dpre[t] @ w_hh) * cont[t][:, None]
        if self.param_wanted(last - 2):
            conted = hs[:-1] * cont[:, :, None]
            self.blobs[-3].diff += dpre.reshape(-1, self.hidden).T @ conted.reshape(-1, self.hidden)
        self.transform_inputs_backward(xp, bottoms, propagate_down, dpre)
        self.initial_state_diffs(bottoms, propagate_down, [dh_next])


@layer("LSTMUnit")
class LSTMUnit(Layer):
    """One LSTM step: bottoms c_prev (1 x N x H), gate inputs (1 x N x 4H, order i, f, o, g),
    cont (1 x N); tops c (1 x N x H) and h (1 x N x H)."""
    bottoms = (3, 3)
    tops = (2, 2)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2    # not the sequence indicators

    def infer(self, bottoms, ctx):
        c_prev, gates, cont = (tuple(b) for b in bottoms)
        if len(c_prev) != 3 or c_prev[0] != 1:
            raise LayerError(f"bottom[0] (the previous cell state) must be 1 x N x H; found {c_prev}")
        streams, hidden = c_prev[1], c_prev[2]
        if gates != (1, streams, 4 * hidden):
            raise LayerError(f"bottom[1] (the gate inputs) must be 1 x N x 4H = "
                             f"{(1, streams, 4 * hidden)} for the cell state {c_prev}; found {gates}")
        if cont != (1, streams):
            raise LayerError(f"bottom[2] (the continuation indicators) must be 1 x N = "
                             f"{(1, streams)}; found {cont}")
        ctx.note(f"one LSTM step of {streams} streams, {hidden} hidden units")
        return [c_prev, c_prev]

    def macs(self, bottoms, tops):
        return 3 * math.prod(bottoms[0])

    def forward(self, xp, bottoms, tops):
        c_prev = bottoms[0].data[0]
        cont = bottoms[2].data[0].astype(c_prev.dtype, copy=False)
        c, h, self.cache = lstm_cell(xp, c_prev, bottoms[1].data[0], cont)
        tops[0].data[...] = c[None]
        tops[1].data[...] = h[None]

    def backward(self, xp, tops, propagate_down, bottoms):
        c_prev = bottoms[0].data[0]
        cont = bottoms[2].data[0].astype(c_prev.dtype, copy=False)
        dgates = xp.empty(bottoms[1].data.shape[1:], dtype=c_prev.dtype)
        dc_prev = lstm_cell_backward(xp, tops[0].diff[0], tops[1].diff[0], c_prev, cont,
                                     self.cache, dgates)
        if propagate_down[0]:
            bottoms[0].diff[...] = dc_prev[None]
        if propagate_down[1]:
            bottoms[1].diff[...] = dgates[None]
        if propagate_down[2]:
            bottoms[2].diff[...] = 0       # no gradient to the sequence indicators
