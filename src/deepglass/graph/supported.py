"""What the ATen capture reads, named in its refusals (SPEC §1, §1b)."""

__all__ = ["SUPPORTED"]

#: what the ATen capture reads (SPEC §1, §1b), for refusals to name
SUPPORTED = ("linear layers and products by a fixed weight (matmul, einsum), conv1d/2d/3d "
             "(stride, padding incl. 'same', dilation, groups) and transposed convolution, "
             "max / average pooling (adaptive, ceil_mode, count_include_pad), mean / sum / "
             "max over dimensions, upsampling (nearest, bilinear, bicubic, trilinear), pixel "
             "(un)shuffle, batch / layer / group / instance / RMS / local response norms and GDN, "
             "residual add/sub, cat / chunk / split / view / permute / pad / flip / roll / "
             "fold / scatter and other re-indexings, fixed factors, gates x * g(z) with "
             "g >= 0 (sigmoid, hard-sigmoid, softmax, a mask zeroing x), Fourier transforms "
             "read as real parts (stft, rfft, an FNO's spectral convolution), and elementwise "
             "activations")
