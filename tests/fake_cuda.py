"""An emulated CUDA device for tests: the device code paths checked on the CPU.

CI and most development machines have no GPU, and a GPU is lent rarely and
briefly; a device-placement bug (a tensor made on the CPU and combined with a
device tensor, ``.numpy()`` of a device tensor, a CPU generator driving a device
op) would waste it.  Under :func:`fake_cuda` torch behaves, for placement, as a
build with one CUDA device ``cuda:0``:

* a tensor asked for on ``cuda`` (factories with ``device=``, ``.to("cuda")``,
  ``.cuda()``, ``torch.tensor(..., device=)``, sparse constructors, modules'
  ``.cuda()``) is a :class:`FakeCudaTensor`: a wrapper subclass
  (``torch.Tensor._make_wrapper_subclass``) that reports ``device == cuda:0``
  and holds a real CPU tensor, on which every op runs (``__torch_dispatch__``
  unwraps, checks placement, runs the CPU kernel and wraps the result);
* an op mixing an emulated device tensor with a CPU tensor of one or more
  dimensions raises as CUDA does ("Expected all tensors to be on the same
  device"); 0-dim CPU tensors are allowed (CUDA treats them as scalars), and so
  are CPU index tensors of ``x[idx]`` / ``x[idx] = v`` and the copies
  ``dst.copy_(src)`` across devices, as on CUDA;
* ``.numpy()`` / ``np.asarray`` of a device tensor raise CUDA's TypeError
  ("can't convert cuda:0 device type tensor to numpy"); ``.item()``,
  ``.tolist()`` and ``.cpu()`` work, as on CUDA;
* ``torch.Generator(device="cuda")`` is a CPU generator reporting ``cuda:0``,
  and an op whose generator is on the other device type raises as torch does;
* ``torch.cuda.is_available`` / ``device_count`` / ``synchronize`` / the memory
  queries (``mem_get_info``: a free 140 GiB device; ``memory_allocated`` /
  ``max_memory_allocated``: 0, memory is not emulated) /
  ``get_device_properties`` / ``empty_cache`` answer as one idle device.

In-place ops return the tensor they were called on, views share its storage,
values are the CPU's to the bit.  Not emulated: CUDA's own numerics (cuDNN
algorithms, TF32, atomics' summation order), its random streams (a seeded
device generator draws the CPU's numbers here, not a real GPU's), real memory
limits and the caching allocator, streams and asynchrony, autograd across
``.to("cuda")`` (the copy is a new leaf), in-place metadata changes of a device
tensor (``t_()``, ``resize_()``: refused), several devices, and Ray's GPU
scheduling.

Usage: ``with fake_cuda(): ...`` in a test, or as a runner for a script::

    PYTHONPATH=src python tests/fake_cuda.py bench/bench_gpu.py --side 32 --instances 2
"""

from __future__ import annotations

import contextlib
import runpy
import sys
import threading
import types

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
META = torch.device("meta")
TOTAL_MEMORY = 140 * 2**30          # an H200's order of magnitude
_RealGenerator = torch._C.Generator
aten = torch.ops.aten

NUMPY_MESSAGE = ("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
                 "copy the tensor to host memory first.")

# ops that may take tensors on both devices on CUDA: copies across devices
_CROSS_DEVICE = {aten.copy_.default, aten._copy_from.default,
                 aten._copy_from_and_resize.default, aten._to_copy.default,
                 aten.copy.default}
# advanced indexing of a device tensor accepts CPU index tensors (position of the list)
_INDEX_LIST = {aten.index.Tensor: 1, aten.index_put_.default: 1, aten.index_put.default: 1,
               aten._index_put_impl_.default: 1, aten._unsafe_index.Tensor: 1}
# in-place changes of sizes / strides: the wrapper's metadata would go stale
_METADATA_CHANGES = {aten.resize_.default, aten.set_.source_Tensor, aten.set_.source_Storage,
                     aten.set_.source_Storage_storage_offset, aten.set_.default,
                     aten.resize_as_.default}


