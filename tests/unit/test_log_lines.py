"""A job's output as lines, as a terminal shows them: the splitter deployers share, and the
text renderer (terminals, the CLI) that redraws \\r lines in place."""

import io

from fairing.events import LogLine, Progress, Stage
from fairing.handle import LineSplitter
from fairing.notebook.display import TextRenderer


def test_text_renderer_redraws_carriage_return_lines_in_place():
    status, logs = io.StringIO(), io.StringIO()
    render = TextRenderer(status, logs)
    for event in [Stage("build", "started"), Progress("code 1234", 5, 10), Progress("code 1234", 10, 10, note="uploaded"),
                  LogLine("epoch 1", "worker-0"), LogLine("10%\r", "worker-0"), LogLine("a\rb\r", ""),
                  LogLine("done"), Stage("build", "finished", "0.1s")]:
        render(event)
    assert status.getvalue().splitlines() == [
        "fairing: build started", "fairing: code 1234 [" + "#" * 30 + "] 100% uploaded", "fairing: build finished (0.1s)"]
    assert logs.getvalue() == "[worker-0] epoch 1\n[worker-0] 10%\rb\rdone\n"


def test_line_splitter_sends_lines_being_redrawn_as_partial_and_keeps_the_final_text():
    splitter = LineSplitter()
    out = []
    for chunk in [b"epoch 1\n\r 10%", b"\r 50%", b"\r100%\r", b"\nnext\r", b"\nwin\r\nlast"]:
        out += splitter.feed(chunk)
    out += splitter.close()
    assert out == [("epoch 1", False), (" 10%", True), (" 10%", True), (" 50%", True), (" 50%", True),
                   ("100%", True), ("100%", False), ("next", True), ("next", False), ("win", False),
                   ("last", True), ("last", False)]
    whole = [text for text, partial in out if not partial]
    assert whole == ["epoch 1", "100%", "next", "win", "last"]  # what logs() keeps
