"""Everything the CLI shows: progress (rich bars on a terminal, periodic log lines otherwise) and
the one-line error. The library only sees the Progress protocol."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any, Literal

import typer

from imgpub.progress import Progress

__all__ = ["Board", "debug_enabled", "error_line", "guarded", "human_size", "out"]

PLAIN_INTERVAL = 5.0
"""Seconds between log lines of one target when stderr is not a terminal (CI logs)."""

DebugLevel = Literal["off", "on", "wire"]
_state: dict[str, DebugLevel | None] = {"debug": None}
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "azure", "msal", "google", "httpx")
"""SDKs that log every request and answer (headers and bodies) at DEBUG: only `--debug=wire`."""


def set_debug(level: str | None) -> None:
    """`--debug` (on) or `--debug=wire`; None leaves it to IMGPUB_DEBUG (1, on, wire)."""
    _state["debug"] = _level(level) if level is not None else None


def _level(value: str) -> DebugLevel:
    value = value.strip().lower()
    if value in ("", "0", "off", "false", "no"):
        return "off"
    return "wire" if value == "wire" else "on"


def debug_level() -> DebugLevel:
    chosen = _state["debug"]
    return chosen if chosen is not None else _level(os.environ.get("IMGPUB_DEBUG", ""))


def debug_enabled() -> bool:
    return debug_level() != "off"


def configure_logging() -> None:
    """SDK log chatter stays hidden (the error line says what matters). --debug shows imgpub's own
    log and tracebacks, --debug=wire the SDKs' HTTP logs too; credentials are redacted either way."""
    from imgpub.redact import RedactingFilter

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "imgpub", False)]:
        root.removeHandler(old)
    level = debug_level()
    if level == "off":
        if not root.handlers:
            root.addHandler(logging.NullHandler())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.imgpub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "wire" else logging.WARNING)


def out(text: str = "") -> None:
    typer.echo(text)


def error_line(message: str) -> None:
    from imgpub.redact import redact

    typer.echo(f"imgpub: error: {redact(message)}", err=True)
    annotate("error", message)


def warning_line(message: str) -> None:
    from imgpub.redact import redact

    typer.echo(f"imgpub: warning: {redact(message)}", err=True)
    annotate("warning", message)


_PLACE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<rest>.*)$", re.DOTALL)


def annotate(kind: str, message: str, title: str = "imgpub") -> None:
    """In GitHub Actions, the same message as a workflow annotation (`::error file=..,line=..::`),
    pointing at the manifest line when the message starts with `file:line:col:`; stderr keeps
    --json output clean (the runner reads both)."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from imgpub.redact import redact

    text = redact(message)
    props = {"title": title}
    place = _PLACE.match(text)
    if place is not None:
        props = {
            "file": place["file"],
            "line": place["line"],
            **({"col": place["col"]} if place["col"] else {}),
        }
        props["title"] = title
        text = place["rest"]
    rendered = ",".join(f"{k}={_escape(v, prop=True)}" for k, v in props.items())
    typer.echo(f"::{kind} {rendered}::{_escape(text)}", err=True)


def _escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def _traceback(exit_code: int) -> typer.Exit:
    """--debug: the traceback, redacted, on stderr; then the exit code the error means."""
    import traceback

    from imgpub.redact import redact

    sys.stderr.write(redact(traceback.format_exc()))
    return typer.Exit(exit_code)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Turn any imgpub error into one line on stderr and its exit code (tracebacks only with --debug)."""
    from imgpub.disk.errors import DiskError
    from imgpub.errors import ImgpubError

    try:
        yield
    except (ImgpubError, DiskError) as exc:
        if debug_enabled():
            raise _traceback(exc.exit_code) from None
        for one in getattr(exc, "all", (exc,)):
            error_line(str(one))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `imgpub inspect x | head`: the reader left; say nothing more
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    except OSError as exc:
        if debug_enabled():
            raise _traceback(1) from None
        error_line(str(exc))
        raise typer.Exit(1) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug: still one line at 2 a.m., the traceback on request
        if debug_enabled():
            raise _traceback(1) from None
        error_line(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        raise typer.Exit(1) from None


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _RichTask:
    """A bar that appears at the target's first stage (a cached or up-to-date step shows nothing)."""

    def __init__(self, board: Any, name: str) -> None:
        self.bars, self.name = board, name
        self.task: Any = None

    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        if self.task is None:
            self.task = self.bars.add_task(self.name or "image", total=total, stage=name, unit=unit)
        else:
            self.bars.reset(self.task, total=total, completed=0, stage=name, unit=unit)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.bars.advance(self.task, amount)

    def note(self, message: str) -> None:
        from imgpub.redact import redact

        self.bars.console.print(f"{self.name or 'image'}: {redact(message)}", markup=False, highlight=False)


class _PlainTask:
    """Log lines: one when a stage starts, then at most one per PLAIN_INTERVAL seconds."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream, self.name = stream, name or "image"
        self.lock = threading.Lock()
        self.stage_name, self.done, self.unit = "", 0, "B"
        self.total: int | None = None
        self.started = self.last = time.monotonic()

    def _line(self, text: str) -> None:
        from imgpub.redact import redact

        self.stream.write(f"imgpub: {self.name}: {redact(text)}\n")
        self.stream.flush()

    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        with self.lock:
            self.stage_name, self.total, self.done, self.unit = name, total, 0, unit
            self.started = self.last = time.monotonic()
            self._line(f"{name}" + (f" ({human_size(total)})" if total and unit == "B" else ""))

    def advance(self, amount: int) -> None:
        with self.lock:
            self.done += amount
            now = time.monotonic()
            if now - self.last < PLAIN_INTERVAL:
                return
            self.last = now
            pct = f"{100 * self.done / self.total:.0f}% " if self.total else ""
            if self.unit != "B":
                self._line(f"{self.stage_name} {pct}".rstrip())
                return
            rate = self.done / max(now - self.started, 1e-6)
            self._line(f"{self.stage_name} {pct}{human_size(self.done)} at {human_size(rate)}/s")

    def note(self, message: str) -> None:
        with self.lock:
            self._line(message)


def _bytes_only(bytes_column: Any, other: Any) -> Any:
    """A rich column that renders `bytes_column` for byte stages and `other` for counted ones."""
    from rich.progress import ProgressColumn

    class BytesOnly(ProgressColumn):
        def render(self, task: Any) -> Any:
            return (bytes_column if task.fields.get("unit", "B") == "B" else other).render(task)

    return BytesOnly()


class Board:
    """One progress line per target (and one for the image), rich on a terminal, plain otherwise."""

    def __init__(self, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.rich = enabled and self.stream.isatty()
        self._bars: Any = None

    def __enter__(self) -> Board:
        if self.rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bars = RichProgress(
                TextColumn("{task.description:<12}"),
                TextColumn("{task.fields[stage]:<20}"),
                BarColumn(bar_width=24),
                _bytes_only(DownloadColumn(binary_units=True), TaskProgressColumn()),
                _bytes_only(TransferSpeedColumn(), TextColumn("")),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.__exit__(None, None, None)

    def factory(self, name: str) -> Progress:
        from imgpub.progress import NullProgress

        if not self.enabled:
            return NullProgress()
        if self._bars is not None:
            return _RichTask(self._bars, name)
        return _PlainTask(self.stream, name)
