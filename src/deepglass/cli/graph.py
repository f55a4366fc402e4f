"""``deepglass graph``: describe the signed graph of a network."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import load_graph, print_json


def graph(
    model: str = typer.Argument(..., help="A zoo name (e.g. digits_cnn, alexnet) or a model "
                                "file (.pt/.pth/.safetensors with --arch, .onnx, TorchScript)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="C,H,W per sample."),
    batchnorm: str = typer.Option("fold", "--batchnorm", help="fold (sign included) or ignore."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Zoo architecture of a state dict."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="Allow loading a pickled module (runs its code)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Print nodes, edges and parameters per block and in total (SPEC §1)."""
    _, shape, g = load_graph(model, input_shape, batchnorm, arch, trust_pickle)
    info = g.describe()
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{model}: signed graph at input {'x'.join(map(str, shape))}")
    for col in ("block", "op", "shape", "nodes", "edges", "params", "edge blocks"):
        table.add_column(col, justify="right" if col in ("nodes", "edges", "params") else "left")
    for r in info["blocks"]:
        table.add_row(r["block"], r["op"], r["shape"], f"{r['nodes']:,}", f"{r['edges']:,}",
                      f"{r['params']:,}", r["kinds"])
    table.add_section()
    table.add_row("total", "", "", f"{info['nodes']:,}", f"{info['edges']:,}",
                  f"{info['params']:,}", f"{len(g.edge_blocks)} edge blocks")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)
