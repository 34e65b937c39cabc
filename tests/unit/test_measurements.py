"""RANO-style measurements (braingui.measurements) on synthetic ellipsoids with known diameters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from braingui import labels as lab
from braingui.measurements import MEASURABLE_MM, PERPENDICULAR_TOLERANCE_DEG, measure, measurements_text


def ellipsoid(shape, spacing, centre_vox, semi_mm, angle_deg=0.0, value=lab.ENHANCING, out=None):
    """Label ``value`` inside an ellipsoid (semi-axes in mm; rotated by ``angle_deg`` in the axial plane)."""
    out = np.zeros(shape, dtype=np.uint8) if out is None else out
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre_vox, spacing)], indexing="ij")
    t = math.radians(angle_deg)
    u = grids[0] * math.cos(t) + grids[1] * math.sin(t)
    v = -grids[0] * math.sin(t) + grids[1] * math.cos(t)
    inside = (u / semi_mm[0]) ** 2 + (v / semi_mm[1]) ** 2 + (grids[2] / semi_mm[2]) ** 2 <= 1.0
    out[inside] = value
    return out


def affine_of(spacing, origin=(0.0, 0.0, 0.0)):
    a = np.diag(list(spacing) + [1.0])
    a[:3, 3] = origin
    return a


def end_distance_mm(ends, spacing):
    (x0, y0, _), (x1, y1, _) = ends
    return math.hypot((x1 - x0) * spacing[0], (y1 - y0) * spacing[1])


@pytest.mark.parametrize("spacing,angle", [((1.0, 1.0, 1.0), 0.0), ((0.8, 1.3, 3.0), 0.0),
                                           ((1.0, 1.0, 2.0), 30.0), ((0.9, 0.9, 5.0), 45.0)])
def test_ellipsoid_diameters_within_one_voxel(spacing, angle):
    shape = (110, 90, 24)
    centre = (55, 45, 12)
    semi = (24.0, 11.0, 10.0)  # 48 x 22 mm in the axial plane
    labels = ellipsoid(shape, spacing, centre, semi, angle)
    m = measure(labels, affine_of(spacing))
    assert m.region == "ET" and m.count == 1
    les = m.lesions[0]
    voxel = max(spacing[:2])
    assert abs(les.longest_mm - 2 * semi[0]) <= voxel
    assert abs(les.perpendicular_mm - 2 * semi[1]) <= voxel
    assert les.slice_index == centre[2]  # the largest section is the centre slice
    assert les.as_dict()["slice"] == centre[2] + 1
    assert abs(les.perpendicular_angle_deg - 90.0) <= PERPENDICULAR_TOLERANCE_DEG + 1e-6
    # the ends drawn in the panes are the diameters measured
    assert end_distance_mm(les.longest_ends, spacing) == pytest.approx(les.longest_mm, abs=1e-9)
    assert end_distance_mm(les.perpendicular_ends, spacing) == pytest.approx(les.perpendicular_mm, abs=1e-9)
    assert all(end[2] == centre[2] for end in les.longest_ends + les.perpendicular_ends)
    assert les.product_mm2 == pytest.approx(les.longest_mm * les.perpendicular_mm)
    assert les.measurable
    assert np.allclose(les.centroid_voxel, centre, atol=0.01)
    assert les.voxels == int((labels == lab.ENHANCING).sum())


def test_bar_measures_edge_to_edge_exactly():
    """A bar n pixels long and one wide measures n pixels (outline through the pixel edges)."""
    spacing = (0.7, 1.9, 4.0)
    labels = np.zeros((30, 8, 3), np.uint8)
    labels[5:25, 4, 1] = lab.ENHANCING
    les = measure(labels, affine_of(spacing), min_lesion_mm=0).lesions[0]
    assert les.longest_mm == pytest.approx(20 * 0.7)
    assert les.perpendicular_mm == pytest.approx(1.9)
    assert not les.measurable


def test_oblique_affine_measures_in_world_millimetres():
    """A rotated (oblique) canonical grid: distances come from the affine, not from the axis indices."""
    spacing = (1.0, 1.0, 1.0)
    labels = np.zeros((40, 10, 3), np.uint8)
    labels[5:35, 5, 1] = lab.ENHANCING  # 30 voxels along x
    t = math.radians(20)
    rot = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 1.0, 2.0])
    les = measure(labels, affine).lesions[0]
    assert les.longest_mm == pytest.approx(30 * 1.5)
    assert les.volume_ml == pytest.approx(30 * 3.0 / 1000)


def test_two_lesions_counted_ordered_and_summed():
    spacing = (1.0, 1.0, 2.0)
    shape = (120, 70, 20)
    labels = ellipsoid(shape, spacing, (30, 35, 10), (15.0, 9.0, 8.0))    # 30 x 18 mm
    ellipsoid(shape, spacing, (90, 35, 10), (20.0, 12.0, 8.0), out=labels)  # 40 x 24 mm, larger product
    m = measure(labels, affine_of(spacing))
    assert m.count == 2 and m.measurable_count == 2
    first, second = m.lesions
    assert (first.index, second.index) == (1, 2)
    assert first.product_mm2 > second.product_mm2
    assert abs(first.longest_mm - 40) <= 1 and abs(second.longest_mm - 30) <= 1
    assert first.centroid_voxel[0] == pytest.approx(90, abs=0.01)
    assert m.sum_of_products_mm2 == pytest.approx(first.product_mm2 + second.product_mm2)
    text = measurements_text(m)
    assert text.startswith("2 enhancing lesions; largest ")
    assert f"{first.longest_mm:.0f} x {first.perpendicular_mm:.0f} mm = {first.product_mm2:.0f} mm" in text
    assert "2 measurable" in text


def test_small_lesion_is_not_measurable_and_not_in_the_sum():
    spacing = (1.0, 1.0, 1.0)
    shape = (80, 60, 30)
    labels = ellipsoid(shape, spacing, (25, 30, 15), (14.0, 10.0, 10.0))    # 28 x 20 mm
    ellipsoid(shape, spacing, (62, 30, 15), (7.0, 3.5, 4.0), out=labels)    # 14 x 7 mm: one diameter < 10
    m = measure(labels, affine_of(spacing))
    assert m.count == 2 and m.measurable_count == 1
    small = m.lesions[1]
    assert small.longest_mm >= MEASURABLE_MM > small.perpendicular_mm
    assert not small.measurable
    assert m.sum_of_products_mm2 == pytest.approx(m.lesions[0].product_mm2)
    assert m.sum_of_products_all_mm2 == pytest.approx(m.lesions[0].product_mm2 + small.product_mm2)


def test_single_small_lesion_text_says_not_measurable():
    labels = ellipsoid((40, 40, 10), (1, 1, 1), (20, 20, 5), (4.0, 3.5, 2.0))
    text = measurements_text(measure(labels, affine_of((1, 1, 1))))
    assert text.startswith("1 enhancing lesion; ") and text.endswith("not measurable (< 10 mm)")


def test_specks_are_not_lesions():
    labels = ellipsoid((60, 60, 20), (1, 1, 1), (30, 30, 10), (10.0, 8.0, 5.0))
    labels[2, 2, 2] = labels[50, 5, 15] = lab.ENHANCING  # one-voxel specks: 1 mm across
    m = measure(labels, affine_of((1, 1, 1)))
    assert m.count == 1 and m.specks_ignored == 2
    assert measure(labels, affine_of((1, 1, 1)), min_lesion_mm=0).count == 3


def test_corner_touching_voxels_are_one_lesion_26_connectivity():
    labels = np.zeros((30, 30, 6), np.uint8)
    labels[2:14, 2:14, 1:3] = lab.ENHANCING
    labels[14:26, 14:26, 3:5] = lab.ENHANCING  # touches the first block at one corner only
    assert measure(labels, affine_of((1, 1, 1))).count == 1


def test_core_is_measured_when_there_is_no_enhancing_tumour():
    labels = ellipsoid((60, 60, 20), (1, 1, 1), (30, 30, 10), (20.0, 14.0, 8.0), value=lab.EDEMA)
    ellipsoid((60, 60, 20), (1, 1, 1), (30, 30, 10), (12.0, 8.0, 6.0), value=lab.CORE, out=labels)
    m = measure(labels, affine_of((1, 1, 1)))
    assert m.region == "TC" and m.count == 1
    assert abs(m.lesions[0].longest_mm - 24) <= 1
    assert "no enhancing tumour" in measurements_text(m)


def test_nothing_to_measure():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:5, 2:5, 2:5] = lab.EDEMA
    m = measure(labels, np.eye(4))
    assert m.region is None and m.count == 0 and m.sum_of_products_mm2 == 0
    assert "nothing measured" in measurements_text(m)
    assert "nothing measured" in measurements_text(None)


def test_as_dict_is_strict_json_with_the_documented_fields():
    labels = ellipsoid((50, 50, 12), (1, 1, 2), (25, 25, 6), (15.0, 9.0, 8.0))
    d = measure(labels, affine_of((1, 1, 2), origin=(-10, 5, 3))).as_dict()
    json.dumps(d, allow_nan=False)
    assert d["lesion_count"] == 1 and d["region"] == "ET" and d["connectivity"] == 26
    les = d["lesions"][0]
    for key in ("slice", "longest_mm", "perpendicular_mm", "product_mm2", "measurable", "centroid_voxel",
                "centroid_world_mm", "longest_ends_voxel", "perpendicular_ends_voxel"):
        assert key in les
    assert les["centroid_world_mm"] == pytest.approx([25 - 10, 25 + 5, 12 + 3], abs=0.01)
    assert d["text"] == measurements_text(measure(labels, affine_of((1, 1, 2))))


def test_ring_enhancing_lesion_is_measured_across_its_necrotic_centre():
    spacing = (1.0, 1.0, 2.0)
    shape = (70, 60, 16)
    labels = ellipsoid(shape, spacing, (35, 30, 8), (22.0, 16.0, 12.0))                  # rim: 44 x 32 mm outside
    ellipsoid(shape, spacing, (35, 30, 8), (17.0, 11.0, 8.0), value=lab.CORE, out=labels)  # necrotic centre
    m = measure(labels, affine_of(spacing))
    assert m.region == "ET" and m.count == 1
    les = m.lesions[0]
    assert abs(les.longest_mm - 44) <= 1 and abs(les.perpendicular_mm - 32) <= 1
