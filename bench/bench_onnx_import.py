"""ONNX importer figures on timm's CNNs.  Prints, per model exported with
``torch.onnx.export(dynamo=False)`` at its input size (random init):

- ONNX node count, seconds of ``load_onnx`` (the first model's figure includes
  PyTorch's one-time set-up of its meta kernels, which ``torch.export`` needs
  anyway), the largest output difference from timm at batch 2, relative to
  ``max(1, |output|)`` (random-init nets without trained norms reach 1e14);
- with ``--export``: seconds of ``torch.export.export(strict=False)`` +
  ``run_decompositions()`` on the imported module and its distinct core-ATen ops;
- with ``--dynamo``: the file written by torch's default exporter instead
  (``torch.onnx.export(..., dynamo=True)`` at its default opset, batch 1, as a
  user who calls ``torch.onnx.export(model, x)`` gets it), over 40 CNN families
  (:data:`DYNAMO_MODELS`, at ``--size 64`` by default); the difference is still
  at batch 2, and ``per-sample`` says whether the file is right at batch 1 only
  (its graph then runs once per sample: ``batch_one_only``).

Needs timm (imported through the test-only torchvision shim tests/timm_shim.py).

Run:  python bench/bench_onnx_import.py [--size 224] [--opset 17] [--export] [--models densenet121,...]
      python bench/bench_onnx_import.py --dynamo [--size 64] [--models ...]
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
#: what torch's ONNX exporters log while they run (their progress lines and warnings)
ONNX_LOGGERS = ("torch.onnx", "torch.export", "onnxscript")
#: one small member of each of 40 CNN families (residual, grouped, split-attention,
#: dense, aggregation, dual-path, VGG / RepVGG, mobile and NAS nets, GhostNet V1/V2,
#: HRNet, ConvNeXt V1/V2, MetaFormers, filter response norm, normalizer-free, ...)
DYNAMO_MODELS = (
    "resnet18", "resnet26d", "resnext26ts", "seresnext26d_32x4d", "resnest14d", "res2net50_14w_8s",
    "regnetx_002", "regnety_002", "densenet121", "dla34", "dla46_c", "dpn48b", "vgg11", "repvgg_a0",
    "mobilenetv2_050", "mobilenetv3_small_050", "efficientnet_b0", "efficientnet_lite0",
    "mnasnet_small", "ghostnet_050", "ghostnetv2_100", "hrnet_w18_small", "convnext_atto",
    "convnextv2_atto", "rexnet_100", "lcnet_050", "hardcorenas_a", "tinynet_e", "fbnetc_100",
    "spnasnet_100", "mixnet_s", "selecsls42b", "ese_vovnet19b_dw", "poolformer_s12", "convformer_s18",
    "resnetv2_50d_frn", "nf_resnet26", "mobileone_s0", "fastvit_t8", "cs3darknet_focus_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="input side (default 224; 64 with --dynamo)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--dynamo", action="store_true", help="files of torch's default (dynamo) exporter")
    ap.add_argument("--models", default=None)
    args = ap.parse_args()
    args.size = args.size or (64 if args.dynamo else 224)
    args.models = args.models or ",".join(DYNAMO_MODELS if args.dynamo else MODELS)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import onnx
    import timm_shim

    timm_shim.install()
    import timm

    from deepglass.errors import DeepglassError
    from deepglass.graph.aten import quiet_exporter
    from deepglass.zoo.onnx_import import load_onnx

    print(f"torch {torch.__version__}, onnx {onnx.__version__}, timm {timm.__version__}, "
          f"{torch.get_num_threads()} thread(s), input 3x{args.size}x{args.size}, "
          + ("torch.onnx.export(dynamo=True) at its default opset, batch 1" if args.dynamo
             else f"opset {args.opset}"))
    print(f"{'model':24s} {'nodes':>6s} {'import s':>9s} {'max|diff|':>10s}"
          + (f" {'per-sample':>10s}" if args.dynamo else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False).eval()
            x = torch.randn(2, 3, args.size, args.size)
            path = Path(tmp) / f"{name}.onnx"
            with warnings.catch_warnings(), quiet_exporter(ONNX_LOGGERS, stdout=True):
                warnings.simplefilter("ignore")
                if args.dynamo:
                    torch.onnx.export(model, (x[:1],), str(path), dynamo=True, verbose=False)
                else:
                    torch.onnx.export(model, (x[:1],), str(path), dynamo=False, opset_version=args.opset)
            nodes = len(onnx.load(str(path)).graph.node)
            t0 = time.perf_counter()
            try:
                module = load_onnx(path)
            except DeepglassError as exc:
                print(f"{name:24s} {nodes:6d} refused: {str(exc)[:100]}", flush=True)
                continue
            t1 = time.perf_counter()
            with torch.no_grad():
                want = model(x)
                diff = (module(x) - want).abs().max().item() / max(1.0, want.abs().max().item())
            line = f"{name:24s} {nodes:6d} {t1 - t0:9.2f} {diff:10.1e}"
            if args.dynamo:
                line += f" {'yes' if module.batch_one_only else 'no':>10s}"
            if args.export:
                t0 = time.perf_counter()
                ep = torch.export.export(module, (x[:1],), strict=False).run_decompositions()
                ops = sorted({str(n.target).removeprefix("aten.") for n in ep.graph.nodes if n.op == "call_function"})
                line += f"  export {time.perf_counter() - t0:.1f} s: {', '.join(ops)}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
