"""``deepglass graph``: describe the signed graph of a network."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import (ARCH_OPTION, BATCHNORM_OPTION, GATES_OPTION, INPUT_SHAPE_OPTION,
                    JSON_OPTION, NORM_OPTION, TRUST_PICKLE_OPTION, load_graph, print_json,
                    shape_text)


def graph(
    model: str = typer.Argument(..., help="A zoo name (e.g. digits_cnn, alexnet), timm:NAME "
                                "(random init; timm installed), or a model file "
                                "(.pt/.pth/.safetensors with --arch, .onnx, TorchScript)."),
    input_shape: Optional[List[str]] = INPUT_SHAPE_OPTION,
    batchnorm: str = BATCHNORM_OPTION,
    gates: str = GATES_OPTION,
    norm: str = NORM_OPTION,
    output: Optional[str] = typer.Option(None, "--output", help="The output (name or index) "
                                         "that active subnetworks and near-monotonicity read."),
    arch: Optional[str] = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Print nodes, edges and parameters per block and in total (SPEC §1)."""
    from ..graph.trace import forward_batch_size

    net, shape, g = load_graph(model, input_shape, batchnorm, arch, trust_pickle, gates=gates,
                               norm=norm, output=output)
    info = g.describe()
    batch_one = forward_batch_size(net, 2) == 1
    if batch_one:
        info["batch_one_only"] = True
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{model}: signed graph at input {shape_text(shape)}")
    # nothing is cut to "658,713,…" on a narrow (or piped: 80-column) console: the
    # counts, ops and shapes keep their width, block names and descriptions fold
    for col in ("block", "op", "shape", "nodes", "edges", "params", "edge blocks"):
        if col in ("nodes", "edges", "params"):
            table.add_column(col, justify="right", no_wrap=True,
                             min_width=len(f"{info[col]:,}"))
        elif col in ("op", "shape"):
            table.add_column(col, no_wrap=True,
                             min_width=max(len(str(r[col])) for r in info["blocks"]))
        else:
            table.add_column(col, overflow="fold")
    for r in info["blocks"]:
        table.add_row(r["block"], r["op"], r["shape"], f"{r['nodes']:,}", f"{r['edges']:,}",
                      f"{r['params']:,}", r["kinds"])
    table.add_section()
    table.add_row("total", "", "", f"{info['nodes']:,}", f"{info['edges']:,}",
                  f"{info['params']:,}", f"{len(g.edge_blocks)} edge blocks")
    console = Console()
    if not console.is_terminal:      # piped or to a file: every row on one line
        wide = console.options.update_width(10_000)
        console = Console(width=max(console.width, console.measure(table, options=wide).maximum))
    console.print(table)
    rules = ", ".join(f"{k}={v}" for k, v in info.get("rules", {}).items())
    console.print(f"rules (SPEC §1b): {rules}")
    outs = ", ".join(f"{k} ({n:,} nodes)" for k, n in info["outputs"].items())
    console.print(f"outputs: {outs}; read by active subnetworks / near-monotonicity: "
                  f"{info['output']}")
    if batch_one:
        console.print("runs at batch size 1 only (the file reshapes, selects or moves its batch axis): "
                      "the module runs it once per sample")
    if info.get("left_out"):
        n_par = sum(r["params"] for r in info["left_out"])
        console.print(f"left out ({len(info.get('gates', []))} gates as positive rescalings): "
                      f"{len(info['left_out'])} blocks, {n_par:,} parameters")


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)
