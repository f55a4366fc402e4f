"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016), torchvision's modules.

Fire modules (1x1 squeeze, then 1x1 and 3x3 expands concatenated along
channels), max pools with ``ceil_mode=True``, a final 1x1 convolution to the
class scores followed by ReLU and a global adaptive average pool.  Module names
and shapes equal torchvision's ``squeezenet1_0`` / ``squeezenet1_1``
(1,248,424 and 1,235,496 parameters).  SqueezeNet 1.1 is MATLAB's
``squeezenet`` (paper 000, Table 1), whose input is 3x227x227; 1.0 keeps
torchvision's 3x224x224.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Fire", "SqueezeNet"]


class Fire(nn.Module):
    """A fire module: squeeze 1x1 + ReLU, then [expand 1x1 + ReLU, expand 3x3 + ReLU]."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet.

    Parameters
    ----------
    version : {"1_0", "1_1"}
        Architecture version.
    num_classes : int
        Number of output channels of the final 1x1 convolution.
    dropout : float
        Dropout before the final convolution.
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(512, 64, 256, 256),
            )
            self.default_input_shape = (3, 224, 224)
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
            self.default_input_shape = (3, 227, 227)
        else:
            raise ValueError(f"unsupported SqueezeNet version {version!r}: 1_0 or 1_1 expected")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1))
        )
        # torchvision: final conv N(0, 0.01), others Kaiming uniform, biases 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)
