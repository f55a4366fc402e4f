"""A Fourier transform read on real numbers (graph.spectral): torch.stft and
torch.fft.rfft read as their real and imaginary parts are a dense layer of the
cosine and sine basis at every frame (checked against the Jacobian in both
capture modes); their magnitude is two squares added and a root, the graph of
the same spectrogram written with conv1d."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from jacobian import assert_is_jacobian

from deepglass.errors import UnsupportedLayerError
from deepglass.graph import SignedGraph
from deepglass.graph.spectral import dft_weight


@pytest.mark.parametrize("n", [7, 8, 16])
@pytest.mark.parametrize("onesided", [True, False])
@pytest.mark.parametrize("norm", [0, 1, 2])
def test_dft_weight_is_the_fft(n, onesided, norm):
    x = torch.randn(5, n, dtype=torch.float64)
    mode = {0: "backward", 1: "ortho", 2: "forward"}[norm]
    ref = (torch.fft.rfft if onesided else torch.fft.fft)(x, norm=mode)
    got = (x @ dft_weight(n, onesided, norm, torch.float64)).reshape(5, -1, 2)
    torch.testing.assert_close(got, torch.view_as_real(ref))


class _STFT(nn.Module):
    """A 2-d conv over the STFT's (real, imaginary) channels."""

    def __init__(self, **kw):
        super().__init__()
        self.kw = kw
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):
        win = torch.hann_window(self.kw.get("win_length", self.kw["n_fft"]), dtype=x.dtype)
        spec = torch.stft(x[:, 0], window=win, return_complex=True, **self.kw)
        return self.conv(torch.view_as_real(0.5 * spec).transpose(1, 3).transpose(2, 3))


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("kw", [dict(n_fft=16, hop_length=4),
                                dict(n_fft=16, hop_length=4, normalized=True),
                                dict(n_fft=16, hop_length=5, onesided=False, center=False),
                                dict(n_fft=16, hop_length=4, win_length=10),
                                dict(n_fft=15, hop_length=3, pad_mode="constant")])
def test_an_stft_read_as_real_and_imaginary_parts_is_its_jacobian(kw, capture):
    """It was refused ('_fft_r2c', complex values), although SPEC §1b reads the
    network as what it computes: a strided convolution with the windowed basis."""
    g = assert_is_jacobian(_STFT(**kw), (1, 64), capture)
    F = kw["n_fft"] // 2 + 1 if kw.get("onesided", True) else kw["n_fft"]
    assert g.node_blocks[1].shape[0] == 2 * F          # (re, im) of every frequency, per frame


class _Magnitude(nn.Module):
    def __init__(self, as_conv: bool):
        super().__init__()
        self.as_conv = as_conv
        n = 16
        basis = dft_weight(n).T.reshape(-1, 1, n) * torch.hann_window(n)
        self.register_buffer("basis", basis)          # (2F, 1, n): re, im interleaved
        self.head = nn.Conv1d(9, 4, 3)

    def forward(self, x):
        if self.as_conv:
            y = nn.functional.conv1d(x, self.basis, stride=4)       # (B, 2F, T)
            re, im = y[:, 0::2], y[:, 1::2]
            mag = (re ** 2 + im ** 2).sqrt()
        else:
            mag = torch.stft(x[:, 0], 16, 4, window=torch.hann_window(16), center=False,
                             return_complex=True).abs()
        return self.head(mag)


def test_an_stft_magnitude_is_the_graph_of_the_same_spectrogram_written_with_conv1d():
    torch.manual_seed(0)
    net = _Magnitude(False).eval()
    twin = _Magnitude(True).eval()
    twin.head = net.head
    with pytest.warns(Warning, match=r"x \*\* 2 is not non-decreasing"):
        g = SignedGraph.from_module(net, (1, 64), dtype=torch.float64)
    t = SignedGraph.from_module(twin, (1, 64), dtype=torch.float64)
    assert [b.shape for b in g.node_blocks] == [b.shape for b in t.node_blocks]
    # the same explicit matrix: the transform is one convolution with the basis
    np.testing.assert_allclose(g.to_scipy().toarray(), t.to_scipy().toarray(), atol=1e-6)


