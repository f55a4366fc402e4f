"""Front end on MONAI's medical-imaging networks (2D and 3D): capture and ONNX.

MONAI (``pip install --no-deps monai``: it needs only torch and NumPy) builds
segmentation and classification nets from 3D convolutions, instance / batch /
group norms, PReLU, transposed convolutions, trilinear upsampling, attention
gates and squeeze-excitation.  Prints, per network (random init, small inputs;
nothing is downloaded): capture time, nodes, edges and gates left out; with
``--onnx`` the same net exported to ONNX (``dynamo=False``, batch norms kept)
and read back: equal node and edge counts, the sum of |weights| of both graphs
and the imported module's largest output difference (relative) at batch 2;
with ``--solve`` the frustration of each graph below 100 M edges (descent,
4 replicas, to local minima).

    pip install --no-deps monai
    python bench/bench_monai.py [--onnx] [--solve] [--models UNet3d,VNet3d,...]
"""

from __future__ import annotations

import argparse
import io
import time
import warnings

import torch

import deepglass
from deepglass.graph import SignedGraph

try:
    from monai.networks import nets
except ImportError:
    raise SystemExit("bench_monai needs MONAI: pip install --no-deps monai") from None

#: name: (constructor, input shape without the batch axis)
NETS = {
    "UNet2d": (lambda: nets.UNet(2, 1, 2, (8, 16, 32, 64), (2, 2, 2), num_res_units=2), (1, 64, 64)),
    "UNet3d": (lambda: nets.UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=1), (1, 32, 32, 32)),
    "BasicUNet2d": (lambda: nets.BasicUNet(2, 1, 2, features=(8, 8, 16, 32, 64, 8)), (1, 64, 64)),
    "BasicUNet3d": (lambda: nets.BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4)), (1, 32, 32, 32)),
    "SegResNet2d": (lambda: nets.SegResNet(2, init_filters=8, in_channels=1, out_channels=2), (1, 64, 64)),
    "SegResNet3d": (lambda: nets.SegResNet(3, init_filters=8, in_channels=1, out_channels=2), (1, 32, 32, 32)),
    "AttentionUnet2d": (lambda: nets.AttentionUnet(2, 1, 2, (8, 16, 32), (2, 2)), (1, 64, 64)),
    "DynUNet2d": (lambda: nets.DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2]), (1, 64, 64)),
    "VNet3d": (lambda: nets.VNet(3, 1, 2), (1, 32, 32, 32)),
    "HighResNet2d": (lambda: nets.HighResNet(2, 1, 2), (1, 32, 32)),
    "DenseNet121_2d": (lambda: nets.DenseNet121(2, 1, 3), (1, 64, 64)),
    "SEResNet50_2d": (lambda: nets.SEResNet50(spatial_dims=2, in_channels=1, num_classes=3), (1, 64, 64)),
    "EfficientNetB0_2d": (lambda: nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2,
                                                      in_channels=1, num_classes=3), (1, 64, 64)),
    "ResNet18_3d": (lambda: nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2), (1, 32, 32, 32)),
    "Classifier2d": (lambda: nets.Classifier((1, 32, 32), 3, (4, 8, 16), (2, 2, 2)), (1, 32, 32)),
    "AutoEncoder2d": (lambda: nets.AutoEncoder(2, 1, 1, (4, 8, 16), (2, 2, 2)), (1, 32, 32)),
}


def onnx_round_trip(net, shape, g):
    """Export to ONNX, read back: (same counts, |W| of the import, output error)."""
    import onnx

    from deepglass.zoo.onnx_import import onnx_to_module

    x = torch.rand(2, *shape)
    buf = io.BytesIO()
    torch.onnx.export(net, (x[:1],), buf, dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, training=torch.onnx.TrainingMode.PRESERVE)
    imported = onnx_to_module(onnx.load_from_string(buf.getvalue()), input_shape=shape)
    with torch.no_grad():
        ref = net(x)
        err = float((imported(x) - ref).abs().max() / ref.abs().max())
    h = SignedGraph.from_module(imported, shape)
    return (h.n_nodes, h.n_edges) == (g.n_nodes, g.n_edges), float(h.abs_total()), err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(NETS))
    ap.add_argument("--onnx", action="store_true", help="also export to ONNX and compare")
    ap.add_argument("--solve", action="store_true", help="frustration of graphs below 100 M edges")
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    import monai

    print(f"MONAI {monai.__version__}, torch {torch.__version__}")
    for name in args.models.split(","):
        make, shape = NETS[name]
        torch.manual_seed(0)
        net = make().eval()
        t0 = time.perf_counter()
        try:
            g = SignedGraph.from_module(net, shape)
        except Exception as exc:  # report and go on
            print(f"{name:18s} FAILED {type(exc).__name__}: {str(exc)[:160]}", flush=True)
            continue
        line = (f"{name:18s} {'x'.join(map(str, shape)):11s} capture {time.perf_counter() - t0:5.1f} s  "
                f"nodes {g.n_nodes:>10,}  edges {g.n_edges:>14,}  gates {len(g.meta.get('left_out', [])):>2}")
        if args.onnx:
            same, abs_onnx, err = onnx_round_trip(net, shape, g)
            line += (f"  onnx: same counts {same}, |W| {float(g.abs_total()):.6g} vs {abs_onnx:.6g}, "
                     f"output {err:.1e}")
        if args.solve and g.n_edges < 100_000_000:
            t0 = time.perf_counter()
            res = deepglass.frustration(g, method="descent", replicas=4, seed=0)
            line += f"  delta {res.frustration:.4f} ({time.perf_counter() - t0:.1f} s)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
