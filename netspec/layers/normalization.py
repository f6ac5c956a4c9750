"""Normalisation over a batch or an item: BatchNorm (statistics only; a Scale follows) and MVN."""
from .. import caffe_pb2
from ..ops import norm as norm_ops
from .arrays import count
from ..utils import format_shape
from .base import Layer, ParamBlob
from .registry import layer


# ---------------------------------------------------------------------------------------------
@layer("BatchNorm")
class BatchNorm(Layer):
    """Normalises each channel (axis 1) to zero mean and unit variance, over the batch and
    spatial axes. Three blobs, all statistics rather than weights: the running sums of the
    mean and of the variance, and the moving-average factor that divides both. TRAIN (unless
    use_global_stats) normalises with the batch's own statistics and updates the blobs:
        factor = factor * maf + 1
        mean   = batch_mean + maf * mean
        var    = m / (m - 1) * batch_var + maf * var      (m values per channel)
    TEST (or use_global_stats) normalises with mean/factor and var/factor."""
    learnable = (False, False, False)   # the solver must never update these blobs
    family = "norm"
    takes_unknown = True

    def setup(self):
        p = self.lp.batch_norm_param
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == caffe_pb2.TEST)
        self.batch_statistics = not self.use_global_stats
        self.maf, self.eps = p.moving_average_fraction, p.eps
        for i, spec in enumerate(self.lp.param[:3]):
            if spec.lr_mult != 0:
                self.fail(f"param {i} has lr_mult {spec.lr_mult:g}: BatchNorm's blobs are statistics, "
                          "not parameters to train", hint="set lr_mult: 0 for all three, or drop the param blocks")

    @staticmethod
    def channels(shape):
        return shape[1] if len(shape) > 1 else 1

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        c = self.channels(shape)
        m = (count(shape) // c if c else 0) if None not in shape else "?"
        source = "the stored statistics" if self.use_global_stats else "the batch's statistics"
        ctx.note(f"normalise each of {format_shape((c,))} channels over {m} values with {source}")
        return [shape]

    def param_blobs(self, bottoms):
        c = (self.channels(tuple(bottoms[0])),) if bottoms else None
        zero = caffe_pb2.FillerParameter(type="constant", value=0)
        return [ParamBlob(c, zero), ParamBlob(c, zero), ParamBlob((1,), zero)]

    def macs(self, bottoms, tops):
        return count(tops[0])

    def _grouped(self, a):
        n, c = a.shape[0], self.channels(a.shape)
        return a.reshape(n, c, -1)

    def forward(self, xp, bottoms, tops):
        x = self._grouped(bottoms[0].data)
        y = self._grouped(tops[0].data)
        mean_blob, var_blob, factor_blob = (b.data for b in self.blobs)
        if self.use_global_stats:
            factor = factor_blob.reshape(-1)[:1]     # kept on the device: no sync per forward
            scale = 1 / xp.where(factor == 0, xp.inf, factor)     # a zero factor gives 0, as in Caffe
            _, _, self._std = norm_ops.batch_norm_forward(xp, x, y, self.eps, mean_blob * scale, var_blob * scale)
            self._normalised = None
        else:
            mean, var, self._std = norm_ops.batch_norm_forward(xp, x, y, self.eps)
            self._update_statistics(x, mean, var)
            # later in-place layers (Scale, ReLU) overwrite the top: keep the normalised values
            self._normalised = norm_ops.kept_copy(xp, getattr(self, "_normalised", None), y)
        self._top_shape = tops[0].data.shape

    def _update_statistics(self, x, mean, var):
        mean_blob, var_blob, factor_blob = (b.data for b in self.blobs)
        m = x.size // x.shape[1]
        factor_blob *= self.maf
        factor_blob += 1
        mean_blob *= self.maf
        mean_blob += mean
        var_blob *= self.maf
        var_blob += (m / (m - 1) if m > 1 else 1.0) * var

    # With the batch's statistics, the executor runs this layer, the in-place per-channel Scale
    # after it and the in-place ReLU after that, if there is one (ResNet's triples), as one:
    # the normalised values go to the copy kept for backward and, scaled (and rectified), to the
    # top in the same pass; backward takes the Scale's sums once for both gradients.
    def fuses(self, followers, shape):
        return self.batch_statistics and followers[0].is_channel_scale(shape) and \
            (len(followers) == 1 or len(followers) == 2 and followers[1].is_rectifier())

    def forward_fused(self, xp, bottoms, tops, followers):
        scale, rectify = followers[0], len(followers) == 2
        x = self._grouped(bottoms[0].data)
        y = self._grouped(tops[0].data)
        gamma, beta = scale.channel_operands()
        z = norm_ops.kept_buffer(xp, getattr(self, "_normalised", None), x)
        mean, var, self._std = norm_ops.batch_norm_forward(xp, x, z, self.eps, scale=gamma.data, y=y, rectify=rectify,
                                                           bias=None if beta is None else beta.data)
        self._update_statistics(x, mean, var)
        self._normalised, self._top_shape = z, tops[0].data.shape
        scale.took_input(self.kept_top())

    def backward_fused(self, xp, tops, propagate_down, bottoms, followers):
        scale, rectified = followers[0], len(followers) == 2
        gamma, beta = scale.channel_operands()
        norm_ops.batch_norm_backward(xp, self._grouped(tops[0].diff), self._normalised, self._std,
                                     self._grouped(bottoms[0].diff), scale=gamma.data,
                                     dscale=gamma.diff if scale.param_wanted(0) else None,
                                     dbias=beta.diff if beta is not None and scale.param_wanted(1) else None,
                                     y=self._grouped(tops[0].data) if rectified else None)

    def backward_reads(self):
        return False, False         # its own copy of the normalised values, and the std

    def kept_top(self):
        kept = getattr(self, "_normalised", None)
        return None if kept is None else kept.reshape(self._top_shape)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        dy = self._grouped(tops[0].diff)
        dx = self._grouped(bottoms[0].diff)
        if self.use_global_stats:
            dx[...] = dy / self._std
            return
        norm_ops.batch_norm_backward(xp, dy, self._normalised, self._std, dx)


@layer("MVN")
class MVN(Layer):
    """Mean-variance normalisation of each item's channel (or whole item, across_channels):
    y = (x - mean) / (std + eps) with normalize_variance, else y = x - mean."""
    family = "norm"

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return count(tops[0])

    def _grouped(self, a):
        p = self.lp.mvn_param
        groups = a.shape[0] if p.across_channels else a.shape[0] * (a.shape[1] if a.ndim > 1 else 1)
        return a.reshape(groups, -1)

    def forward(self, xp, bottoms, tops):
        x = self._grouped(bottoms[0].data)
        y = self._grouped(tops[0].data)
        xp.subtract(x, x.mean(axis=1, keepdims=True), out=y)
        if self.lp.mvn_param.normalize_variance:
            self._std = xp.sqrt((y * y).mean(axis=1, keepdims=True)) + self.lp.mvn_param.eps
            y /= self._std

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        dy = self._grouped(tops[0].diff)
        dx = self._grouped(bottoms[0].diff)
        if self.lp.mvn_param.normalize_variance:
            y = self._grouped(tops[0].data)
            # Caffe's gradient, exact up to the eps added to the deviation
            dx[...] = (dy - dy.mean(axis=1, keepdims=True)
                       - (dy * y).mean(axis=1, keepdims=True) * y) / self._std
        else:
            dx[...] = dy - dy.mean(axis=1, keepdims=True)
