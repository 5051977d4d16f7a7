import math

import numpy as np
import pytest

from tokenizer.curves import SliderPath, trim_to_length


def close(a, b, tol=1e-6):
    return math.hypot(a[0] - b[0], a[1] - b[1]) <= tol


# --- linear -----------------------------------------------------------------

def test_linear_midpoint_and_ends():
    path = SliderPath("L", [(0, 0), (100, 0)], 100)
    assert path.calculated_length == pytest.approx(100)
    assert path.length == pytest.approx(100)
    assert close(path.position_at(0.5), (50, 0))
    assert close(path.position_at(0), (0, 0))
    assert close(path.position_at(1), (100, 0))


def test_linear_truncated_to_expected_length():
    path = SliderPath("L", [(0, 0), (100, 0)], 50)
    assert path.calculated_length == pytest.approx(100)
    assert path.length == 50
    assert close(path.position_at(1), (50, 0))
    assert close(path.position_at(0.5), (25, 0))
    assert close(tuple(path.polyline[-1]), (50, 0))


def test_linear_extended_along_last_direction():
    path = SliderPath("L", [(0, 0), (100, 0)], 150)
    assert close(path.position_at(1), (150, 0))
    assert close(path.position_at(0.5), (75, 0))


def test_extension_uses_last_nonzero_segment():
    path = SliderPath("L", [(0, 0), (0, 100), (0, 100)], 130)
    assert close(path.position_at(1), (0, 130))


def test_linear_multi_segment_and_duplicates():
    path = SliderPath("L", [(0, 0), (100, 0), (100, 0), (100, 100)])
    assert path.calculated_length == pytest.approx(200)
    assert close(path.position_at(0.75), (100, 50))


def test_progress_is_clipped():
    path = SliderPath("L", [(0, 0), (100, 0)])
    assert close(path.position_at(-1), (0, 0))
    assert close(path.position_at(2), (100, 0))


# --- perfect circle ---------------------------------------------------------

def test_perfect_half_circle():
    path = SliderPath("P", [(0, 0), (50, 50), (100, 0)])
    assert path.calculated_length == pytest.approx(math.pi * 50, abs=0.5)
    assert close(path.position_at(0.5), (50, 50), tol=0.2)
    assert close(path.position_at(1), (100, 0), tol=1e-6)
    # every polyline vertex lies on the circle of radius 50 around (50, 0)
    r = np.hypot(path.polyline[:, 0] - 50, path.polyline[:, 1])
    assert np.allclose(r, 50, atol=1e-6)


def test_perfect_goes_the_way_through_the_middle_point():
    # same ends, middle point on the other side: arc must bulge to negative y
    path = SliderPath("P", [(0, 0), (50, -50), (100, 0)])
    assert close(path.position_at(0.5), (50, -50), tol=0.2)
    # (0,0) -> (100,50) -> (0,100): circle centre (37.5, 50); the arc through the
    # middle point is the major one, so it must reach the circle's far right side
    major = SliderPath("P", [(0, 0), (100, 50), (0, 100)])
    r = math.hypot(37.5, 50)
    assert major.calculated_length > math.pi * r  # more than half the circle
    xs = major.polyline[:, 0]
    assert xs.max() == pytest.approx(37.5 + r, abs=0.2)


def test_perfect_quarter_circle_chord_error_small():
    path = SliderPath("P", [(100, 0), (100 * math.cos(math.pi / 4), 100 * math.sin(math.pi / 4)), (0, 100)])
    assert path.calculated_length == pytest.approx(math.pi * 100 / 2, abs=0.2)
    mids = (path.polyline[1:] + path.polyline[:-1]) / 2
    assert np.all(100 - np.hypot(mids[:, 0], mids[:, 1]) <= 0.1 + 1e-9)


def test_collinear_perfect_falls_back_to_straight_line():
    path = SliderPath("P", [(0, 0), (50, 0), (100, 0)])
    assert path.calculated_length == pytest.approx(100)
    assert close(path.position_at(0.5), (50, 0))
    assert np.all(np.isfinite(path.polyline))


def test_perfect_with_wrong_point_count_is_bezier():
    pts = [(0, 0), (50, 50), (100, 0), (150, 50)]
    a = SliderPath("P", pts)
    b = SliderPath("B", pts)
    assert np.allclose(a.polyline, b.polyline)


