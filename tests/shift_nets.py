"""Small networks whose layers read zero padding inside their input (per-channel shifts),
shared by the graph, solver and null-model tests."""

import torch
from torch import nn


class ChannelShift(nn.Module):
    """A convolution reading a value and its copy shifted down by two rows (``F.pad`` then a
    crop), concatenated over channels: the shifted-in zeros are a border of some channels only."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(6, 2, 3)

    def forward(self, x):
        u = torch.relu(self.c1(x))
        return self.c2(torch.cat([u, nn.functional.pad(u, (0, 0, 2, 0))[:, :, :-2]], 1))
