"""Benchmark: the cost of run-directory ownership and verification.

Writes ``--units`` units (a 4-row table and a 1,034-node int8 gauge each, the
digits CNN's size) through :class:`deepglass.store.RunDir`, then reopens the
run and lists the finished units (every file checked against the size and
sha256 its manifest recorded), then ``--force``-s another configuration
(removing the recorded units one by one).  Prints milliseconds per unit for
each step and the manifest's size.

    python bench/bench_store.py [--units 500] [--nodes 1034]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deepglass.store import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--nodes", type=int, default=1034)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"energy": rng.random(4), "start": np.arange(4), "kind": "N1"})
    sigma = rng.choice(np.array([-1, 1], np.int8), args.nodes)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run"
        run = RunDir(path, {"seed": 0}, kind="bench")
        t0 = time.perf_counter()
        for u in range(args.units):
            run.write_unit("runs", f"u{u:05d}", rows, arrays={"sigma": sigma})
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = RunDir(path, {"seed": 0}, kind="bench")
        done = again.finished_units("runs")
        verify = time.perf_counter() - t0
        assert len(done) == args.units
        size = (path / "manifest.jsonl").stat().st_size
        t0 = time.perf_counter()
        RunDir(path, {"seed": 1}, kind="bench", force=True)
        force = time.perf_counter() - t0
        assert not list((path / "units").rglob("*.parquet"))
    n = args.units
    print(f"{n} units of {args.nodes} nodes: write {1e3 * write / n:.2f} ms/unit "
          f"(arrays + rows, manifest records included); reopen and verify "
          f"{1e3 * verify / n:.3f} ms/unit; --force removal {1e3 * force / n:.3f} ms/unit; "
          f"manifest {size / 1e3:.0f} kB ({size / (2 * n):.0f} bytes per file)")


if __name__ == "__main__":
    main()
