"""Hostile and broken model bundles (issue 14, item 4): a generator of broken manifests, each refused with
one clear line naming the bundle folder and the field, and skipped - never fatal - in a search folder;
the sha256 is checked before any network is built; ``pretrained`` is refused without network access;
``--models`` with no bundle is an error, not a fall-back to other models.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch

from braingui.inference import bundle as bundle_mod
from braingui.inference import networks
from braingui.inference.bundle import load_network
from braingui.inference.locate import ENV_BUNDLED, ENV_MODELS, find_bundles
from braingui.inference.manifest import BundleError, read_bundle
from inference_helpers import (make_tiny_classification_bundle, make_tiny_segmentation_bundle,  # noqa: F401
                               single_torch_thread)

NAN, INF = float("nan"), float("inf")
linux_xdg = pytest.mark.skipif(sys.platform != "linux", reason="redirects the user data folder with XDG_DATA_HOME")


def _kw(**changes):
    return lambda m: m["network"]["kwargs"].update(changes)


def _inp(**changes):
    return lambda m: m["input"].update(changes)


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# (id, bundle kind, edit of the manifest dict - or a function returning the file's bytes -, words the
# one-line message must hold: the field, or what is wrong with the file)
HOSTILE = [
    # network.kwargs: only each network's allow-list, typed and bounded
    ("pretrained", "cls", _kw(pretrained=True), "network.kwargs.pretrained"),
    ("progress", "cls", _kw(progress=True), "network.kwargs.progress"),
    ("unknown kwarg", "seg", _kw(evil="os.system"), "network.kwargs.evil"),
    ("norm_name", "seg", _kw(norm_name="group"), "network.kwargs.norm_name"),
    ("huge init_filters", "seg", _kw(init_filters=4096), "network.kwargs.init_filters"),
    ("huge integer", "seg", _kw(init_filters=10 ** 40), "network.kwargs.init_filters"),
    ("bool as int", "seg", _kw(init_filters=True), "network.kwargs.init_filters"),
    ("float as int", "seg", _kw(init_filters=8.0), "network.kwargs.init_filters"),
    ("negative", "seg", _kw(init_filters=-8), "network.kwargs.init_filters"),
    ("many levels", "seg", _kw(blocks_down=[1] * 40, blocks_up=[1] * 39), "network.kwargs.blocks_down"),
    ("huge block", "seg", _kw(blocks_down=[1, 10 ** 6, 1]), "network.kwargs.blocks_down[1]"),
    ("blocks not a list", "seg", _kw(blocks_down={"a": 1}), "network.kwargs.blocks_down"),
    ("levels mismatch", "seg", _kw(blocks_up=[1, 1, 1, 1]), "network.kwargs.blocks_up"),
    ("NaN dropout", "seg", _kw(dropout_prob=NAN), "network.kwargs.dropout_prob"),
    ("inf dropout", "cls", _kw(dropout_prob=INF), "network.kwargs.dropout_prob"),
    ("dropout 1", "cls", _kw(dropout_prob=1.0), "network.kwargs.dropout_prob"),
    ("groups do not divide", "seg", _kw(norm=["GROUP", {"num_groups": 3}]), "network.kwargs.norm"),
    ("norm param", "seg", _kw(norm=["GROUP", {"num_groups": 4, "device": "cuda"}]), "network.kwargs.norm.device"),
    ("norm name", "seg", _kw(norm="LAYER"), "network.kwargs.norm"),
    ("norm not a spec", "seg", _kw(norm=5), "network.kwargs.norm"),
    ("norm nested", "seg", _kw(norm=_nested(30)), "network.kwargs.norm"),
    ("norm deeply nested", "seg", _kw(norm=_nested(500)), "nested too deeply (more than 64 levels)"),
    ("model card 900 levels", "cls", _set("model_card", "x", _nested(900)), "nested too deeply"),
    ("act args not a dict", "cls", _kw(act=["relu", [1]]), "network.kwargs.act"),
    ("2D network", "seg", _kw(spatial_dims=2), "network.kwargs.spatial_dims"),
    ("upsample mode", "seg", _kw(upsample_mode="evil"), "network.kwargs.upsample_mode"),
    ("kwargs a list", "seg", _set("network", "kwargs", [1, 2]), "network.kwargs"),
    ("kwargs a string", "cls", _set("network", "kwargs", "init_features=10**9"), "network.kwargs"),
    ("huge growth", "cls", _kw(growth_rate=10 ** 6), "network.kwargs.growth_rate"),
    ("long block_config", "cls", _kw(block_config=[64] * 10), "network.kwargs.block_config"),
    ("in_channels bool", "cls", _kw(in_channels=True), "network.kwargs.in_channels"),
    ("huge out_channels", "cls", _kw(out_channels=10 ** 9), "network.kwargs.out_channels"),
    # input sizes and the sliding window: bounded on a BraTS-sized case
    ("tiny roi, high overlap", "seg", _inp(roi_size=[8, 8, 8], sw_overlap=0.9), "input.sw_overlap"),
    ("tiny roi", "seg", _inp(roi_size=[8, 8, 8], sw_overlap=0.0), "input.roi_size"),  # 18000 windows
    ("zoom 4", "seg", _inp(zoom=4.0), "input.zoom"),
    ("zoom NaN", "seg", _inp(zoom=NAN), "input.zoom"),
    ("zoom 0", "seg", _inp(zoom=0), "input.zoom"),
    ("zoom tiny", "seg", _inp(zoom=1e-9), "input.zoom"),
    ("zoom bool", "seg", _inp(zoom=True), "input.zoom"),
    ("crop 2048", "seg", _inp(crop=[2048, 2048, 2048]), "input.crop"),
    ("roi 2048", "seg", _inp(roi_size=[2048, 2048, 2048]), "input.roi_size"),
    ("huge multiple", "seg", _inp(multiple=10 ** 12), "input.multiple"),
    ("multiple below the levels", "seg", _inp(multiple=1), "input.multiple"),
    ("huge margin", "seg", _inp(margin=10 ** 9), "input.margin"),
    ("overlap bool", "seg", _inp(sw_overlap=True), "input.sw_overlap"),
    ("threshold NaN", "seg", _set("output", "threshold", NAN), "output.threshold"),
    ("regions unsortable", "seg", _set("output", "channels", [1, {}, "TC"]), "output.channels"),
    ("input shape 2048", "cls", _inp(shape=[2048, 2048, 2048]), "input.shape"),
    ("input shape 256^3", "cls", _inp(shape=[256, 256, 256]), "input.shape"),
    ("input shape below the pooling", "cls", _inp(shape=[4, 4, 4]), "input.shape"),
    ("input shape strings", "cls", _inp(shape=["a", 1, 2]), "input.shape"),
    ("tolerance inf", "cls", _inp(tolerance=INF), "input.tolerance"),
    ("many channels", "cls", _inp(channels=["flair"] * 1000), "input.channels"),
    # non-objects where objects are expected, and other structure
    ("manifest a list", "seg", lambda m: b"[1, 2, 3]", "must hold a JSON object"),
    ("network a list", "seg", _set("network", []), "'network'"),
    ("input a string", "seg", _set("input", "x"), "'input'"),
    ("weights null", "cls", _set("weights", None), "'weights'"),
    ("class_titles a list", "cls", _set("output", "class_titles", ["A"]), "output.class_titles"),
    ("gradcam a list", "cls", _set("gradcam", ["features"]), "'gradcam'"),
    ("model_card a number", "cls", _set("model_card", 3), "'model_card'"),
    ("task a bool", "cls", _set("task", True), "'task'"),
    ("format_version huge", "seg", _set("format_version", 10 ** 100), "format_version"),
    ("name 10 kB", "seg", _set("name", "x" * 10_000), "'name'"),
    ("name with a newline", "seg", _set("name", "seg\nbraingui: all good"), "'name'"),
    # the file itself
    ("deeply nested JSON", "cls", lambda m: ("[" * 100_000 + "]" * 100_000).encode(), "nested too deeply"),
    ("deep model card", "cls", lambda m: json.dumps(dict(m, model_card={"x": 1})).replace(
        '{"x": 1}', '{"x": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(), "nested too deeply"),
    ("5000-digit integer", "seg", lambda m: json.dumps(m).replace('"format_version": 1', '"format_version": '
                                                                   + "9" * 5000).encode(), "cannot be read"),
    ("5 MB manifest", "seg", lambda m: json.dumps(dict(m, model_card={"pad": "x" * (5 << 20)})).encode(), "larger than"),
    ("not UTF-8", "seg", lambda m: b"\xff\xfe{\x00", "not UTF-8"),
    ("not JSON", "seg", lambda m: b"{ 'network': ", "not valid JSON"),
]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    return {"seg": make_tiny_segmentation_bundle(root / "seg", rule="random"),
            "cls": make_tiny_classification_bundle(root / "cls")}


def _write_hostile(good: dict[str, Path], folder: Path, kind: str, edit) -> Path:
    shutil.copytree(good[kind], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    raw = edit(manifest)
    (folder / "manifest.json").write_bytes(raw if isinstance(raw, bytes) else json.dumps(manifest).encode())
    return folder


@pytest.mark.parametrize("case_id, kind, edit, words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_hostile_manifest_is_refused_in_one_line_naming_bundle_and_field(good, tmp_path, case_id, kind,
                                                                              edit, words):
    folder = _write_hostile(good, tmp_path / "hostile", kind, edit)
    with pytest.raises(BundleError) as info:
        read_bundle(folder)
    message = str(info.value)
    assert message.startswith(f"model bundle {folder}: manifest.json"), message
    assert words in message, message
    assert "\n" not in message and len(message) < 600 + len(str(folder))


@linux_xdg
def test_a_search_folder_of_hostile_bundles_is_skipped_and_the_good_bundles_are_used(good, tmp_path, monkeypatch):
    """Every hostile bundle in the user data folder: each skipped with one line naming it; the bundled
    models (the good ones) are still found; nothing raises."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_MODELS, raising=False)
    user = tmp_path / "xdg" / "braingui" / "models"
    for i, (_, kind, edit, _) in enumerate(HOSTILE):
        _write_hostile(good, user / f"h{i:03d}", kind, edit)
    bundled = tmp_path / "bundled"
    for kind in ("seg", "cls"):
        shutil.copytree(good[kind], bundled / kind)
    monkeypatch.setenv(ENV_BUNDLED, str(bundled))
    search = find_bundles(None)
    assert search.segmentation.folder == bundled / "seg" and search.classification.folder == bundled / "cls"
    assert len(search.skipped) == len(HOSTILE)
    for i, line in enumerate(search.skipped):
        assert line.startswith(f"model bundle {user / f'h{i:03d}'}: ") and "\n" not in line
    assert sum("model bundle skipped" in n for n in search.notes) == len(HOSTILE)  # carried into the warnings


