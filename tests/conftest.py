"""Test-wide settings."""

import os

import torch

# One intra-op thread: the tests run many tiny kernels, which lose far more to
# thread synchronization than they gain (badly so on a busy 2-core machine).
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