def test_rfft_of_a_feature_map_read_as_parts():
    class Spectrum(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(1, 2, 3)

        def forward(self, x):
            return torch.view_as_real(torch.fft.rfft(self.c(x), norm="ortho")).flatten(2)

    for capture in ("export", "core"):
        assert_is_jacobian(Spectrum(), (1, 16), capture)


class _Masked(nn.Module):
    """A separation net's output: a mask conv on the STFT's parts, then istft."""

    def __init__(self):
        super().__init__()
        self.mask = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        win = torch.hann_window(16, dtype=x.dtype)
        spec = torch.view_as_real(torch.stft(x[:, 0], 16, 4, window=win, return_complex=True))
        m = self.mask(spec.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        z = nn.functional.pad(torch.view_as_complex(m), (1, 1))    # two zero frames (HDemucs)
        return torch.istft(z, 16, 4, window=win)[:, None]


@pytest.mark.parametrize("capture", ["export", "core"])
def test_an_istft_of_a_networks_parts_is_its_jacobian(capture):
    """The inverse transform (``_fft_c2r``: the Hermitian half counted twice, the
    imaginary parts of frequency 0 and of the Nyquist bin not at all), the
    overlap-add and the window envelope: all fixed linear maps."""
    g = assert_is_jacobian(_Masked(), (1, 64), capture)
    assert g.node_blocks[-1].shape == (1, 72)


def test_irfft_is_its_jacobian():
    class Inverse(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(2, 2, 3, padding=1)

        def forward(self, x):             # x: (B, 2, F) as re, im channels
            z = torch.view_as_complex(self.c(x).transpose(1, 2).contiguous())
            return torch.fft.irfft(z, n=14, norm="ortho")[:, None]

    for capture in ("export", "core"):
        assert_is_jacobian(Inverse(), (2, 8), capture)


def test_a_phase_is_still_refused():
    class Phase(nn.Module):
        def forward(self, x):
            return torch.stft(x[:, 0], 16, window=torch.hann_window(16),
                              return_complex=True).angle()

    with pytest.raises(UnsupportedLayerError, match=r"complex values.*meets 'angle'; a phase"):
        SignedGraph.from_module(Phase(), (1, 64))

    class Squared(nn.Module):         # a complex product: named
        def forward(self, x):
            z = torch.fft.rfft(x)
            return torch.view_as_real(z * z)

    with pytest.raises(UnsupportedLayerError, match=r"complex values.*meets 'mul'"):
        SignedGraph.from_module(Squared(), (1, 16))


class _SummedSpectra(nn.Module):
    """Spectra of two branches added / subtracted: each part adds (they were
    refused as complex arithmetic)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv = nn.Conv1d(1, 1, 3, padding=1)
        self.fc = nn.Linear(18, 3)
        self.register_buffer("m", torch.linspace(-1, 2, 9))

    def forward(self, x):
        z = torch.fft.rfft(x)
        w = torch.fft.rfft(self.conv(x))
        if self.how == "add":
            s = z + w
        elif self.how == "sub":
            s = torch.sub(z.flip(-1), w, alpha=0.5)
        elif self.how == "self":
            s = z + z
        else:                             # a sum of three, one a masked spectrum
            s = (z + w) - self.m * w
        return self.fc(torch.view_as_real(s).flatten(1))


@pytest.mark.parametrize("how", ["add", "sub", "self", "three"])
def test_a_sum_of_spectra_is_its_jacobian(how):
    for capture in ("export", "core"):
        assert_is_jacobian(_SummedSpectra(how), (1, 16), capture)


class _ComplexDFT(nn.Module):
    """DFTs of a complex signal made of real parts (kymatio's torch backend):
    fft / ifft along one or two dimensions, a real filter and a mean between."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.register_buffer("h", torch.linspace(-1, 1, 8))

    def forward(self, x):                      # x (B, 4, 8)
        z = torch.view_as_complex(torch.stack([x, torch.zeros_like(x)], -1))
        if self.how == "fft":
            z = torch.fft.fft(z)
        elif self.how == "ifft-filter":
            z = torch.fft.ifft(torch.fft.fft(z, norm="ortho") * self.h, norm="ortho")
        elif self.how == "fft2":
            z = torch.fft.fft2(z)
        else:                                  # a subsampling in Fourier space
            z = torch.fft.fft(z).reshape(-1, 4, 2, 4).mean(2)
        return torch.view_as_real(z).flatten(1)


@pytest.mark.parametrize("how", ["fft", "ifft-filter", "fft2", "mean"])
def test_a_dft_of_a_complex_signal_is_its_jacobian(how):
    """view_as_complex(stack([x, 0])) then fft was refused ("meets '_fft_c2c'"),
    although it is fft(x), which is read: a complex DFT along any dimensions,
    and a mean of a spectrum, are fixed linear maps of both parts."""
    for capture in ("export", "core"):
        assert_is_jacobian(_ComplexDFT(how), (4, 8), capture)


def test_a_spectrum_plus_a_real_number_is_still_refused():
    class Shifted(nn.Module):         # z + 1 shifts the real part only: not read
        def forward(self, x):
            return torch.view_as_real(torch.fft.rfft(x) + 1.0)

    with pytest.raises(UnsupportedLayerError, match=r"complex values.*meets 'add'"):
        SignedGraph.from_module(Shifted(), (1, 16))


def test_a_negated_spectrum_is_its_jacobian():
    class Negated(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(18, 4)    # (a parameter: the capture runs in its dtype)

        def forward(self, x):
            return self.fc(torch.view_as_real(-torch.fft.rfft(x)).flatten(1))

    for capture in ("export", "core"):
        assert_is_jacobian(Negated(), (16,), capture)


def test_moves_of_a_spectrum_with_dimension_arguments():
    """unsqueeze / squeeze(d) / select / slice of a complex value move to its
    (re, im) form with their dimensions counted from the front."""
    class Moved(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            z = torch.fft.rfft(x)[:, None]                  # (B, 1, F)
            z = z.squeeze(1)[:, 1:].unsqueeze(-1).squeeze(-1)
            return self.fc(torch.view_as_real(z).flatten(1))

    for capture in ("export", "core"):
        assert_is_jacobian(Moved(), (16,), capture)



class _Spectrum(nn.Module):
    """A real DFT as a product with a stored matrix, no parameters (as an
    imported ONNX DFT is): the sample takes the buffer's dtype (a float64 model
    was run on a float32 sample, and refused)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", dft_weight(16))

    def forward(self, x):
        return x.unfold(-1, 16, 4) @ self.w


def test_a_model_without_parameters_is_captured_in_its_buffers_dtype():
    g = assert_is_jacobian(_Spectrum(), (40,))
    assert g.dtype == torch.float64


class _MaskedSpectrum(nn.Module):
    """A separation net's real mask times the complex STFT, then istft: a stored
    mask (a weight), or a sigmoid gate computed from the magnitude."""

    def __init__(self, mask):
        super().__init__()
        self.kind = mask
        self.register_buffer("m", torch.linspace(-1, 2, 9)[:, None])   # per frequency
        self.gate = nn.Conv1d(9, 9, 3, padding=1)

    def forward(self, x):
        win = torch.hann_window(16, dtype=x.dtype)
        z = torch.stft(x[:, 0], 16, 4, window=win, return_complex=True)   # (B, 9, T)
        if self.kind == "weight":
            z = self.m * z.flip(1).roll(2, 2)
        elif self.kind == "gate":
            z = z * torch.sigmoid(self.gate(z.abs()))
        return torch.istft(z, 16, 4, window=win)[:, None]


@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_real_mask_times_a_spectrum_is_its_jacobian(capture):
    """A real tensor times a complex value scales both parts alike; flips and
    rolls along given dimensions are moves (they were refused)."""
    assert_is_jacobian(_MaskedSpectrum("weight"), (1, 64), capture)

    class Rolled(nn.Module):          # a roll of the flattened values: (re, im) pairs move
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(18, 3)

        def forward(self, x):
            return self.fc(torch.view_as_real(torch.fft.rfft(x).roll(1)).flatten(1))

    assert_is_jacobian(Rolled(), (16,), capture)


def test_a_sigmoid_mask_of_a_spectrum_is_a_gate():
    """SPEC §1b: a gate g >= 0 is a positive rescaling: the masked net has the
    graph of the unmasked one, and lists the gate branch as left out."""
    masked, plain = _MaskedSpectrum("gate"), _MaskedSpectrum("none")
    a, b = (SignedGraph.from_module(m, (1, 64), dtype=torch.float64) for m in (masked, plain))
    assert abs(a.to_scipy() - b.to_scipy()).max() < 1e-12 and a.n_edges == b.n_edges > 0
    with pytest.raises(UnsupportedLayerError, match="gate"):
        SignedGraph.from_module(masked, (1, 64), gates="error")


@pytest.mark.parametrize("window", ["buffer", "none"])
def test_a_magnitude_of_an_stft_whose_ops_all_have_rules_is_read(window):
    """torchaudio's Spectrogram holds its window as a buffer: at the level of
    layers every op had a rule (stft's only refused it), so the program was not
    lowered to the _fft_r2c the rewrite reads, and was refused."""

    class Magnitude(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("win", torch.hann_window(32))
            self.head = nn.Conv1d(17, 4, 3)

        def forward(self, x):
            w = self.win if window == "buffer" else None     # (None: a rectangular one)
            return self.head(torch.stft(x, 32, 8, window=w, center=False,
                                        return_complex=True).abs())

    net = Magnitude()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (SignedGraph.from_module(net, (128,), dtype=torch.float64, capture=c)
                for c in ("auto", "core"))
    assert a.n_edges == b.n_edges > 0 and abs(a.to_scipy() - b.to_scipy()).max() < 1e-12


class _SpectralConv(nn.Module):
    """A Fourier neural operator's spectral convolution (Li et al. 2021, and
    neuraloperator's ``SpectralConv``): the real DFT, the lowest modes kept
    and multiplied by fixed complex weights, written into a spectrum of
    zeros, the inverse real DFT.  ``how``: 1-d with ``einsum`` (a batched
    matrix product) or an elementwise product summed, 2-d with ``rfft2`` and
    two blocks of modes (the positive and the negative frequencies of the
    first axis), or a shifted spectrum (``fftshift``, neuraloperator's order)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        g = torch.Generator().manual_seed(0)
        m = (3,) if how in ("einsum", "mul", "mul_dtype") else (3, 3)
        self.w1 = nn.Parameter(torch.randn(2, 3, *m, dtype=torch.complex128, generator=g) / 3)
        self.w2 = nn.Parameter(torch.randn(2, 3, *m, dtype=torch.complex128, generator=g) / 3)

    def forward(self, x):
        if self.how in ("einsum", "mul", "mul_dtype"):
            z = torch.fft.rfft(x)
            out = torch.zeros(x.shape[0], 3, x.shape[-1] // 2 + 1, dtype=z.dtype)
            if self.how == "einsum":
                out[..., :3] = torch.einsum("bix,iox->box", z[..., :3], self.w1)
            elif self.how == "mul":
                out[..., :3] = (z[:, :, None, :3] * self.w1).sum(1)
            else:                        # (TFNO: a sum that names its own dtype)
                out[..., :3] = (z[:, :, None, :3] * self.w1).sum(1, dtype=z.dtype)
            return torch.fft.irfft(out, n=x.shape[-1])
        H, W = x.shape[-2:]
        if self.how == "broadcast":      # a broadcast @ per mode: expand and bmm
            z = torch.fft.rfft2(x)
            w = self.w1.permute(2, 3, 0, 1)                     # (3, 3, C, O)
            out = torch.zeros(x.shape[0], 3, H, W // 2 + 1, dtype=z.dtype)
            kept = z[:, :, :3, :3].permute(0, 2, 3, 1).unsqueeze(-2) @ w   # (B, 3, 3, 1, O)
            out[:, :, :3, :3] = kept.squeeze(-2).permute(0, 3, 1, 2)
            return torch.fft.irfft2(out, s=(H, W))
        if self.how == "shifted":
            z = torch.fft.fftshift(torch.fft.rfftn(x, dim=(-2, -1), norm="forward"), dim=-2)
            out = torch.zeros(x.shape[0], 3, H, W // 2 + 1, dtype=z.dtype)
            c = H // 2
            out[:, :, c - 1:c + 2, :3] = torch.einsum("bixy,ioxy->boxy",
                                                      z[:, :, c - 1:c + 2, :3], self.w1)
            out = torch.fft.ifftshift(out, dim=-2)
            return torch.fft.irfftn(out, s=(H, W), dim=(-2, -1), norm="forward")
        z = torch.fft.rfft2(x, norm="ortho")
        out = torch.zeros(x.shape[0], 3, H, W // 2 + 1, dtype=z.dtype)
        out[:, :, :3, :3] = torch.einsum("bixy,ioxy->boxy", z[:, :, :3, :3], self.w1)
        out[:, :, -3:, :3] = torch.einsum("bixy,ioxy->boxy", z[:, :, -3:, :3], self.w2)
        return torch.fft.irfft2(out, s=(H, W), norm="ortho")


@pytest.mark.parametrize("how", ["einsum", "mul", "mul_dtype", "2d", "shifted", "broadcast"])
def test_a_spectral_convolution_is_its_jacobian(how):
    """A Fourier neural operator's layer was refused ("complex values ... meets
    'bmm'", then 'copy', 'full_like'), although it is a real-linear map of its
    input: a product with fixed complex weights is four real products and two
    sums ((a + ib)(c + id) = (ac - bd) + i(ad + bc)), the truncation a write
    into zeros (a re-indexing), rfft2 / irfft2 the real DFT of the last
    dimension and the complex one of the others.  Only the kept modes of the
    DFT are nodes (the others are read by nothing)."""
    shape = {"einsum": (2, 10), "mul": (2, 9), "mul_dtype": (2, 9)}.get(how, (2, 8, 7))
    g = assert_is_jacobian(_SpectralConv(how), shape)
    if how == "einsum":   # input, 3 kept modes x (re, im) x 2 channels, 2 x 9 products, output
        assert g.n_nodes == 20 + 12 + 18 + 30


def test_a_product_of_spectra_or_with_weights_from_the_input_is_still_refused():
    class Weighted(nn.Module):        # weights computed from the input: not fixed
        def forward(self, x):
            z = torch.fft.rfft(x)
            w = torch.view_as_complex(torch.stack([x[..., :9], x[..., :9]], -1))
            return torch.fft.irfft(z * w, n=16)

    with pytest.raises(UnsupportedLayerError, match=r"complex values.*meets 'mul'"):
        SignedGraph.from_module(Weighted(), (1, 16))


class _WeightFirst(nn.Module):
    """A fixed weight contracted with a value by ``torch.tensordot`` with the
    weight first (tensorly's contractions in neuraloperator's Tucker and CP
    FNOs): ``mm(W, x)``, on a real value or a spectrum."""

    def __init__(self, spectrum):
        super().__init__()
        self.spectrum = spectrum
        g = torch.Generator().manual_seed(0)
        dt = torch.complex128 if spectrum else torch.float64
        self.w = nn.Parameter(torch.randn(3, 2, dtype=dt, generator=g) / 3)

    def forward(self, x):                                  # x: (B, 2, 4, 4)
        if not self.spectrum:
            return torch.tensordot(self.w, x, dims=([1], [1])).permute(1, 0, 2, 3)
        z = torch.fft.rfft2(x)
        y = torch.tensordot(self.w, z, dims=([1], [1])).permute(1, 0, 2, 3)
        return torch.fft.irfft2(y, s=x.shape[-2:])


@pytest.mark.parametrize("spectrum", [False, True])
def test_a_product_with_the_fixed_weight_first_is_its_jacobian(spectrum):
    """``mm(W, x)`` was refused ("the input enters a matrix product from the
    right"), so were neuraloperator's factorized FNOs; it is the dense layer
    W at every column of x."""
    g = assert_is_jacobian(_WeightFirst(spectrum), (2, 4, 4))
    if not spectrum:
        assert g.n_nodes == 32 + 48 and g.n_edges == 2 * 3 * 16