def _tamper(folder: Path) -> None:
    with open(folder / "weights.pt", "ab") as fh:
        fh.write(b"\0")


def test_sha256_is_checked_before_any_network_is_built(good, tmp_path, monkeypatch):
    folder = shutil.copytree(good["seg"], tmp_path / "seg")
    bundle = read_bundle(folder)
    _tamper(folder)
    built = []
    monkeypatch.setattr(bundle_mod, "build_network", lambda *a, **k: built.append(a) or pytest.fail("network built"))
    monkeypatch.setattr(networks, "build_network", lambda *a, **k: pytest.fail("network built"))
    with pytest.raises(BundleError, match="sha256") as info:
        load_network(bundle)
    assert str(folder) in str(info.value) and built == []


def _with_weights(folder: Path, state: dict) -> None:
    """Replace the weights and set the manifest's sha256 to match them (as a hostile bundle would)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (folder / "weights.pt").write_bytes(buffer.getvalue())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _built_on(monkeypatch) -> list:
    devices = []
    real = bundle_mod.build_network

    def spy(name, kwargs, for_inference=False, device=None):
        devices.append(device)
        return real(name, kwargs, for_inference, device)

    monkeypatch.setattr(bundle_mod, "build_network", spy)
    return devices


def test_kwargs_in_range_that_do_not_fit_the_weights_build_nothing_real(good, tmp_path, monkeypatch):
    """A manifest whose (allowed) kwargs describe another network than its small, sha-matching weights:
    refused after a structure-only build on the meta device, before the real network is allocated."""
    folder = shutil.copytree(good["seg"], tmp_path / "seg")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["network"]["kwargs"].update(init_filters=32)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _with_weights(folder, {"convInit.conv.weight": torch.zeros(8, 4, 3, 3, 3)})
    devices = _built_on(monkeypatch)
    with pytest.raises(BundleError, match="do not fit") as info:
        load_network(read_bundle(folder))
    assert devices == ["meta"] and str(folder) in str(info.value)


def test_a_network_beyond_the_parameter_limit_is_refused_on_the_meta_device(good, tmp_path, monkeypatch):
    folder = shutil.copytree(good["seg"], tmp_path / "seg")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["network"]["kwargs"].update(init_filters=64, blocks_down=[8, 8, 8, 8, 8], blocks_up=[8, 8, 8, 8],
                                         norm=["GROUP", {"num_groups": 8}])
    manifest["input"].update(multiple=16)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _with_weights(folder, {"w": torch.zeros(1)})
    devices = _built_on(monkeypatch)
    with pytest.raises(BundleError, match=r"773 M parameters \(at most 200 M\)"):
        load_network(read_bundle(folder))
    assert devices == ["meta"]


def test_pretrained_is_refused_and_nothing_touches_the_network(good, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a network socket was opened")

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    folder = _write_hostile(good, tmp_path / "cls-pretrained", "cls", _kw(pretrained=True))
    with pytest.raises(BundleError, match="pretrained"):
        read_bundle(folder)
    search = find_bundles(tmp_path, environ={}, package_dir=tmp_path / "none")  # --models: no usable bundle
    assert search.classification is None and "pretrained" in search.none_found_message()
    net = load_network(read_bundle(good["cls"]))  # a good bundle loads offline
    assert sum(p.numel() for p in net.parameters()) > 0


@linux_xdg
def test_bad_weights_in_a_search_folder_are_skipped_for_the_next_location(good, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # an empty user data folder
    first, second = tmp_path / "env", tmp_path / "bundled"
    shutil.copytree(good["seg"], first / "seg")
    shutil.copytree(good["seg"], second / "seg")
    _tamper(first / "seg")
    search = find_bundles(None, environ={ENV_MODELS: str(first)}, package_dir=second)
    assert search.segmentation.folder == second / "seg"
    assert len(search.skipped) == 1 and str(first / "seg") in search.skipped[0] and "weights.sha256" in search.skipped[0]


@linux_xdg
def test_models_flag_without_a_bundle_is_an_error_not_a_fall_back(good, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    bundled = tmp_path / "bundled"
    shutil.copytree(good["seg"], bundled / "seg")  # the 'demo' models it must not fall back to
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    search = find_bundles(empty, environ={}, package_dir=bundled)
    assert search.segmentation is None and search.classification is None
    with pytest.raises(BundleError) as info:
        search.require_any()
    message = str(info.value)
    assert f"no model bundle found in --models {empty}" in message and "not searched in its place" in message
    # --models naming a broken bundle folder: an error naming it
    broken = _write_hostile(good, tmp_path / "broken", "seg", _kw(pretrained=True))
    with pytest.raises(BundleError, match="network.kwargs.pretrained"):
        find_bundles(broken, environ={}, package_dir=bundled)
    # --models holding one good task: the other task still comes from the next locations
    only_seg = tmp_path / "only-seg"
    shutil.copytree(good["seg"], only_seg / "seg")
    shutil.copytree(good["cls"], bundled / "cls")
    search = find_bundles(only_seg, environ={}, package_dir=bundled)
    assert search.segmentation.folder == only_seg / "seg" and search.classification.folder == bundled / "cls"


@linux_xdg
def test_gui_bundle_search_gives_a_message_not_a_traceback(good, tmp_path, monkeypatch):
    """The window's search (jobs.find_models) with hostile bundles in the user folder: no exception; with
    only hostile bundles in --models: nothing found and a message that says why."""
    from braingui.ui import jobs

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(ENV_BUNDLED, str(tmp_path / "none"))
    monkeypatch.delenv(ENV_MODELS, raising=False)
    user = tmp_path / "xdg" / "braingui" / "models"
    for i, (_, kind, edit, _) in enumerate(h for h in HOSTILE if h[0] in ("deeply nested JSON", "huge integer")):
        _write_hostile(good, user / f"h{i}", kind, edit)
    search = jobs.find_models(None)
    assert len(search.skipped) == 2 and search.segmentation is None
    assert "nested too deeply" in search.none_found_message()
    hostile = tmp_path / "hostile-models"
    _write_hostile(good, hostile / "a", "seg", _kw(init_filters=10 ** 40))
    search = jobs.find_models(hostile)
    message = search.none_found_message()
    assert search.segmentation is None and f"--models {hostile}" in message and "init_filters" in message


@pytest.mark.parametrize("name, kwargs", [
    ("SegResNet", {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 8,
                   "blocks_down": [1, 2], "blocks_up": [1], "norm": ["GROUP", {"num_groups": 4}]}),
    ("DenseNet", {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_features": 8, "growth_rate": 4,
                  "block_config": [2, 2], "bn_size": 2}),
])
def test_the_meta_structure_has_the_real_networks_keys_and_shapes(name, kwargs):
    meta = networks.build_network(name, kwargs, device="meta")
    real = networks.build_network(name, kwargs)
    assert all(t.is_meta for t in meta.state_dict().values())
    assert {k: tuple(v.shape) for k, v in meta.state_dict().items()} == {k: tuple(v.shape) for k, v in real.state_dict().items()}
