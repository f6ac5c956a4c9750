"""The GPU gradient exchange through NCCL (cupy.cuda.nccl), ids exchanged over MPI.

As Caffe's NCCL class: rank 0's weights broadcast once; with layer_wise_reduce (default true)
each layer's diffs are all-reduced on a side stream as soon as its backward is done (overlapping
the backward of the layers below), scaled by 1/N, and the step waits for that stream before the
update; otherwise one all-reduce over a flat device buffer after backward. With iter_size > 1
every pass reduces what has accumulated, as Caffe does: the mean is linear, so the result is the
same. CuPy is imported only when this class is built.
"""
import numpy as np

from ..errors import NetspecError


class NcclReducer:
    def __init__(self, group, net, params, layer_wise=True):
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.group, self.params = cupy, nccl, group, list(params)
        uid = nccl.get_unique_id() if group.root else None
        uid = group.bcast(uid, "exchanging the NCCL id")
        self.comm = nccl.NcclCommunicator(group.size, uid, group.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.scale = 1.0 / group.size
        by_layer = {}
        for p in self.params:
            by_layer.setdefault(p.layer, []).append(p)
        shared = len({id(b) for layer in net.layers for b in layer.blobs}) != sum(len(layer.blobs) for layer in net.layers)
        self.layer_wise = layer_wise and not shared     # Caffe: not supported with shared weights
        self.hook = None
        if self.layer_wise:
            def after_backward(step):
                mine = by_layer.get(step.layer.name)
                if mine:
                    self._allreduce([p.blob.diff for p in mine], wait_for_compute=True)
            self.hook = after_backward
            net.after_backward.append(self.hook)
        self.net = net
        total = sum(p.blob.diff.size for p in self.params)
        self.flat = None if self.layer_wise else cupy.empty(total, cupy.float32)

    def _allreduce(self, arrays, wait_for_compute):
        cupy, nccl = self.cupy, self.nccl
        if wait_for_compute:       # the default stream's backward must have written the diffs
            self.stream.wait_event(cupy.cuda.get_current_stream().record())
        nccl.groupStart()
        for a in arrays:
            self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, self.stream.ptr)
        nccl.groupEnd()
        with self.stream:
            for a in arrays:
                a *= self.scale

    def broadcast_data(self):
        nccl = self.nccl
        self.stream.wait_event(self.cupy.cuda.get_current_stream().record())    # the fillers' writes
        nccl.groupStart()
        for p in self.params:
            a = p.blob.data
            self.comm.bcast(a.data.ptr, a.size, nccl.NCCL_FLOAT32, 0, self.stream.ptr)
        nccl.groupEnd()
        self.stream.synchronize()

    def reduce(self, stop=False):
        if self.layer_wise:
            self.stream.synchronize()       # every layer's reduction is done before the update
        else:
            ends = [0]
            for p in self.params:
                ends.append(ends[-1] + p.blob.diff.size)
                self.flat[ends[-2]:ends[-1]] = p.blob.diff.reshape(-1)
            self._allreduce([self.flat], wait_for_compute=True)
            self.stream.synchronize()
            for p, a, b in zip(self.params, ends[:-1], ends[1:]):
                p.blob.diff[...] = self.flat[a:b].reshape(p.blob.diff.shape)
        flag = np.array([1.0 if stop else 0.0], np.float32)    # Ctrl-C on any rank stops all
        self.group.Allreduce_sum(flag, "sharing stop requests")
        return bool(flag[0] > 0)

    def close(self):
        if self.hook is not None and self.hook in self.net.after_backward:
            self.net.after_backward.remove(self.hook)
        try:
            self.comm.destroy()
        except Exception as e:      # a communicator already torn down by a failed rank
            raise NetspecError(f"closing the NCCL communicator: {e}") from None
