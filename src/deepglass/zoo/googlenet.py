"""GoogLeNet (Inception v1) in its torchvision and original BVLC forms.

- :class:`GoogLeNet` -- torchvision's ``googlenet``: every convolution is a
  :class:`BasicConv2d` (conv without bias, batch norm with eps 1e-3, ReLU); the
  "5x5" branch of each inception block uses a 3x3 kernel, exactly as torchvision
  has it; max pools use ``ceil_mode=True``; the pool before inception 5a is 2x2;
  adaptive global average pool, dropout 0.2.  The auxiliary classifiers exist
  only with ``aux_logits=True`` and are used only in training mode, so an
  evaluated model has one output.  ``transform_input`` is not applied.
  6,624,904 parameters without the auxiliary heads.
- :class:`GoogLeNetBVLC` -- the network of Szegedy et al. (2015) as trained by
  BVLC Caffe and shipped in MATLAB's Deep Learning Toolbox: convolutions with
  bias and ReLU, no batch norm, local response normalization after pool1 and
  conv2/3x3, true 5x5 convolutions, 3x3 stride-2 max pools with Caffe's ceil
  rounding, 7x7 average pool, dropout 0.4.  6,998,552 parameters.

Both are the two GoogLeNets of paper 000, Table 1.  Both trace with
``torch.fx.symbolic_trace`` in eval mode.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["BasicConv2d", "Inception", "InceptionAux", "GoogLeNet", "GoogLeNetBVLC", "GoogLeNetOutputs"]


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output of :class:`GoogLeNet` with auxiliary heads."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class BasicConv2d(nn.Module):
    """Convolution (no bias) - batch norm (eps 1e-3) - ReLU, as in torchvision."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ConvReLU(nn.Module):
    """Convolution with bias followed by ReLU (a Caffe ``conv`` + ``relu`` pair)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=True, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class Inception(nn.Module):
    """An inception block: four branches concatenated along channels.

    Parameters
    ----------
    in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj : int
        Channel widths, in the order of the GoogLeNet paper's Table 1.
    conv_block : type
        :class:`BasicConv2d` (torchvision) or :class:`ConvReLU` (BVLC).
    kernel5 : int
        Kernel of the "5x5" branch: 3 in torchvision, 5 in the original.
    ceil_mode : bool
        Rounding of the 3x3 stride-1 pool of the pool branch (no effect on the
        output size with padding 1; kept for torchvision's exact modules).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        conv_block: type = BasicConv2d,
        kernel5: int = 3,
        ceil_mode: bool = True,
    ) -> None:
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=kernel5, padding=kernel5 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=ceil_mode),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier (4x4 adaptive pool, 1x1 conv, two FCs)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.avgpool(x))
        x = torch.flatten(x, 1)
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet (module names and shapes identical).

    Parameters
    ----------
    num_classes : int
        Output width of ``fc``.
    aux_logits : bool
        Build ``aux1`` and ``aux2`` (torchvision's default for training).  They
        are evaluated only in training mode, where the output is a
        :class:`GoogLeNetOutputs`; in eval mode the output is the logits tensor.
    dropout : float
        Dropout before ``fc``.
    dropout_aux : float
        Dropout inside the auxiliary heads.
    """

    default_input_shape = (3, 224, 224)

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = False
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        # torchvision: truncated normal (std 0.01, cut at +-2) for conv and linear
        # weights, batch-norm scale 1 and shift 0.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.maxpool2(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        use_aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2 = self.aux2(x) if use_aux else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        if use_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


class GoogLeNetBVLC(nn.Module):
    """The original GoogLeNet (BVLC Caffe / MATLAB ``googlenet``).

    Layers of the BVLC ``deploy.prototxt`` with torchvision-style names:
    ``conv1`` (conv1/7x7_s2), ``maxpool1`` (pool1/3x3_s2), ``lrn1``
    (pool1/norm1), ``conv2`` (conv2/3x3_reduce), ``conv3`` (conv2/3x3),
    ``lrn2`` (conv2/norm2), ``maxpool2`` (pool2/3x3_s2), ``inception3a`` ...
    ``inception5b`` (branch1 = 1x1, branch2 = 3x3_reduce + 3x3, branch3 =
    5x5_reduce + 5x5, branch4 = pool + pool_proj), ``avgpool`` (pool5/7x7_s1),
    ``dropout`` (pool5/drop_7x7_s1, p = 0.4), ``fc`` (loss3/classifier).  Each
    convolution is a :class:`ConvReLU` (``.conv`` with bias, ``.relu``).  The
    auxiliary loss heads of the training prototxt are not part of the deployed
    network.

    Parameters
    ----------
    num_classes : int
        Output width of ``fc``.
    dropout : float
        Dropout before ``fc``.
    """

    default_input_shape = (3, 224, 224)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.4) -> None:
        super().__init__()

        def inception(*widths: int) -> Inception:
            return Inception(*widths, conv_block=ConvReLU, kernel5=5, ceil_mode=True)

        def lrn() -> nn.LocalResponseNorm:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        self.conv1 = ConvReLU(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = ConvReLU(64, 64, kernel_size=1)
        self.conv3 = ConvReLU(64, 192, kernel_size=3, padding=1)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        # BVLC fillers: Caffe's "xavier" (uniform on +-sqrt(3 / fan_in)) for
        # convolutions and the classifier, constant bias 0.2 for convolutions
        # and 0 for the classifier.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.lrn1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.lrn2(x)
        x = self.maxpool2(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.fc(x)
