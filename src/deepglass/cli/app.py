"""The ``deepglass`` typer application and its error handling.

Each sub-command lives in its own module of this package, which defines a
``register(app)`` function; :data:`COMMAND_MODULES` lists them.  Every
command's numeric options are checked first (:func:`deepglass.cli.checks.strict`).
User errors (:class:`deepglass.errors.DeepglassError`, and command-line usage
errors such as an unparsable number or an unknown option) print one line
``error: ...`` on stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import signal
import sys


def _interrupted_while_loading(signum, frame):
    """Ctrl-C while the command line still imports its modules (typer, pandas,
    the commands': a second or more): one line and status 130, as later."""
    print("interrupted while loading; nothing was computed or written", file=sys.stderr)
    raise SystemExit(130)


def _sigint_while_loading(install: bool) -> None:
    """Install :func:`_interrupted_while_loading` as the SIGINT handler for this
    module's imports (only over Python's own handler, and in the main thread),
    or give Python's back: once loaded, Ctrl-C is a KeyboardInterrupt again,
    which :func:`main` reports."""
    try:
        if install and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted_while_loading)
        elif not install and signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: signal handlers cannot be set
        pass


_sigint_while_loading(True)

import importlib  # noqa: E402
import warnings  # noqa: E402

import typer  # noqa: E402

from ..errors import DeepglassError  # noqa: E402

app = typer.Typer(
    name="deepglass",
    help="Statistical physics of deep neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
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


def _strict_commands(t: typer.Typer) -> None:
    """Check every command's numeric options before its body runs (sub-apps too)."""
    from .checks import strict

    for info in t.registered_commands:
        info.callback = strict(info.callback)
    for group in t.registered_groups:
        _strict_commands(group.typer_instance)


_strict_commands(app)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True,
                                       callback=_print_version,
                                       help="Print the version and exit.")):
    pass


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _warnings_on_stderr() -> None:
    """Library warnings (e.g. a damaged unit being recomputed) as ``warning: ...`` lines."""
    import logging
    import sys

    logger = logging.getLogger("deepglass")
    if not any(getattr(h, "_deepglass_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler._deepglass_cli = True
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


_SHOWN_WARNINGS: set[str] = set()


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (skipped input files, a non-monotone activation) as one
    ``warning: ...`` line, without the library's file name and source line; each
    text once per command (a model captured twice warns twice otherwise)."""
    text = _one_line(message)
    if text in _SHOWN_WARNINGS:
        return
    _SHOWN_WARNINGS.add(text)
    print(f"warning: {text}", file=file or sys.stderr)


def _cwd_importable() -> None:
    """Make the current directory importable, as ``python script.py`` and
    ``python -m`` do (a console script puts only its own folder on
    ``sys.path``): a pickled module's class (``--trust-pickle``) and
    ``--arch models:Net`` are found in the user's folder.  Appended, so that it
    never shadows an installed package."""
    import os

    cwd = os.getcwd()
    if not any(p in ("", ".", cwd) for p in sys.path):
        sys.path.append(cwd)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``deepglass`` console script."""
    try:
        _warnings_on_stderr()
        _cwd_importable()
        _SHOWN_WARNINGS.clear()
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            code = app(args=argv, standalone_mode=False)
    except DeepglassError as exc:
        fail(_one_line(exc))
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except typer.TyperException as exc:  # click usage errors (bad number, unknown option)
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed
            raise SystemExit(getattr(exc, "exit_code", 2))
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        fail(_one_line(message) + _help_hint(exc), getattr(exc, "exit_code", 2) or 2)
    if code == 130:     # Ctrl-C (typer returns 130 for it without a word)
        from .common import INTERRUPT_SAID

        if not INTERRUPT_SAID[0]:
            given = argv if argv is not None else sys.argv[1:]
            typer.echo("interrupted (a run with --out keeps its finished units: the same "
                       "command resumes it)" if any(str(a).startswith("--out") for a in given)
                       else "interrupted; nothing was written", err=True)
        raise SystemExit(130)
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _help_hint(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


_sigint_while_loading(False)   # loaded: main() reports a KeyboardInterrupt