# --- bezier -----------------------------------------------------------------

def test_bezier_red_anchor_makes_two_lines():
    path = SliderPath("B", [(0, 0), (100, 0), (100, 0), (100, 100)])
    assert path.calculated_length == pytest.approx(200, abs=1e-6)
    assert close(path.position_at(0.5), (100, 0))
    assert close(path.position_at(0.25), (50, 0))


def test_bezier_quadratic_matches_formula():
    pts = np.array([(0, 0), (100, 200), (200, 0)], dtype=float)
    path = SliderPath("B", pts)
    t = np.linspace(0, 1, 2001)[:, None]
    exact = (1 - t) ** 2 * pts[0] + 2 * t * (1 - t) * pts[1] + t**2 * pts[2]
    exact_len = np.hypot(*np.diff(exact, axis=0).T).sum()
    assert path.calculated_length == pytest.approx(exact_len, abs=0.5)
    # apex of the parabola is at (100, 100) and halfway along by symmetry
    assert close(path.position_at(0.5), (100, 100), tol=0.3)
    # every polyline vertex is on the curve (y as a function of x)
    x = path.polyline[:, 0] / 200
    assert np.allclose(path.polyline[:, 1], 400 * x * (1 - x), atol=1e-6)


def test_unknown_type_is_bezier():
    pts = [(0, 0), (30, 80), (120, 40)]
    assert np.allclose(SliderPath("X", pts).polyline, SliderPath("B", pts).polyline)


def test_high_degree_bezier_is_finite():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 512, size=(120, 2))
    path = SliderPath("B", pts)
    assert np.all(np.isfinite(path.polyline))
    assert close(tuple(path.polyline[0]), tuple(pts[0]))
    assert close(tuple(path.polyline[-1]), tuple(pts[-1]))


# --- catmull ----------------------------------------------------------------

def test_catmull_passes_through_control_points():
    pts = [(0, 0), (100, 50), (200, 0), (300, 80)]
    path = SliderPath("C", pts)
    poly = path.polyline
    assert len(poly) == 50 * (len(pts) - 1) + 1
    for k, p in enumerate(pts):
        assert close(tuple(poly[50 * k]), p, tol=1e-9)


def test_catmull_collinear_even_points_is_straight_and_uniform():
    path = SliderPath("C", [(0, 0), (100, 0), (200, 0)])
    assert np.allclose(path.polyline[:, 1], 0)
    assert path.calculated_length == pytest.approx(200)
    # interior segment is exactly the Catmull-Rom of evenly spaced points: linear in t
    assert close(tuple(path.polyline[75]), (150, 0), tol=1e-9)


def test_catmull_first_segment_uses_repeated_start():
    # v1 = v2 = (0,0), v3 = (100,0), v4 = (100,100): hand-computed point at t = 0.5
    path = SliderPath("C", [(0, 0), (100, 0), (100, 100)])
    v1 = v2 = np.array([0.0, 0.0]); v3 = np.array([100.0, 0.0]); v4 = np.array([100.0, 100.0])
    t = 0.5
    expect = 0.5 * (2 * v2 + (v3 - v1) * t + (2 * v1 - 5 * v2 + 4 * v3 - v4) * t**2
                    + (3 * v2 - v1 - 3 * v3 + v4) * t**3)
    assert close(tuple(path.polyline[25]), tuple(expect), tol=1e-9)


# --- cross-check against the `slider` package -------------------------------

slider_curve = pytest.importorskip("slider.curve")
from slider.position import Position  # noqa: E402


@pytest.mark.parametrize(
    "kind, pts, length",
    [
        ("L", [(0, 0), (100, 0), (100, 100)], 200),
        ("L", [(10, 10), (200, 300), (400, 50)], None),
        ("L", [(10, 10), (200, 300)], 250),
        ("P", [(0, 0), (50, 50), (100, 0)], math.pi * 50),
        ("P", [(100, 100), (200, 150), (300, 100)], 150),
        ("P", [(256, 192), (300, 100), (150, 50)], 200),
        ("B", [(0, 0), (100, 20), (200, 20), (300, 0)], None),
        ("B", [(0, 0), (100, 0), (100, 0), (100, 100)], 200),
        ("B", [(0, 0), (100, 0), (100, 0), (100, 100)], None),
        ("B", [(0, 0), (60, 80)], 70),
        ("B", [(50, 50), (150, 50)], 100),
    ],
)
def test_matches_slider_package(kind, pts, length):
    # `slider` maps progress onto a multi-piece path by the pieces' full lengths
    # even when truncated, so truncation is only compared on single-piece paths.
    ours = SliderPath(kind, pts, length)
    req = ours.length
    theirs = slider_curve.Curve.from_kind_and_points(kind, [Position(x, y) for x, y in pts], req)
    for t in (0, 0.25, 0.5, 0.75, 1):
        p = theirs(t)
        assert close(ours.position_at(t), (p.x, p.y), tol=1.5), (t, ours.position_at(t), p)


