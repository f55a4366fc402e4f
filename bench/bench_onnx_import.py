"""ONNX importer figures on timm's CNNs.  Prints, per model exported with
``torch.onnx.export(dynamo=False)`` at its input size (random init):

- ONNX node count, seconds of ``load_onnx`` (the first model's figure includes
  PyTorch's one-time set-up of its meta kernels, which ``torch.export`` needs
  anyway), the largest output difference from timm at batch 2;
- with ``--export``: seconds of ``torch.export.export(strict=False)`` +
  ``run_decompositions()`` on the imported module and its distinct core-ATen ops.

Needs timm (imported through the test-only torchvision shim tests/timm_shim.py).

Run:  python bench/bench_onnx_import.py [--size 224] [--opset 17] [--export] [--models densenet121,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

MODELS = ("densenet121", "resnet18", "mobilenetv2_100", "mobilenetv3_small_100", "efficientnet_b0",
          "convnext_atto", "ghostnet_100", "regnetx_002", "mnasnet_small")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import onnx
    import timm_shim

    timm_shim.install()
    import timm

    from deepglass.zoo.onnx_import import load_onnx

    print(f"torch {torch.__version__}, onnx {onnx.__version__}, timm {timm.__version__}, "
          f"{torch.get_num_threads()} thread(s), input 3x{args.size}x{args.size}, opset {args.opset}")
    print(f"{'model':24s} {'nodes':>6s} {'import s':>9s} {'max|diff|':>10s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False).eval()
            x = torch.randn(2, 3, args.size, args.size)
            path = Path(tmp) / f"{name}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x[:1],), str(path), dynamo=False, opset_version=args.opset)
            nodes = len(onnx.load(str(path)).graph.node)
            t0 = time.perf_counter()
            module = load_onnx(path)
            t1 = time.perf_counter()
            with torch.no_grad():
                diff = (module(x) - model(x)).abs().max().item()
            line = f"{name:24s} {nodes:6d} {t1 - t0:9.2f} {diff:10.1e}"
            if args.export:
                t0 = time.perf_counter()
                ep = torch.export.export(module, (x[:1],), strict=False).run_decompositions()
                ops = sorted({str(n.target).removeprefix("aten.") for n in ep.graph.nodes if n.op == "call_function"})
                line += f"  export {time.perf_counter() - t0:.1f} s: {', '.join(ops)}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
