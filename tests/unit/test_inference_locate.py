"""Where bundles are found: --models > BRAINGUI_MODELS > user data folder > bundled models."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from braingui.inference.locate import ENV_BUNDLED, ENV_MODELS, find_bundles, user_models_dir
from braingui.inference.manifest import BundleError
from inference_helpers import make_tiny_classification_bundle, make_tiny_segmentation_bundle

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="redirects the user data folder with XDG_DATA_HOME")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Four locations, redirected: flag, env, user (XDG_DATA_HOME) and bundled; all empty."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_MODELS, raising=False)
    monkeypatch.setenv(ENV_BUNDLED, str(tmp_path / "bundled"))
    out = {"flag": tmp_path / "flag", "env": tmp_path / "env", "user": tmp_path / "xdg" / "braingui" / "models",
           "bundled": tmp_path / "bundled"}
    for p in out.values():
        p.mkdir(parents=True)
    assert user_models_dir() == out["user"]
    return out


def _seg(location: Path, name: str) -> None:
    make_tiny_segmentation_bundle(location / name, name=name, rule="random")


def _cls(location: Path, name: str) -> None:
    make_tiny_classification_bundle(location / name, name=name)


def test_search_order(places, monkeypatch):
    for where in places:
        _seg(places[where], f"seg-{where}")
    monkeypatch.setenv(ENV_MODELS, str(places["env"]))
    assert find_bundles(places["flag"]).segmentation.name == "seg-flag"
    assert find_bundles(None).segmentation.name == "seg-env"
    monkeypatch.delenv(ENV_MODELS)
    assert find_bundles(None).segmentation.name == "seg-user"
    shutil.rmtree(places["user"])
    assert find_bundles(None).segmentation.name == "seg-bundled"
    shutil.rmtree(places["bundled"])
    search = find_bundles(None)
    assert search.segmentation is None and search.classification is None
    with pytest.raises(BundleError) as info:
        search.require_any()
    message = str(info.value)
    for text in ("no model bundle found", "--models (not set)", f"{ENV_MODELS} (not set)", str(places["user"]),
                 str(places["bundled"])):
        assert text in message


def test_tasks_are_chosen_independently(places, monkeypatch):
    _seg(places["flag"], "seg-flag")
    _cls(places["user"], "cls-user")
    _cls(places["bundled"], "cls-bundled")
    _seg(places["bundled"], "seg-bundled")
    search = find_bundles(places["flag"])
    assert search.segmentation.name == "seg-flag"
    assert search.classification.name == "cls-user"
    assert search.missing() == []


def test_models_flag_may_name_one_bundle(places):
    _cls(places["flag"], "cls-flag")
    _cls(places["bundled"], "cls-bundled")
    search = find_bundles(places["flag"] / "cls-flag")
    assert search.classification.name == "cls-flag"
    assert search.segmentation is None


def test_models_flag_must_exist(places):
    with pytest.raises(BundleError, match="not found"):
        find_bundles(places["flag"] / "nope")


def test_env_var_to_missing_folder_is_noted_and_skipped(places, monkeypatch):
    _seg(places["bundled"], "seg-bundled")
    monkeypatch.setenv(ENV_MODELS, str(places["env"] / "nope"))
    search = find_bundles(None)
    assert search.segmentation.name == "seg-bundled"
    assert any("does not exist" in n for n in search.notes)


def test_broken_manifest_is_skipped_with_a_warning_naming_it(places):
    """A broken bundle in the user data folder must not spoil every start (issue 14): it is skipped, the
    search goes on, and the warning names the bundle."""
    _seg(places["bundled"], "seg-bundled")
    (places["user"] / "broken").mkdir()
    (places["user"] / "broken" / "manifest.json").write_text("{")
    search = find_bundles(None)
    assert search.segmentation.name == "seg-bundled"
    assert len(search.skipped) == 1 and str(places["user"] / "broken") in search.skipped[0]
    assert any(str(places["user"] / "broken") in n and "not valid JSON" in n for n in search.notes)


def test_folders_without_manifest_are_ignored_and_choice_is_noted(places):
    (places["flag"] / "notes").mkdir()
    _seg(places["flag"], "b-seg")
    _seg(places["flag"], "a-seg")
    search = find_bundles(places["flag"])
    assert search.segmentation.name == "a-seg"
    assert any("b-seg" in n for n in search.notes)
