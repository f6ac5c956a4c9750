"""Array kernels for the vision layers, written once for NumPy and CuPy through `xp`.

windows: sliding-window arithmetic (output sizes, kernel taps); im2col: im2col/col2im;
conv: convolution and deconvolution; pooling: MAX/AVE/STOCHASTIC pooling; lrn: local
response normalisation; cuda: the CuPy kernels used for the 2-d cases when xp is cupy;
workspace: reusable scratch buffers for big temporaries.
"""
