"""osu! slider path geometry: turns a slider's curve type and control points into
a polyline (approximated the way osu! does) and answers "where is the ball at progress p"."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

BEZIER_TOLERANCE = 0.25  # max distance (osu! px) between a bezier and its polyline
ARC_TOLERANCE = 0.1  # max chord error (osu! px) for perfect-circle arcs
CATMULL_DETAIL = 50  # samples per catmull segment, as in osu!
MAX_PIECE_POINTS = 4096  # cap so absurd coordinates cannot explode the point count


def _seg_lengths(points: np.ndarray) -> np.ndarray:
    """Lengths of the consecutive segments of a polyline."""
    d = np.diff(points, axis=0)
    return np.hypot(d[:, 0], d[:, 1])


def _bezier(points: np.ndarray) -> np.ndarray:
    """Polyline for one bezier curve of any degree, within BEZIER_TOLERANCE.

    Samples uniformly in t with a count derived from the bound
    |curve - chord| <= h^2/8 * max|B''| and max|B''| <= d(d-1) * max|second difference|,
    so the whole curve is evaluated in one vectorised pass instead of by recursion.
    """
    degree = len(points) - 1
    if degree < 1:
        return points[:1]
    if degree == 1:
        return points
    second = points[2:] - 2.0 * points[1:-1] + points[:-2]
    bound = degree * (degree - 1) * float(np.hypot(second[:, 0], second[:, 1]).max())
    intervals = math.ceil(math.sqrt(bound / (8.0 * BEZIER_TOLERANCE))) if bound > 0 else 1
    intervals = min(max(intervals, 1), MAX_PIECE_POINTS)
    if intervals == 1:
        return points[[0, -1]]
    # Bernstein weights in log space: stays finite for high degrees where
    # binomial coefficients would overflow. Endpoints are added exactly.
    t = np.arange(1, intervals, dtype=np.float64)[:, None] / intervals
    i = np.arange(degree + 1, dtype=np.float64)
    log_comb = np.array([math.lgamma(degree + 1) - math.lgamma(k + 1) - math.lgamma(degree - k + 1)
                         for k in range(degree + 1)])
    weights = np.exp(log_comb + i * np.log(t) + (degree - i) * np.log1p(-t))
    return np.vstack((points[:1], weights @ points, points[-1:]))


def _multi_bezier(points: np.ndarray) -> np.ndarray:
    """Beziers split at repeated points ("red anchors"), joined end to end."""
    same = np.all(points[1:] == points[:-1], axis=1)
    cuts = np.flatnonzero(same) + 1  # each repeated point starts a new segment
    pieces = []
    start = 0
    for end in list(cuts) + [len(points)]:
        segment = _bezier(points[start:end])
        pieces.append(segment if not pieces else segment[1:])  # shared anchor once
        start = end
    return np.vstack(pieces)


def _circular_arc(points: np.ndarray) -> np.ndarray | None:
    """Arc from p0 through p1 to p2, or None when no sensible circle exists."""
    a, b, c = points
    ab, ac = b - a, c - a
    cross = ab[0] * ac[1] - ab[1] * ac[0]
    scale = float(np.hypot(*ab) * np.hypot(*ac))
    if abs(cross) < 1e-3 or abs(cross) <= 1e-9 * scale:
        return None  # (nearly) collinear: osu! uses a bezier instead
    # circumcentre relative to a
    ab2, ac2 = ab @ ab, ac @ ac
    centre = a + np.array([ac[1] * ab2 - ab[1] * ac2, ab[0] * ac2 - ac[0] * ab2]) / (2.0 * cross)
    radius = float(np.hypot(*(a - centre)))
    if not (np.all(np.isfinite(centre)) and math.isfinite(radius) and radius > 0):
        return None
    start = math.atan2(a[1] - centre[1], a[0] - centre[0])
    end = math.atan2(c[1] - centre[1], c[0] - centre[0])
    # The turning direction a -> b -> c decides which way round the arc goes.
    if cross > 0:
        sweep = (end - start) % (2 * math.pi)
    else:
        sweep = -((start - end) % (2 * math.pi))
    if 2 * radius <= ARC_TOLERANCE:
        count = 2
    else:
        step = 2 * math.acos(1 - ARC_TOLERANCE / radius)
        count = max(2, math.ceil(abs(sweep) / step) + 1)
    count = min(count, MAX_PIECE_POINTS)
    angles = start + sweep * np.linspace(0.0, 1.0, count)
    arc = centre + radius * np.column_stack((np.cos(angles), np.sin(angles)))
    arc[0], arc[-1] = a, c  # exact endpoints despite rounding
    return arc


def _catmull(points: np.ndarray) -> np.ndarray:
    """Uniform Catmull-Rom through the points, CATMULL_DETAIL samples per segment."""
    n = len(points)
    if n < 2:
        return points[:1]
    idx = np.arange(n - 1)
    v2 = points[idx]
    v1 = points[np.maximum(idx - 1, 0)]  # first segment: previous point := itself
    v3 = points[idx + 1]
    v4 = np.where((idx + 2 < n)[:, None], points[np.minimum(idx + 2, n - 1)], 2 * v3 - v2)
    t = (np.arange(CATMULL_DETAIL, dtype=np.float64) / CATMULL_DETAIL)[None, :, None]
    v1, v2, v3, v4 = (v[:, None, :] for v in (v1, v2, v3, v4))
    curve = 0.5 * (2 * v2 + (v3 - v1) * t + (2 * v1 - 5 * v2 + 4 * v3 - v4) * t**2
                   + (3 * v2 - v1 - 3 * v3 + v4) * t**3)
    return np.vstack((curve.reshape(-1, 2), points[-1:]))


def _approximate(curve_type: str, points: np.ndarray) -> np.ndarray:
    """Full (unscaled) polyline for a curve type, with osu!'s fallbacks."""
    if curve_type == "L":
        return points
    if curve_type == "C":
        return _catmull(points)
    if curve_type == "P" and len(points) == 3:
        arc = _circular_arc(points)
        if arc is not None:
            return arc
    return _multi_bezier(points)