def _is_cuda(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True                  # an ordinal names a CUDA device
    return torch.device(device).type == "cuda"


class FakeCudaTensor(torch.Tensor):
    """A tensor that reports ``cuda:0`` and holds a CPU tensor ``elem``."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        if isinstance(elem, FakeCudaTensor):
            return elem
        if elem.device.type != "cpu":
            raise AssertionError(f"an emulated device tensor holds a CPU tensor, not {elem.device}")
        # C++ sees the wrapper on "meta" (whose device guard is a no-op: a CPU-only
        # build has no CUDA guard, which indexing and other bindings construct);
        # Python sees cuda:0 (the properties below), as torch's FakeTensor does
        kw = dict(dtype=elem.dtype, device=META, layout=elem.layout,
                  requires_grad=elem.requires_grad)
        if elem.layout == torch.strided:
            kw.update(strides=elem.stride(), storage_offset=elem.storage_offset())
        r = torch.Tensor._make_wrapper_subclass(cls, elem.shape, **kw)
        r.elem = elem
        return r

    # plain torch functions reach __torch_dispatch__ (no subclass wrapping at that level)
    __torch_function__ = torch._C._disabled_torch_function_impl

    def __deepcopy__(self, memo):
        # torch's deepcopy clones the storage (set_ on a wrapper, which has none
        # of its own); a device tensor's copy is a clone of the held tensor, on
        # the device, a Parameter where the original is one
        if id(self) in memo:
            return memo[id(self)]
        new = FakeCudaTensor(self.elem.detach().clone())
        if isinstance(self, torch.nn.Parameter) or getattr(self, "_is_param", False):
            new = torch.nn.Parameter(new, self.requires_grad)
        memo[id(self)] = new
        return new

    @property
    def device(self):
        return CUDA

    @property
    def is_cuda(self):
        return True

    @property
    def is_cpu(self):
        return False

    @property
    def is_meta(self):
        return False

    @property
    def layout(self):
        return self.elem.layout          # a CSR wrapper has no layout of its own

    @property
    def is_sparse_csr(self):
        return self.elem.is_sparse_csr

    def get_device(self):
        return 0

    def data_ptr(self):
        # the held tensor's address: caches keyed by data_ptr() (deepglass's
        # blocks) tell tensors apart as on a device (the meta wrapper's is 0)
        return self.elem.data_ptr()

    def __repr__(self, *, tensor_contents=None):
        return f"FakeCuda({self.elem!r}, device='cuda:0')"

    def numpy(self, *args, **kwargs):      # outside the mode too
        raise TypeError(NUMPY_MESSAGE)

    def __array__(self, *args, **kwargs):
        raise TypeError(NUMPY_MESSAGE)

    @classmethod
    def __torch_dispatch__(cls, func, types_, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _tensors(tree) -> list[torch.Tensor]:
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]


def _mix_error(func) -> RuntimeError:
    return RuntimeError("Expected all tensors to be on the same device, but found at least two "
                        f"devices, cuda:0 and cpu! (emulated CUDA, in {func})")


class _Unwrapped:
    """One op's arguments with the wrappers replaced by their CPU tensors (one
    pass: aten arguments nest tensors at most in a list), recording which
    device each tensor argument is on."""

    __slots__ = ("originals", "device", "cpu", "index_device")

    def __init__(self):
        self.originals = {}           # id(CPU tensor) -> the caller's tensor
        self.device = False           # a device tensor among the arguments
        self.cpu = False              # a CPU tensor of dim >= 1 among them
        self.index_device = False     # a device tensor among exempt index lists

    def one(self, x, exempt=False):
        if isinstance(x, FakeCudaTensor):
            if exempt:
                self.index_device = True
            else:
                self.device = True
            self.originals[id(x.elem)] = x
            return x.elem
        if isinstance(x, torch.Tensor):
            if not exempt and x.dim() > 0:
                self.cpu = True
            self.originals[id(x)] = x
            return x
        if isinstance(x, (list, tuple)):
            return type(x)([self.one(y, exempt) for y in x])
        return x


class _OpInfo:
    __slots__ = ("cross", "index", "metadata")

    def __init__(self, func):
        self.cross = func in _CROSS_DEVICE
        self.index = _INDEX_LIST.get(func, -1)
        self.metadata = func in _METADATA_CHANGES or torch.Tag.inplace_view in func.tags


_INFO: dict = {}


def _run(func, args, kwargs):
    """One aten op with emulated device tensors among its arguments: placement
    checked as CUDA checks it, the CPU kernel run on the held tensors, new
    results wrapped, in-place results returned as the caller's tensors."""
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = _OpInfo(func)
    if info.metadata and isinstance(args[0], FakeCudaTensor):
        raise NotImplementedError(f"emulated CUDA: in-place metadata change {func} of a "
                                  "device tensor is not emulated")
    u = _Unwrapped()
    a = tuple(u.one(x, i == info.index) for i, x in enumerate(args))
    k = {key: u.one(x) for key, x in kwargs.items()} if kwargs else {}
    if not info.cross:
        if u.device and u.cpu:
            raise _mix_error(func)
        if u.index_device and not isinstance(args[0], FakeCudaTensor):
            # CPU indices are moved to the device; device indices into a CPU tensor are not
            raise RuntimeError("indices should be either on cpu or on the same device as the "
                               f"indexed tensor (cpu) (emulated CUDA, in {func})")
    device = kwargs.get("device")
    if device is not None:
        kind = torch.device(device).type
        # meta: options that C++ took from a wrapper
        to_device = kind in ("cuda", "meta")
        k["device"] = CPU
    else:
        to_device = u.device or u.index_device
    out = func(*a, **k)
    originals = u.originals

    def wrap(x):
        if isinstance(x, torch.Tensor):
            orig = originals.get(id(x))
            if orig is not None:
                # in place / out=: the caller's own tensor, as torch returns it
                if isinstance(orig, FakeCudaTensor) and orig.shape != x.shape:
                    raise NotImplementedError(f"emulated CUDA: {func} resized a device tensor")
                return orig
            return FakeCudaTensor(x) if to_device else x
        if isinstance(x, (list, tuple)):
            return type(x)([wrap(y) for y in x])
        return x

    return wrap(out)


