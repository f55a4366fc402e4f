"""The ``deepglass`` typer application and its error handling.

Each sub-command lives in its own module of this package, which defines a
``register(app)`` function; :data:`COMMAND_MODULES` lists them.  User errors
(:class:`deepglass.errors.DeepglassError`) print one line and exit with status 2.
"""

from __future__ import annotations

import importlib

import typer

from ..errors import DeepglassError

app = typer.Typer(
    name="deepglass",
    help="Statistical physics of deep neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = [
    "graph",
    "frustration",
    "rap",
    "monotonicity",
    "active",
    "demo",
    "criticality",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}").register(app)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit()


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``deepglass`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except DeepglassError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; finished work is saved, run the same command to resume",
                   err=True)
        raise SystemExit(130)
