"""The worker hands over an early result: ``partial(id, value)`` before ``finished(id, result)``."""

from __future__ import annotations

import pytest

from braingui.results import AnalysisResult, ProgressEvent
from braingui.ui.worker import JobRunner

pytestmark = pytest.mark.gui


@pytest.fixture
def runner(qtbot):
    r = JobRunner()
    yield r
    r.shutdown()


def test_partial_results_arrive_in_order_before_the_final_one(qtbot, runner):
    order = []
    runner.progress.connect(lambda jid, ev: order.append(("progress", ev.message)))
    runner.partial.connect(lambda jid, value: order.append(("partial", value)))
    runner.finished.connect(lambda jid, value: order.append(("finished", value)))
    early = AnalysisResult(case_id="x", predicted_class="G", explanation={"level": "quick"})
    final = AnalysisResult(case_id="x", predicted_class="G", explanation={"level": "full"})

    def job(cancel):
        yield ProgressEvent("segmentation", 0.2, 0.0, "window 1/1")
        yield ProgressEvent("grad-cam", 0.7, 0.0, "first results ready", partial=early)
        yield "a quick class map"  # not an event: an intermediate value, passed on as partial only
        yield ProgressEvent("explanation", 0.9, 0.0, "deletion curve")
        return final

    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start(job)
    assert order == [("progress", "window 1/1"), ("progress", "first results ready"), ("partial", early),
                     ("partial", "a quick class map"), ("progress", "deletion curve"), ("finished", final)]
    assert order[2][1] is early and order[-1][1] is final
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=2000)
