"""Placeholder torchvision modules so that timm's model code imports without torchvision."""
import sys, types, enum

class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name)

def _placeholder(name):
    return _Meta(name, (), {"__init__": lambda self, *a, **k: (_ for _ in ()).throw(
        RuntimeError(f"torchvision placeholder {name} used"))})

class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = f"{self.__name__}.{name}"
        if sub in sys.modules:
            return sys.modules[sub]
        return _placeholder(name)

def install():
    try:
        import torchvision  # noqa
        return False
    except Exception:
        pass
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]
    for name in ["torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
                 "torchvision.transforms.functional", "torchvision.datasets", "torchvision.utils",
                 "torchvision.models", "torchvision.models.feature_extraction"]:
        m = _Module(name)
        m.__path__ = []
        sys.modules[name] = m
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, m)
    import torch.nn as nn
    class FrozenBatchNorm2d(nn.Module):
        def __init__(self, *a, **k):
            raise RuntimeError("torchvision placeholder FrozenBatchNorm2d used")
    sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d
    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"; NEAREST_EXACT = "nearest-exact"; BILINEAR = "bilinear"; BICUBIC = "bicubic"; BOX = "box"; HAMMING = "hamming"; LANCZOS = "lanczos"
    sys.modules["torchvision.transforms.functional"].InterpolationMode = InterpolationMode
    sys.modules["torchvision"].__version__ = "0.0.0+placeholder"
    return True
