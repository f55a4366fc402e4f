"""ShuffleNet v1 (Zhang et al. 2018) and ShuffleNet v2 (Ma et al. 2018).

Channel shuffle with ``g`` groups reorders the channels of a tensor so that the
``j``-th channel of output group ``i`` is the ``i``-th channel of input group
``j``; it is written as ``view -> transpose -> view``, which
``torch.fx.symbolic_trace`` records as three tensor methods (paper 000, SI D.1:
the rows of the preceding weight matrix are permuted accordingly).

- :class:`ShuffleNetV1` -- the ShuffleNet 1x of Zhang et al., Table 1, with
  ``groups = 3`` by default: 3x3 stride-2 stem (24 channels), 3x3 max pool,
  three stages of shuffle units with output widths 240 / 480 / 960 (g = 3) and
  4 / 8 / 4 units, global average pool and a linear classifier.  A unit is
  1x1 group conv - BN - ReLU - channel shuffle - 3x3 depthwise conv (stride
  1 or 2) - BN - 1x1 group conv - BN, added to the input (stride 1) or
  concatenated with a 3x3 stride-2 average pool of the input (stride 2), then
  ReLU.  The bottleneck width is a quarter of the unit's output width, and the
  first 1x1 convolution of stage 2 is not grouped (its input has only 24
  channels), both as in the paper.  torchvision has no ShuffleNet v1, so the
  module names are this package's own.
- :class:`ShuffleNetV2` -- torchvision's ``shufflenet_v2_x1_0`` (module names
  and shapes identical; 2,278,604 parameters at width 1.0).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["channel_shuffle", "ChannelShuffle", "ShuffleUnit", "ShuffleNetV1", "InvertedResidual", "ShuffleNetV2"]

#: output widths of ShuffleNet 1x stages 2-4 for each number of groups (paper Table 1)
V1_STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Shuffle the channels of a 4-d tensor across ``groups`` groups (view/transpose/view)."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ChannelShuffle(nn.Module):
    """Module wrapper of :func:`channel_shuffle` (no parameters)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """One ShuffleNet v1 unit (paper Fig. 2b for stride 1, Fig. 2c for stride 2).

    Parameters
    ----------
    in_channels, out_channels : int
        Unit input and output widths.  For stride 2 the residual branch outputs
        ``out_channels - in_channels`` channels, concatenated with the pooled input.
    groups : int
        Groups of the 1x1 convolutions and of the channel shuffle.
    stride : {1, 2}
        Stride of the depthwise convolution.
    first_grouped : bool
        Whether the first 1x1 convolution is grouped (False only for the first
        unit of stage 2).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, first_grouped: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.stride = stride
        mid = out_channels // 4
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 shuffle unit needs in_channels == out_channels")
        g1 = groups if first_grouped else 1
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=1, groups=g1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            ChannelShuffle(groups),
            nn.Conv2d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, branch_out, kernel_size=1, groups=groups, bias=False),
            nn.BatchNorm2d(branch_out),
        )
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return self.relu(x + self.branch(x))
        return self.relu(torch.cat([self.shortcut(x), self.branch(x)], 1))


class ShuffleNetV1(nn.Module):
    """ShuffleNet 1x (Zhang et al. 2018, Table 1).

    Parameters
    ----------
    groups : {1, 2, 3, 4, 8}
        Number of groups of the pointwise convolutions (3 by default).
    num_classes : int
        Output width of ``fc``.
    stages_repeats : sequence of int
        Units per stage (4, 8, 4).
    """

    default_input_shape = (3, 224, 224)

    def __init__(self, groups: int = 3, num_classes: int = 1000, stages_repeats=(4, 8, 4)) -> None:
        super().__init__()
        if groups not in V1_STAGE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(V1_STAGE_CHANNELS)}")
        self.groups = groups
        stem = 24
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem
        for i, (repeats, out_channels) in enumerate(zip(stages_repeats, V1_STAGE_CHANNELS[groups]), start=2):
            units = [ShuffleUnit(in_channels, out_channels, groups, stride=2, first_grouped=(i != 2))]
            units += [ShuffleUnit(out_channels, out_channels, groups, stride=1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            in_channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _depthwise_conv(i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)


class InvertedResidual(nn.Module):
    """torchvision's ShuffleNet v2 unit (channel split, two branches, shuffle)."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError("invalid combination of stride, inp and oup")
        if self.stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise_conv(inp, inp, kernel_size=3, stride=self.stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if self.stride > 1 else branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(),
            _depthwise_conv(branch_features, branch_features, kernel_size=3, stride=self.stride, padding=1),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """torchvision's ShuffleNet v2.

    Parameters
    ----------
    stages_repeats : sequence of 3 int
        Units per stage ((4, 8, 4)).
    stages_out_channels : sequence of 5 int
        Widths of conv1, the three stages and conv5 ((24, 116, 232, 464, 1024) at 1.0x).
    num_classes : int
        Output width of ``fc``.
    """

    default_input_shape = (3, 224, 224)

    def __init__(self, stages_repeats=(4, 8, 4), stages_out_channels=(24, 116, 232, 464, 1024), num_classes: int = 1000) -> None:
        super().__init__()
        if len(stages_repeats) != 3 or len(stages_out_channels) != 5:
            raise ValueError("expected 3 stage repeats and 5 stage widths")
        self._stage_out_channels = list(stages_out_channels)
        input_channels = 3
        output_channels = self._stage_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, output_channels in zip(("stage2", "stage3", "stage4"), stages_repeats, self._stage_out_channels[1:]):
            seq = [InvertedResidual(input_channels, output_channels, 2)]
            seq += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = self._stage_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global average pool
        return self.fc(x)
