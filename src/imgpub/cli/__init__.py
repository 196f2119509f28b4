"""The `imgpub` command: a thin typer layer over the library (one module per command, lazy imports).

Only this package prints or exits: an ImgpubError or DiskError becomes one `imgpub: error: ...`
line on stderr and its exit code (0 ok, 1 a target failed, 2 bad input).
"""

from __future__ import annotations

import sys

import typer

from imgpub.cli import console
from imgpub.cli.convert import convert
from imgpub.cli.inspect import inspect
from imgpub.cli.plan import plan
from imgpub.cli.providers import providers
from imgpub.cli.prune import prune
from imgpub.cli.publish import publish
from imgpub.cli.reconcile import reconcile
from imgpub.cli.schema import schema
from imgpub.cli.status import status
from imgpub.cli.validate import validate

__all__ = ["app", "main"]

app = typer.Typer(
    name="imgpub",
    help="Publish golden VM images to AWS, GCP, Azure and local folders from one manifest.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from imgpub import __version__

        typer.echo(f"imgpub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and imgpub's debug log (also IMGPUB_DEBUG=1)."
    ),
    wire: bool = typer.Option(
        False,
        "--debug-wire",
        help="--debug, plus the SDKs' HTTP requests and answers (also --debug=wire, IMGPUB_DEBUG=wire). "
        "Credentials are redacted either way.",
    ),
) -> None:
    console.set_debug("wire" if wire else "on" if debug else None)
    console.configure_logging()


app.command("validate")(validate)
app.command("plan")(plan)
app.command("publish")(publish)
app.command("status")(status)
app.command("prune")(prune)
app.command("reconcile")(reconcile)
app.command("convert")(convert)
app.command("inspect")(inspect)
app.command("schema")(schema)
app.command("providers")(providers)


def main() -> None:
    from imgpub.disk.allocator import keep_freed_memory

    # Process-wide, so only the CLI does it: freed block buffers are reused instead of being
    # returned to the kernel and faulted in again for every block (see imgpub.disk.allocator).
    keep_freed_memory()
    sys.exit(run([_debug_spelling(arg) for arg in sys.argv[1:]]))


def run(args: list[str]) -> int:
    """Run the CLI on `args`; the exit code. A usage error (unknown option, bad value, missing
    argument) is one line and exit code 2, like every other bad input, not a boxed message."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args, prog_name="imgpub", standalone_mode=False)
    except typer.Abort:
        console.error_line("interrupted")
        return 130
    except Exception as exc:
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "ClickException" not in kinds:  # typer's own click (vendored or not): matched by name
            raise
        if "NoArgsIsHelpError" in kinds:  # `imgpub` alone: the help, as a usage error
            typer.echo(command.get_help(exc.ctx))  # type: ignore[attr-defined]
            return 2
        message = exc.format_message()  # type: ignore[attr-defined]
        if "UsageError" in kinds:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "imgpub"
            console.error_line(f"{message} (see '{where} --help')")
            return 2
        console.error_line(message)
        return int(exc.exit_code)  # type: ignore[attr-defined]
    return code if isinstance(code, int) else 0


def _debug_spelling(arg: str) -> str:
    """`--debug=wire` reads as `--debug-wire`, `--debug=1|on` as `--debug` (typer flags take no value)."""
    if not arg.startswith("--debug="):
        return arg
    value = arg.removeprefix("--debug=").lower()
    return "--debug-wire" if value == "wire" else "--debug"
