"""CLI progress: plain periodic lines when stderr is not a terminal, nothing when disabled."""

from __future__ import annotations

import io

from imgpub.cli import console
from imgpub.progress import NullProgress


def test_plain_progress_lines(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    clock = iter([0.0, 0.0, 1.0, 6.0, 7.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with console.Board(stream=stream) as board:
        progress = board.factory("aws-prod")
        progress.stage("upload", 100 << 20)
        progress.advance(10 << 20)  # t=1: too soon for a line
        progress.advance(40 << 20)  # t=6: a line
        progress.note("resumed 3 blocks")
    assert stream.getvalue().splitlines() == [
        "imgpub: aws-prod: upload (100.0 MiB)",
        "imgpub: aws-prod: upload 50% 50.0 MiB at 8.3 MiB/s",
        "imgpub: aws-prod: resumed 3 blocks",
    ]


def test_disabled_board_gives_null_progress() -> None:
    with console.Board(enabled=False, stream=io.StringIO()) as board:
        assert isinstance(board.factory("x"), NullProgress)


def test_human_size() -> None:
    sizes = [console.human_size(n) for n in (0, 1023, 1024, 5 << 30)]
    assert sizes == ["0 B", "1023 B", "1.0 KiB", "5.0 GiB"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_bars_appear_at_the_first_stage() -> None:
    stream = _Tty()
    with console.Board(stream=stream) as board:
        idle = board.factory("idle")
        busy = board.factory("busy")
        busy.stage("upload", 1 << 20)
        busy.advance(1 << 20)
        idle.advance(5)  # no stage yet: nothing to show, nothing to break
        busy.note("resumed")
    text = stream.getvalue()
    assert "busy" in text and "upload" in text and "resumed" in text
    assert "idle" not in text


def test_counted_stages_show_percent_not_bytes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    clock = iter([0.0, 0.0, 6.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with console.Board(stream=stream) as board:
        progress = board.factory("gallery")
        progress.stage("replicate", 200, unit="%")
        progress.advance(50)
    assert stream.getvalue().splitlines() == [
        "imgpub: gallery: replicate",
        "imgpub: gallery: replicate 25%",
    ]


def test_rich_counted_stage_has_no_byte_sizes() -> None:
    stream = _Tty()
    with console.Board(stream=stream) as board:
        progress = board.factory("gallery")
        progress.stage("replicate", 200, unit="%")
        progress.advance(100)
    text = stream.getvalue()
    assert "50%" in text and "B/s" not in text and "/200" not in text