class SliderPath:
    """Geometry of one osu! slider path, approximated the way osu! does.

    The polyline is cut or straight-extended to `expected_length` (the beatmap's
    pixel length), because that, not the control points, decides where a slider ends.
    """

    def __init__(self, curve_type: str, control_points: Iterable[Sequence[float]],
                 expected_length: float | None = None) -> None:
        points = np.asarray([(float(x), float(y)) for x, y in control_points], dtype=np.float64)
        if len(points) == 0:
            raise ValueError("a slider path needs at least one control point (its head)")
        full = _approximate(curve_type if curve_type in ("B", "P", "C", "L") else "B", points)
        seg = _seg_lengths(full)
        self.calculated_length: float = float(seg.sum())
        wanted = float(expected_length) if expected_length is not None else 0.0
        self.length: float = wanted if math.isfinite(wanted) and wanted > 0 else self.calculated_length
        self.polyline: np.ndarray = self._fit(full, seg, self.length)
        self._cumulative = np.concatenate(([0.0], np.cumsum(_seg_lengths(self.polyline))))

    @staticmethod
    def _fit(full: np.ndarray, seg: np.ndarray, target: float) -> np.ndarray:
        """Cut the polyline at `target`, or extend its last direction up to it."""
        cumulative = np.concatenate(([0.0], np.cumsum(seg)))
        total = cumulative[-1]
        if target < total:
            i = int(np.searchsorted(cumulative, target, side="right"))  # cum[i-1] <= target < cum[i]
            frac = (target - cumulative[i - 1]) / seg[i - 1]
            end = full[i - 1] + frac * (full[i] - full[i - 1])
            return np.vstack((full[:i], end))
        moving = np.flatnonzero(seg > 0)
        if target == total or len(moving) == 0:
            return full  # exact fit, or a zero-length path that stays at its head
        j = moving[-1]
        direction = (full[j + 1] - full[j]) / seg[j]
        return np.vstack((full, full[-1] + direction * (target - total)))

    def position_at(self, progress: float) -> tuple[float, float]:
        """Point at distance progress * length along the path (progress clipped to [0, 1])."""
        p = min(max(float(progress), 0.0), 1.0) if math.isfinite(progress) else 0.0
        distance = p * self._cumulative[-1]
        x = np.interp(distance, self._cumulative, self.polyline[:, 0])
        y = np.interp(distance, self._cumulative, self.polyline[:, 1])
        return float(x), float(y)


TRIM_SLACK_PX = 1.0  # a path at most this much longer than its slider keeps its control points


def trim_to_length(curve_type: str, control_points: Sequence[Sequence[float]],
                   length: float) -> tuple[str, list[tuple[float, float]]]:
    """Control points (head first) for the same ball path that end where it ends, `length` px along.

    osu! ignores the part of a path past the slider's length, but an editor still shows its anchors, and
    the playfield check counts them: a generated slider often has anchors several times its length away.
    Linear paths are cut at the end, a bezier piece is split there (de Casteljau), an arc gets a new middle
    and end on the same circle. Paths not longer than `length` (osu! extends those straight) and catmull
    paths come back unchanged.
    """
    points = np.asarray([(float(x), float(y)) for x, y in control_points], dtype=np.float64)
    if curve_type == "C" or not length > 0 or SliderPath(curve_type, points).calculated_length <= length + TRIM_SLACK_PX:
        return curve_type, _pairs(points)
    if curve_type == "P" and len(points) == 3 and _circular_arc(points) is not None:
        cut = SliderPath("P", points, length)
        return "P", _pairs([points[0], cut.position_at(0.5), cut.position_at(1.0)])
    if curve_type == "L":
        cumulative = np.concatenate(([0.0], np.cumsum(_seg_lengths(points))))
        kept = int(np.searchsorted(cumulative, length, side="left"))  # points[:kept] lie before the end
        return "L", _pairs([*points[:kept], SliderPath("L", points, length).position_at(1.0)])
    return "B", _pairs(_bezier_cut(points, length))


def _pairs(points) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


def _bezier_cut(points: np.ndarray, length: float) -> np.ndarray:
    """Red-anchored bezier control points cut `length` px along: the pieces before the end, then the piece
    holding it split at the parameter that reaches that far."""
    starts = [0, *(np.flatnonzero(np.all(points[1:] == points[:-1], axis=1)) + 1)]
    travelled = 0.0
    for start, end in zip(starts, [*starts[1:], len(points)]):
        piece = points[start:end]
        polyline = _bezier(piece)
        cumulative = np.concatenate(([0.0], np.cumsum(_seg_lengths(polyline))))
        if travelled + cumulative[-1] >= length and cumulative[-1] > 0:
            # _bezier samples t evenly, so its vertex k lies at t = k / (vertices - 1)
            t = float(np.interp(length - travelled, cumulative, np.linspace(0.0, 1.0, len(polyline))))
            return np.vstack((points[:start], _split_left(piece, t)))
        travelled += cumulative[-1]
    return points


def _split_left(piece: np.ndarray, t: float) -> np.ndarray:
    """The control points of a bezier's part from t = 0 to t (de Casteljau)."""
    left, level = [piece[0]], piece
    while len(level) > 1:
        level = (1 - t) * level[:-1] + t * level[1:]
        left.append(level[0])
    return np.array(left)
