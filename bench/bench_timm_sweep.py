"""Front end: which of timm's registered models give a signed graph (SPEC §1b).

Every model of ``timm.list_models()`` (random init, nothing downloaded) up to
``--max-params`` parameters is captured at ``--size`` (its default input size
where the model needs it) and sorted into

- ``graph``: captured (nodes and edges printed with ``--verbose``);
- ``refused``: a one-line ``DeepglassError`` naming the layer and why (attention,
  recurrent cells, products of two values, dynamic weights, ...);
- ``bug``: any other exception, with its traceback in the results file;
- ``forward``: the model itself does not run on a sample input;
- ``timeout``: over ``--timeout`` seconds.

One JSON line per model goes to ``--out`` as it finishes; a rerun skips the
models already there (resumable).  The summary counts each kind and groups the
refusals by their reason.

    python bench/bench_timm_sweep.py [--out runs/timm_sweep.jsonl] [--filter resnet]

timm is imported through the test-only torchvision shim (tests/timm_shim.py).
On 2 cores the whole list takes about 80 minutes.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import os
import re
import signal
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import timm_shim  # noqa: E402

timm_shim.install()
import timm  # noqa: E402
import torch  # noqa: E402

from deepglass.errors import DeepglassError  # noqa: E402
from deepglass.graph import SignedGraph  # noqa: E402


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def sweep_one(name: str, size: int, max_params: float, timeout: int) -> dict:
    """Capture one timm model; its result record."""
    rec: dict = {"name": name}
    t0 = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        with torch.device("meta"):   # count the parameters without allocating them
            params = sum(p.numel() for p in timm.create_model(name).parameters())
        rec["params"] = int(params)
        if params > max_params:
            rec["status"] = "skipped"
            return rec
        model = timm.create_model(name, pretrained=False).eval()
        default = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
        shape = None
        for cand in ((default[0], size, size), default):
            try:
                with torch.no_grad():
                    model(torch.zeros((1,) + cand))
                shape = cand
                break
            except Exception as exc:  # noqa: BLE001 - the model's own limits
                rec["forward_error"] = str(exc).splitlines()[0][:200] if str(exc) else ""
        if shape is None:
            rec["status"] = "forward"
            return rec
        rec["shape"] = list(shape)
        g = SignedGraph.from_module(model, shape)
        rec.update(status="graph", nodes=g.n_nodes, edges=int(g.n_edges),
                   capture=g.meta["rules"]["capture"])
    except _Timeout:
        rec["status"] = "timeout"
    except DeepglassError as exc:
        rec.update(status="refused", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug: keep it whole
        rec.update(status="bug", message=f"{type(exc).__name__}: {exc}"[:500],
                   traceback=traceback.format_exc()[-3000:])
    finally:
        signal.alarm(0)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def reason(message: str) -> str:
    """A refusal's reason without the layer's name: what groups like refusals."""
    text = re.sub(r"^unsupported layer '[^']*' ", "", message)
    return text.split(": deepglass supports")[0][:110]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="timm_sweep.jsonl", help="results, one JSON line per model")
    ap.add_argument("--filter", default="*", help="fnmatch pattern of model names")
    ap.add_argument("--size", type=int, default=64, help="input height and width tried first")
    ap.add_argument("--max-params", type=float, default=60e6)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per model")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    done = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {r["name"]: r for r in map(json.loads, f) if r.get("status")}
    names = [n for n in timm.list_models() if fnmatch.fnmatch(n, args.filter)]
    with open(args.out, "a") as f:
        for name in names:
            if name in done:
                continue
            rec = done[name] = sweep_one(name, args.size, args.max_params, args.timeout)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            if args.verbose or rec["status"] == "bug":
                extra = (f"{rec.get('nodes', 0):,} nodes, {rec.get('edges', 0):,} edges"
                         if rec["status"] == "graph" else rec.get("message", "")[:150])
                print(f"{name:40s} {rec['status']:8s} {rec['seconds']:6.1f} s  {extra}", flush=True)
    recs = [done[n] for n in names if n in done]
    counts = collections.Counter(r["status"] for r in recs)
    print(f"\n{len(recs)} models: " + ", ".join(f"{counts[k]} {k}" for k in
                                                  ("graph", "refused", "bug", "forward", "timeout",
                                                   "skipped") if counts[k]))
    why = collections.Counter(reason(r["message"]) for r in recs if r["status"] == "refused")
    print("refusals by reason:")
    for text, k in why.most_common():
        print(f"  {k:4d}  {text}")
    for r in recs:
        if r["status"] == "bug":
            print(f"bug: {r['name']}: {r['message'][:200]}")


if __name__ == "__main__":
    main()