# --- degenerate inputs ------------------------------------------------------

@pytest.mark.parametrize("kind", ["B", "P", "C", "L"])
@pytest.mark.parametrize("expected", [None, 0, 50])
def test_single_point(kind, expected):
    path = SliderPath(kind, [(10, 20)], expected)
    for t in (0, 0.5, 1):
        assert close(path.position_at(t), (10, 20))
    assert path.calculated_length == 0


@pytest.mark.parametrize("kind", ["B", "P", "C", "L"])
def test_all_points_equal_with_positive_length_stays_at_head(kind):
    path = SliderPath(kind, [(5, 5), (5, 5), (5, 5)], 100)
    assert path.calculated_length == 0
    assert path.length == 100
    for t in (0, 0.3, 1):
        assert close(path.position_at(t), (5, 5))
    assert np.all(np.isfinite(path.polyline))


def test_zero_expected_length_uses_calculated():
    path = SliderPath("L", [(0, 0), (30, 40)], 0)
    assert path.length == pytest.approx(50)
    assert close(path.position_at(1), (30, 40))


@pytest.mark.parametrize("kind", ["B", "P", "C", "L"])
def test_huge_coordinates_are_finite(kind):
    pts = [(0, 0), (1e6, 5e5), (-1e6, 1e6), (2e6, -1e6)]
    for p in (pts, pts[:3]):
        path = SliderPath(kind, p, 1e6)
        assert np.all(np.isfinite(path.polyline))
        for t in (0, 0.5, 1):
            assert all(math.isfinite(v) for v in path.position_at(t))


def test_accepts_integer_and_numpy_inputs():
    a = SliderPath("B", [(0, 0), (np.int32(50), np.int64(80)), (100.0, 0)])
    b = SliderPath("B", np.array([[0, 0], [50, 80], [100, 0]]))
    assert np.allclose(a.polyline, b.polyline)


# --- trimming the control points to the slider's length ---------------------

@pytest.mark.parametrize("curve_type, points", [
    ("L", [(0, 0), (100, 0), (100, 200)]),
    ("P", [(0, 0), (100, 100), (200, 0)]),
    ("B", [(0, 0), (300, 0), (300, 300)]),
    ("B", [(0, 0), (40, 0), (40, 0), (40, 200), (300, 200)]),  # a red anchor before the end
])
def test_trimmed_control_points_end_where_the_ball_path_ends(curve_type, points):
    length = 120.0
    trimmed_type, trimmed = trim_to_length(curve_type, points, length)
    assert trimmed_type == curve_type and trimmed[0] == (0.0, 0.0)
    new = SliderPath(trimmed_type, trimmed)
    assert new.calculated_length == pytest.approx(length, abs=0.3)
    played = SliderPath(curve_type, points, length)
    for progress in np.linspace(0, 1, 21):
        assert close(SliderPath(trimmed_type, trimmed, length).position_at(progress), played.position_at(progress), 0.3)
    if curve_type == "B" and len(points) == 5:
        assert trimmed[1:3] == [(40.0, 0.0), (40.0, 0.0)]  # the red anchor stays


def test_paths_no_longer_than_the_slider_and_catmull_paths_are_not_trimmed():
    assert trim_to_length("L", [(0, 0), (100, 0)], 150) == ("L", [(0.0, 0.0), (100.0, 0.0)])
    assert trim_to_length("L", [(0, 0), (100.5, 0)], 100) == ("L", [(0.0, 0.0), (100.5, 0.0)])  # within 1 px
    catmull = [(0.0, 0.0), (100.0, 50.0), (200.0, 0.0), (300.0, 50.0)]
    assert trim_to_length("C", catmull, 50) == ("C", catmull)