def _wrap_new(out, sources):
    """Results of a factory / copy rewritten to the CPU, as device tensors (a
    result that is one of the sources, or shares its storage, is copied: a
    transfer to the device never aliases host memory)."""
    ptrs = {t.untyped_storage().data_ptr() for t in _tensors(sources)
            if t.layout == torch.strided and not isinstance(t, FakeCudaTensor)}

    def wrap(x):
        if not isinstance(x, torch.Tensor) or isinstance(x, FakeCudaTensor):
            return x
        if x.layout == torch.strided and x.untyped_storage().data_ptr() in ptrs:
            x = x.clone()
        return FakeCudaTensor(x.detach())

    return tree_map(wrap, out)


def _op_is_cuda(args, kwargs) -> bool:
    if "device" in kwargs and kwargs["device"] is not None:
        return _is_cuda(kwargs["device"])
    return any(isinstance(t, FakeCudaTensor) for t in _tensors((args, kwargs)))


_SPECIAL = {torch.Tensor.numpy, torch.Tensor.__array__, torch.Tensor.tolist,
            torch.Tensor.cuda, torch.Tensor.to}


class _FunctionMode(TorchFunctionMode):
    """Device placement at the Python API: ``device="cuda"`` is rewritten to the
    CPU and the result wrapped, before torch would ask for a CUDA runtime."""

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        if not kwargs and func not in _SPECIAL:
            return func(*args)          # the common case, kept cheap
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and isinstance(
                args[0], FakeCudaTensor):
            raise TypeError(NUMPY_MESSAGE)
        if func is torch.Tensor.tolist and isinstance(args[0], FakeCudaTensor):
            return args[0].cpu().tolist()       # a copy to the host, as CUDA's tolist
        gen = kwargs.get("generator")
        if gen is not None:
            want = "cuda" if _op_is_cuda(args, kwargs) else "cpu"
            if gen.device.type != want:
                raise RuntimeError(f"Expected a '{want}' device type for generator but found "
                                   f"'{gen.device.type}' (emulated CUDA, in {func})")
        if func is torch.Tensor.cuda:
            t = args[0]
            return t if isinstance(t, FakeCudaTensor) else _wrap_new(t.detach().clone(), ())
        if func is torch.Tensor.to:
            return _to(args, kwargs)
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "meta":
            _PYTHON_META.active = True
            try:
                return func(*args, **kwargs)
            finally:
                _PYTHON_META.active = False
        if device is not None and _is_cuda(device):
            if any(isinstance(t, FakeCudaTensor) for t in _tensors(args)):
                del kwargs["device"]          # follows its device inputs
                return func(*args, **kwargs)
            kwargs["device"] = CPU
            return _wrap_new(func(*args, **kwargs), (args, kwargs))
        return func(*args, **kwargs)


def _to(args, kwargs):
    t, rest = args[0], args[1:]
    copy = kwargs.pop("copy", False)
    device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **kwargs)
    if any(isinstance(x, FakeCudaTensor) for x in (*rest, kwargs.get("other"))):
        device = CUDA                # .to(other): C++ reads the wrapper's meta device
    if device is None or device.type != "cuda":
        kw = {"copy": copy, "non_blocking": non_blocking}
        if memory_format is not None:
            kw["memory_format"] = memory_format
        return t.to(device=device, dtype=dtype, **kw) if device is not None else \
            t.to(dtype=dtype or t.dtype, **kw)
    kw = {} if memory_format is None else {"memory_format": memory_format}
    if isinstance(t, FakeCudaTensor):
        return t.to(dtype=dtype or t.dtype, copy=copy, **kw)
    return _wrap_new(t.detach().to(dtype=dtype or t.dtype, copy=True, **kw), ())


