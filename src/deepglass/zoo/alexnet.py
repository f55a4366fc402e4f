"""AlexNet in its two published forms.

- :class:`AlexNet` -- the torchvision variant (``torchvision.models.alexnet``):
  64-192-384-256-256 filters, no local response normalization, no grouped
  convolutions, an adaptive 6x6 average pool, 3x224x224 input.  Module names and
  parameter shapes equal torchvision's, so a torchvision state dict loads with
  ``strict=True``.  61,100,840 parameters.
- :class:`AlexNetCaffe` -- the original network of Krizhevsky, Sutskever and
  Hinton (2012) as distributed by BVLC Caffe and MATLAB's Deep Learning Toolbox:
  96-256-384-384-256 filters, local response normalization after the first two
  convolutions, two groups in conv2, conv4 and conv5, 3x227x227 input.
  60,965,224 parameters.

Both are the networks of paper 000, Table 1 ("AlexNet (PyTorch)" and
"AlexNet").  Neither has data-dependent control flow, so both trace with
``torch.fx.symbolic_trace``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AlexNet", "AlexNetCaffe"]


class AlexNet(nn.Module):
    """torchvision's AlexNet (``features`` / ``avgpool`` / ``classifier``).

    Parameters
    ----------
    num_classes : int
        Output width of the last linear layer (1000 for ImageNet).
    dropout : float
        Dropout probability of the two dropout layers (identity in eval mode).
    """

    default_input_shape = (3, 224, 224)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )
        # torchvision keeps PyTorch's default (Kaiming-uniform) initialization.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class AlexNetCaffe(nn.Module):
    """The original (BVLC / MATLAB) AlexNet for 3x227x227 input.

    Layer order as in the BVLC ``deploy.prototxt``: conv1 - relu1 - norm1 -
    pool1 - conv2 (2 groups) - relu2 - norm2 - pool2 - conv3 - relu3 - conv4
    (2 groups) - relu4 - conv5 (2 groups) - relu5 - pool5 - fc6 - relu6 - drop6
    - fc7 - relu7 - drop7 - fc8.  Local response normalization: size 5,
    alpha 1e-4, beta 0.75, k 1 (Caffe and PyTorch both divide alpha by the
    size).  Module names follow torchvision's convention (``features.i``,
    ``classifier.i``); Caffe's ``conv1`` is ``features.0``, ``conv2`` is
    ``features.4``, ``conv3`` ``features.8``, ``conv4`` ``features.10``,
    ``conv5`` ``features.12``, ``fc6/fc7/fc8`` are ``classifier.0/3/6``.

    Parameters
    ----------
    num_classes : int
        Output width of fc8.
    dropout : float
        Dropout probability of drop6 and drop7.
    """

    default_input_shape = (3, 227, 227)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        # BVLC train_val.prototxt fillers: Gaussian weights, std 0.01 (fc6 and
        # fc7: 0.005); bias 0.1 for conv2, conv4, conv5, fc6, fc7, else 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.005 if m.out_features == 4096 else 0.01)
                nn.init.zeros_(m.bias)
        for idx in (4, 10, 12):
            nn.init.constant_(self.features[idx].bias, 0.1)
        for idx in (0, 3):
            nn.init.constant_(self.classifier[idx].bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
