"""Front end: timm's CNN families captured at their default input sizes (SPEC §1b).

Prints, per model, the capture time (``SignedGraph.from_module``: torch.export,
core-ATen lowering and the symbolic pass), nodes, edges, SE gates left out, and,
with ``--onnx``, the same model exported to ONNX (``torch.onnx.export``,
``dynamo=False``) and read back: its capture time and whether its node and edge
counts equal the PyTorch model's.  Random init; nothing is downloaded.

    python bench/bench_frontend.py [--onnx] [--models vgg16,resnet50,...]

timm is imported through the test-only torchvision shim (tests/timm_shim.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import timm_shim  # noqa: E402

timm_shim.install()
import timm  # noqa: E402
import torch  # noqa: E402

from deepglass.graph import SignedGraph  # noqa: E402

FAMILIES = ["vgg16", "resnet50", "resnext50_32x4d", "densenet121", "inception_v3",
            "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0", "regnetx_002",
            "mnasnet_100", "ghostnet_100", "convnext_tiny", "dla34"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(FAMILIES))
    ap.add_argument("--onnx", action="store_true", help="also export to ONNX and compare")
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    SignedGraph.from_module(torch.nn.Sequential(torch.nn.Linear(2, 2)), (2,))  # warm up export
    built = 0
    names = args.models.split(",")
    for name in names:
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False).eval()
        shape = tuple(m.pretrained_cfg.get("input_size", (3, 224, 224)))
        t0 = time.perf_counter()
        try:
            g = SignedGraph.from_module(m, shape)
        except Exception as exc:  # report and go on
            print(f"{name:24s} {shape}: FAILED {type(exc).__name__}: {str(exc)[:120]}", flush=True)
            continue
        dt = time.perf_counter() - t0
        built += 1
        line = (f"{name:24s} {'x'.join(map(str, shape)):9s} capture {dt:5.1f} s  "
                f"nodes {g.n_nodes:>11,}  edges {g.n_edges:>14,}  "
                f"gates {len(g.meta.get('gates', [])):2d}")
        if args.onnx:
            from deepglass.zoo.onnx_import import load_onnx

            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "m.onnx")
                try:
                    torch.onnx.export(m, torch.zeros((1,) + shape), path, dynamo=False,
                                      opset_version=17)
                    t0 = time.perf_counter()
                    g2 = SignedGraph.from_module(load_onnx(path), shape)
                    dt2 = time.perf_counter() - t0
                    same = (g2.n_nodes, g2.n_edges) == (g.n_nodes, g.n_edges)
                    line += f"  onnx {dt2:5.1f} s {'same counts' if same else 'DIFFERENT'}"
                    if not same:
                        line += f" ({g2.n_nodes:,} / {g2.n_edges:,})"
                except Exception as exc:
                    line += f"  onnx FAILED {type(exc).__name__}: {str(exc)[:100]}"
        print(line, flush=True)
    print(f"{built} of {len(names)} models give a graph")


if __name__ == "__main__":
    main()
