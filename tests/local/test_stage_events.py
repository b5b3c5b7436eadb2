"""Each stage is reported once, with a matching start and end, through the whole pipeline."""

from collections import Counter

import pytest

import fairing
from fairing import BuildError
from fairing.api import preprocessor_for
from fairing.events import Stage

pytestmark = pytest.mark.usefixtures("no_leftovers")


def _pairs(events):
    return [(e.name, e.status) for e in events if isinstance(e, Stage)]


def _assert_matched(pairs):
    """Every stage that starts ends once (finished or failed), and nothing ends that did not start."""
    open_stages = Counter()
    for name, status in pairs:
        if status == "started":
            open_stages[name] += 1
        elif status in ("finished", "failed"):
            assert open_stages[name] > 0, f"{name} {status} without a start in {pairs}"
            open_stages[name] -= 1
    assert not +open_stages, f"started but never ended: {dict(+open_stages)} in {pairs}"


def test_submit_reports_package_build_deploy_once_each(workdir):
    (workdir / "job.py").write_text("print('hello')\n")
    events = []
    handle = fairing.submit(preprocessor_for(str(workdir / "job.py")), backend="local", on_event=events.append)
    try:
        handle.result(timeout=120)
    finally:
        handle.delete()
    pairs = _pairs(events)
    _assert_matched(pairs)
    for stage in ("package", "build", "deploy"):
        assert pairs.count((stage, "started")) == 1 and pairs.count((stage, "finished")) == 1, pairs


def test_a_failing_build_ends_its_stage_as_failed(workdir):
    (workdir / "job.py").write_text("print('never runs')\n")
    events = []
    with pytest.raises(BuildError, match="pip could not install"):
        fairing.submit(preprocessor_for(str(workdir / "job.py"), requirements=["fairing-no-such-package-xyz==0.0.1"]),
                       backend="local", on_event=events.append)
    pairs = _pairs(events)
    _assert_matched(pairs)
    assert ("build", "failed") in pairs and ("deploy", "started") not in pairs
