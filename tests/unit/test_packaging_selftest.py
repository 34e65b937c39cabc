"""``braingui --selftest`` in the source install: its report and exit status, and one real run.

The frozen app runs the same code (``packaging/build.sh`` runs it on the build); here the report format
is checked with stand-in checks (fast), and the whole self-test once with the tiny test bundles
(``tests/inference_helpers.py``) and the full-size demo case (~30-60 s on two busy cores).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO_ROOT


def _report(monkeypatch, checks, out_dir=None):
    import braingui.app.selftest as st

    monkeypatch.setattr(st, "CHECKS", checks)
    stream = io.StringIO()
    code = st.run_selftest(out_dir=out_dir, stream=stream)
    return code, json.loads(stream.getvalue())


def test_report_lists_every_check_and_fails_when_one_fails(monkeypatch, tmp_path):
    import braingui.app.selftest as st

    def good(state):
        assert state["out"] == tmp_path.resolve()
        return {"x": 1}

    def known(state):
        raise st.SelftestFailure("bad bundle", {"bundle": "b"})

    def crash(state):
        raise RuntimeError("boom")

    code, report = _report(monkeypatch, (("good", good), ("known", known), ("crash", crash)), tmp_path)
    assert code == 1 and report["ok"] is False
    assert [c["name"] for c in report["checks"]] == ["good", "known", "crash"]
    assert [c["ok"] for c in report["checks"]] == [True, False, False]
    assert all(set(c) == {"name", "ok", "seconds", "detail"} and c["seconds"] >= 0 for c in report["checks"])
    assert report["checks"][0]["detail"] == {"x": 1}
    assert report["checks"][1]["detail"] == {"error": "bad bundle", "bundle": "b"}
    assert report["checks"][2]["detail"]["error"] == "RuntimeError: boom"
    assert "traceback" in report["checks"][2]["detail"]
    assert report["frozen"] is False and report["braingui"]


def test_temporary_output_is_removed_only_when_all_passed(monkeypatch):
    import braingui.app.selftest as st

    seen = {}

    def remember(state):
        seen["out"] = state["out"]
        return {}

    code, report = _report(monkeypatch, (("a", remember),))
    assert code == 0 and report["ok"] and report["out_dir"] is None and not seen["out"].exists()

    def fail(state):
        raise st.SelftestFailure("no", {})

    code, report = _report(monkeypatch, (("a", remember), ("b", fail)))
    try:
        assert code == 1 and report["out_dir"] == str(seen["out"]) and seen["out"].is_dir()
    finally:
        import shutil

        shutil.rmtree(seen["out"], ignore_errors=True)


@pytest.mark.gui
def test_source_selftest_passes_with_tiny_bundles(tmp_path):
    from inference_helpers import make_models_dir

    models = make_models_dir(tmp_path / "models")
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "BRAINGUI_BUNDLED_MODELS": str(tmp_path / "none"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, "-m", "braingui.app", "--selftest", "--models", str(models),
                           "--selftest-out", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["imports", "bundles", "demo case", "formats", "dicom", "pipeline", "3d surface", "window",
                            "report", "3d view"]
    assert all(c["ok"] for c in checks.values())
    assert checks["bundles"]["detail"]["segmentation"]["sha256_ok"]
    assert checks["pipeline"]["detail"]["shape"] == [240, 240, 155]
    assert checks["formats"]["detail"][".mha"]["ok"] and checks["formats"]["detail"]["gzip"] == "isal"
    assert checks["dicom"]["detail"]["shape"] == [8, 8, 6] and checks["dicom"]["detail"]["series"] == 1
    assert checks["window"]["detail"]["size"] == [1600, 1000]
    assert "skipped" in checks["3d view"]["detail"]  # offscreen: no OpenGL window
    assert (out / "selftest-window.png").is_file() and (out / "results" / "results.json").is_file()


def test_selftest_fails_a_build_whose_segmentation_fell_back_from_openvino(monkeypatch):
    """A frozen app without OpenVINO's device plugins falls back to torch with a warning only: --selftest says so."""
    from types import SimpleNamespace

    from braingui.app.selftest import _backend_problems
    from braingui.inference import openvino_backend as ovb

    monkeypatch.setattr(ovb, "available", lambda: True)
    monkeypatch.setenv("BRAINGUI_BACKEND", "auto")
    fell_back = SimpleNamespace(labels=object(), device="cpu", warnings=[
        "demo-segresnet: OpenVINO could not convert the network (RuntimeError: ...); segmentation ran in torch"])
    (problem,) = _backend_problems(fell_back)
    assert "ran in torch although OpenVINO is installed" in problem and "could not convert" in problem
    assert _backend_problems(SimpleNamespace(labels=object(), device="cpu (segmentation: openvino)", warnings=[])) == []
    assert _backend_problems(SimpleNamespace(labels=object(), device="cuda:0", warnings=[])) == []
    monkeypatch.setenv("BRAINGUI_BACKEND", "torch")  # asked for torch: nothing to say
    assert _backend_problems(fell_back) == []
    monkeypatch.setattr(ovb, "available", lambda: False)
    monkeypatch.setenv("BRAINGUI_BACKEND", "auto")
    assert _backend_problems(fell_back) == []
