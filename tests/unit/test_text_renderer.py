"""The text fallback (terminals, the CLI): stage lines, finished bars, and \\r progress redrawn in place."""

import io

from fairing.events import LogLine, Progress, Stage
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
