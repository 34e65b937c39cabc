"""The Qt-free display model: state, jumps, read-out words, the export view record, the auto window,
and its small signal - all without a widget."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from braingui.case import Case
from braingui.discovery import MODALITIES, CaseFiles
from braingui.display import planes
from braingui.display.context import WINDOW_PERCENTILES, DisplayContext
from braingui.display.signal import Signal
from braingui.geometry import Grid
from braingui.results import AnalysisResult

SHAPE = (12, 14, 10)


def make_case(labels: np.ndarray | None = None) -> Case:
    """A RAS (identity affine) case: a box 'brain' of positive values inside a zero border."""
    images = {}
    for i, m in enumerate(MODALITIES):
        v = np.zeros(SHAPE, np.float32)
        v[2:10, 2:12, 1:9] = np.arange(8 * 10 * 8, dtype=np.float32).reshape(8, 10, 8) + 100 * (i + 1)
        v.flags.writeable = False
        images[m] = v
    return Case("Case01", CaseFiles("Case01", None), Grid.from_original(SHAPE, np.eye(4)), images, labels)


def tumour(at_z: int, extra: tuple[int, int] = (0, 0)) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[4:8, 5:9, at_z] = 2          # 16 voxels on slice at_z, centred at (5.5, 6.5)
    lab[4:6, 5:7, at_z - 1] = 1      # 4 voxels on the slice below
    if extra[1]:
        lab[3, 3, extra[0]] = 4
    return lab


def test_a_context_needs_no_qt():
    ctx = DisplayContext()
    ctx.set_case(make_case())
    assert DisplayContext.__mro__ == (DisplayContext, object)  # a plain class (the import contract checks the module)
    assert ctx.shape == SHAPE and ctx.cursor == (6, 7, 5) and not ctx.navigated


def test_changed_carries_what_changed_and_user_moves_set_navigated():
    ctx = DisplayContext()
    seen = []
    ctx.changed.connect(seen.append)
    ctx.set_case(make_case(tumour(7)))
    assert seen[-1] == {"data", "plane", "cursor", "look"}
    ctx.set_cursor((1, 1, 1), user=False)
    assert seen[-1] == {"cursor"} and not ctx.navigated
    ctx.set_slice(3)
    assert ctx.navigated and ctx.slice_index == 3
    ctx.set_case(make_case())
    assert not ctx.navigated  # a new case starts afresh


def test_jump_to_tumour_goes_to_the_largest_slice_and_its_centre():
    ctx = DisplayContext()
    ctx.set_case(make_case(tumour(7)))
    assert ctx.jump_to_tumour(user=False) and not ctx.navigated
    assert ctx.cursor == (round(5.5), round(6.5), 7)  # numpy rounds half to even: (6, 6, 7)
    ctx.set_plane("sagittal")
    ctx.jump_to_tumour()
    area = planes.per_slice(ctx.labels > 0, "sagittal")
    assert ctx.slice_index == int(area.argmax()) and ctx.navigated


def test_jumps_without_labels_or_heat_move_nothing():
    ctx = DisplayContext()
    ctx.set_case(make_case())
    before = ctx.cursor
    assert not ctx.jump_to_tumour() and not ctx.jump_to_hottest()
    assert ctx.cursor == before and ctx.tumour_voxel() is None and ctx.hottest_voxel() is None


def test_jump_to_hottest_follows_the_class_shown():
    ctx = DisplayContext()
    ctx.set_case(make_case())
    cam_g, cam_a = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.float32)
    cam_g[3, 4, 5], cam_a[9, 10, 2] = 1.0, 1.0
    result = AnalysisResult(case_id="Case01", labels=tumour(6), cams={"G": cam_g, "A": cam_a}, predicted_class="G")
    ctx.set_result(result)
    assert ctx.jump_to_hottest() and ctx.cursor == (3, 4, 5)
    ctx.set_cam_class("A")
    ctx.jump_to_hottest()
    assert ctx.cursor == (9, 10, 2)


def test_view_record_counts_slices_as_the_window_does():
    ctx = DisplayContext()
    ctx.set_case(make_case())
    ctx.set_slice(0)
    rec = ctx.view_record()
    assert rec["slice"] == 1 and rec["n_slices"] == SHAPE[2] and rec["cursor_voxel"][2] == 0
    ctx.set_slice(SHAPE[2] - 1)
    assert ctx.view_record()["slice"] == SHAPE[2]
    assert set(rec) >= {"plane", "modality", "convention", "window", "colormap", "gradcam_class", "labels_shown"}


def test_describe_voxel_gives_file_index_world_intensity_and_label():
    ctx = DisplayContext()
    ctx.set_case(make_case(tumour(7)))
    words = ctx.describe_voxel((5, 6, 7))
    assert words["voxel"] == "(5, 6, 7)" and words["world"] == "(5.0, 6.0, 7.0) mm"
    assert words["intensity"] == f"FLAIR {float(ctx.image[5, 6, 7]):.4g}" and words["label"] == "edema"


def test_default_window_uses_percentiles_inside_the_brain_only():
    ctx = DisplayContext()
    case = make_case()
    ctx.set_case(case)
    brain = np.zeros(SHAPE, bool)
    for v in case.images.values():
        brain |= v != 0
    expect = np.percentile(case.images["flair"][brain], WINDOW_PERCENTILES)
    assert ctx.default_window("flair") == pytest.approx(tuple(expect))
    # a bright enhancing spot of 0.5 % of the brain is not clipped to white by the upper end
    assert WINDOW_PERCENTILES[1] > 99.5


def test_signal_holds_bound_methods_weakly_and_reports_the_first_error():
    sig = Signal()

    class View:
        def __init__(self):
            self.got = []

        def on(self, value):
            self.got.append(value)

    v = View()
    sig.connect(v.on)
    sig.connect(v.on)  # connecting twice calls once
    sig.emit(1)
    assert v.got == [1] and len(sig) == 1
    del v
    gc.collect()
    assert len(sig) == 0
    calls = []

    def boom(_):
        raise ValueError("boom")

    sig.connect(boom)
    sig.connect(calls.append)
    with pytest.raises(ValueError):
        sig.emit(2)
    assert calls == [2]  # the error did not stop the others
    sig.disconnect(boom)
    sig.emit(3)
    assert calls == [2, 3]