class _DispatchMode(TorchDispatchMode):
    """Below the Python API: an aten factory that torch's C++ asks for on
    ``cuda``, or on ``meta`` with a wrapper's options (``x[0] = 5`` makes its
    scalar with ``x``'s options), makes an emulated device tensor.  Meta
    tensors asked for in Python (``device="meta"``) stay meta."""

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        device = kwargs.get("device") if kwargs else None
        if device is not None and not any(
                isinstance(t, FakeCudaTensor) for t in _tensors((args, kwargs))):
            kind = torch.device(device).type
            if kind == "cuda" or (kind == "meta" and not _PYTHON_META.active):
                return _run(func, args, kwargs)
        return func(*args, **kwargs)


class _PythonMeta(threading.local):
    active = False


_PYTHON_META = _PythonMeta()


class FakeCudaGenerator(_RealGenerator):
    """A CPU generator that reports ``cuda:0`` (ops run on the CPU here)."""

    @property
    def device(self):
        return CUDA


class _GeneratorMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, _RealGenerator)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _RealGenerator)


class _Generator(metaclass=_GeneratorMeta):
    """``torch.Generator`` under the emulation: ``device="cuda"`` gives a
    :class:`FakeCudaGenerator`."""

    def __new__(cls, device="cpu"):
        if _is_cuda(device):
            return FakeCudaGenerator()
        return _RealGenerator(device)


def _host_export(export):
    """``torch.export.export`` of a module on the emulated device: the exporter
    cannot trace through the wrapper, so the module is exported with its
    parameters, buffers and inputs' CPU tensors in place (the program's graph
    is the same: placement is not part of it) and the exported program's
    state is put back on the device."""

    def host(mod, args, kwargs=None, **kw):
        device_of = {}                    # id(host tensor) -> the module's device tensor
        swapped = []
        for m in mod.modules():
            for table in (m._parameters, m._buffers):
                for key, t in table.items():
                    if isinstance(t, FakeCudaTensor):
                        host_t = t.elem
                        if isinstance(t, torch.nn.Parameter):
                            host_t = torch.nn.Parameter(host_t, t.requires_grad)
                        swapped.append((table, key, t))
                        device_of[id(host_t)] = t
                        table[key] = host_t
        unwrap = (lambda x: x.elem if isinstance(x, FakeCudaTensor) else x)
        try:
            ep = export(mod, tree_map(unwrap, args), kwargs=tree_map(unwrap, kwargs), **kw)
            for table in (ep._state_dict, ep._constants):
                for key, t in table.items():
                    if id(t) in device_of:
                        table[key] = device_of[id(t)]
        finally:
            for table, key, t in swapped:
                table[key] = t
        return ep

    return host


def _properties(device=None):
    return types.SimpleNamespace(name="emulated CUDA (CPU)", total_memory=TOTAL_MEMORY,
                                 major=9, minor=0, multi_processor_count=132)


def _cuda_patches() -> dict:
    return {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "set_device": lambda device: None,
        "synchronize": lambda device=None: None,
        "empty_cache": lambda: None,
        "_lazy_init": lambda: None,
        # memory is not emulated: an idle device, nothing allocated
        "reset_peak_memory_stats": lambda device=None: None,
        "reset_max_memory_allocated": lambda device=None: None,
        "max_memory_allocated": lambda device=None: 0,
        "memory_allocated": lambda device=None: 0,
        "max_memory_reserved": lambda device=None: 0,
        "memory_reserved": lambda device=None: 0,
        "mem_get_info": lambda device=None: (TOTAL_MEMORY, TOTAL_MEMORY),
        "get_device_properties": _properties,
        "get_device_name": lambda device=None: _properties().name,
        "get_device_capability": lambda device=None: (9, 0),
    }


@contextlib.contextmanager
def fake_cuda():
    """Emulate one CUDA device (``cuda:0``) on the CPU inside the block; every
    patch is undone on exit."""
    saved = {name: getattr(torch.cuda, name) for name in _cuda_patches()}
    saved_generator = torch.Generator
    saved_export = torch.export.export
    try:
        for name, fn in _cuda_patches().items():
            setattr(torch.cuda, name, fn)
        torch.Generator = _Generator
        torch.export.export = _host_export(saved_export)
        with _FunctionMode(), _DispatchMode():
            yield
    finally:
        for name, fn in saved.items():
            setattr(torch.cuda, name, fn)
        torch.Generator = saved_generator
        torch.export.export = saved_export


def main(argv: list[str]) -> None:
    """``python tests/fake_cuda.py SCRIPT ARGS...``: run SCRIPT as ``__main__``
    under the emulation."""
    if not argv:
        raise SystemExit("usage: python tests/fake_cuda.py SCRIPT [ARGS...]")
    sys.argv = list(argv)
    with fake_cuda():
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
