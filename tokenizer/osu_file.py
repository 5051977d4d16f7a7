"""The .osu file model: read every format version (v3-v14, lazer's v128) and write v14.

The reader normalises to v14 semantics (old maps get osu!'s +24 ms offset) so that writing v14
and reading it back gives the same objects, timing and settings. Bad lines are skipped with a
warning naming the file and line; input that cannot be a beatmap raises BeatmapError.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .curves import SliderPath
from .timing import Timing, TimingPoint

CIRCLE, SLIDER, SPINNER, HOLD = "circle", "slider", "spinner", "hold"
LATEST_VERSION = 14
LAZER_VERSION = 128
OLD_MAP_OFFSET_MS = 24  # osu! plays maps older than v5 24 ms late
MAX_COORDINATE = 131072.0  # osu! refuses coordinates beyond this
MAX_TIME = 2**31 - 1
MAX_SLIDES = 9000
KEY_VALUE_SECTIONS = ("General", "Editor", "Metadata", "Difficulty")
SECTION_ORDER = ("General", "Editor", "Metadata", "Difficulty", "Events", "TimingPoints", "Colours", "HitObjects")


class BeatmapError(Exception):
    """The input is not a usable beatmap; the message names the file (and line)."""


class _BadLine(ValueError):
    """One line that cannot be used; the reader skips it with a warning."""


@dataclass
class HitSample:
    normal_set: int = 0
    addition_set: int = 0
    index: int = 0
    volume: int = 0
    filename: str = ""


@dataclass
class HitObject:
    x: float
    y: float
    time: float
    kind: str
    new_combo: bool = False
    combo_skip: int = 0
    hitsound: int = 0
    sample: HitSample = field(default_factory=HitSample)
    end_time: float | None = None  # spinners and holds: from the file; sliders: computed
    curve_type: str = ""  # sliders only from here on
    curve_points: list[tuple[float, float]] = field(default_factory=list)  # after the head
    slides: int = 1
    length: float = 0.0  # the pixel length as written (0 means "the path's own length")
    edge_sounds: list[int] = field(default_factory=list)
    edge_sets: list[tuple[int, int]] = field(default_factory=list)

    @property
    def finish(self) -> float:
        """When the object is over: its end time (sliders, spinners, holds), else its time."""
        return self.end_time if self.end_time is not None else self.time

    @property
    def span_duration(self) -> float:
        return (self.finish - self.time) / max(self.slides, 1)

    @property
    def end_position(self) -> tuple[float, float]:
        """Where the object leaves the cursor: a slider's path end after an odd number of slides, else its head."""
        if self.kind == SLIDER and self.slides % 2 == 1:
            return self.path().position_at(1.0)
        return self.x, self.y

    def path(self) -> SliderPath:
        """The slider's path geometry, cut or extended to its pixel length."""
        points = [(self.x, self.y), *self.curve_points]
        return SliderPath(self.curve_type, points, self.length if self.length > 0 else None)


@dataclass
class Beatmap:
    format_version: int = LATEST_VERSION
    general: dict[str, str] = field(default_factory=dict)
    editor: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    difficulty: dict[str, str] = field(default_factory=dict)
    background: str | None = None
    video: tuple[float, str] | None = None
    breaks: list[tuple[float, float]] = field(default_factory=list)
    storyboard: list[str] = field(default_factory=list)  # other [Events] lines, kept verbatim
    timing_points: list[TimingPoint] = field(default_factory=list)
    colours: dict[str, str] = field(default_factory=dict)
    hit_objects: list[HitObject] = field(default_factory=list)
    extra_sections: dict[str, list[str]] = field(default_factory=dict)  # e.g. [Variables]
    source: str = "<beatmap>"
    warnings: list[str] = field(default_factory=list)

    # Typed settings, with osu!'s defaults for keys a file leaves out.
    @property
    def mode(self) -> int:
        return int(_number(self.general.get("Mode", "0"), 0))

    @property
    def hp(self) -> float:
        return _number(self.difficulty.get("HPDrainRate"), 5.0)

    @property
    def cs(self) -> float:
        return _number(self.difficulty.get("CircleSize"), 5.0)

    @property
    def od(self) -> float:
        return _number(self.difficulty.get("OverallDifficulty"), 5.0)

    @property
    def ar(self) -> float:
        return _number(self.difficulty.get("ApproachRate"), self.od)

    @property
    def slider_multiplier(self) -> float:
        return min(max(_number(self.difficulty.get("SliderMultiplier"), 1.4), 0.4), 3.6)

    @property
    def slider_tick_rate(self) -> float:
        return _number(self.difficulty.get("SliderTickRate"), 1.0)

    @property
    def keycount(self) -> int:
        return min(max(round(self.cs), 1), 18)

    @property
    def timing(self) -> Timing:
        return Timing(self.timing_points)

    def compute_end_times(self) -> None:
        """Slider end = start + slides * length / (100 * SM * SV) * beat length, as osu! does."""
        timing = self.timing
        for obj in self.hit_objects:
            if obj.kind != SLIDER:
                continue
            length = obj.length if obj.length > 0 else obj.path().calculated_length
            velocity = 100.0 * self.slider_multiplier * timing.slider_velocity_at(obj.time)
            obj.end_time = obj.time + obj.slides * length / velocity * timing.beat_length_at(obj.time)


def mania_column(x: float, keys: int) -> int:
    """The mania column an object's x lies in (osu!: floor(x * keys / 512), kept inside the keys)."""
    return min(max(int(x * keys / 512), 0), keys - 1)


def column_x(column: int, keys: int) -> float:
    """The x osu! writes for a mania column: its centre, in whole pixels."""
    return float(int((min(max(column, 0), keys - 1) + 0.5) * 512 / keys))


def _number(text: str | None, default: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


# ---------------------------------------------------------------------------------------------
# Reading


def read_beatmap(path: str | os.PathLike) -> Beatmap:
    """Read a .osu file; raises BeatmapError with a one-line reason if it cannot be a beatmap."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BeatmapError(f"{name}: cannot read the file ({e.strerror or e})") from None
    return parse_beatmap(data, name)


def parse_beatmap(data: bytes | str, source: str = "<beatmap>") -> Beatmap:
    """Parse .osu content (bytes or text: UTF-8 with or without BOM, CRLF or LF)."""
    beatmap = Beatmap(source=source)
    lines = _decode_lines(data, beatmap)
    version, first = _read_header(lines, beatmap)
    beatmap.format_version = version
    offset = OLD_MAP_OFFSET_MS if version < 5 else 0

    section = None
    seen: set[str] = set()
    for number, line in enumerate(lines[first:], start=first + 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            seen.add(section)
            continue
        try:
            _read_line(beatmap, section, line, offset)
        except _BadLine as e:
            beatmap.warnings.append(f"{source}:{number}: skipped line in [{section}]: {e}")

    if "HitObjects" not in seen:
        raise BeatmapError(f"{source}: no [HitObjects] section; this is not a complete beatmap")
    if not beatmap.hit_objects:
        skipped = [w for w in beatmap.warnings if "[HitObjects]" in w]
        if not skipped:
            raise BeatmapError(f"{source}: no hit objects; the [HitObjects] section is empty")
        raise BeatmapError(f"{source}: no usable hit objects; all {len(skipped)} were skipped (first: {skipped[0]})")
    if not any(p.uninherited for p in beatmap.timing_points):
        beatmap.warnings.append(f"{source}: no uninherited timing point; osu! assumes 60 BPM")
    beatmap.compute_end_times()
    return beatmap


def _decode_lines(data: bytes | str, beatmap: Beatmap) -> list[str]:
    source = beatmap.source
    if isinstance(data, str):
        text = data
    else:
        if not data.strip():
            raise BeatmapError(f"{source}: the file is empty")
        if b"\x00" in data[:4096]:
            raise BeatmapError(f"{source}: binary data, not a text .osu file")
        text = data.decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines, start=1):
        if "\ufffd" in line and not isinstance(data, str):
            beatmap.warnings.append(f"{source}:{number}: bytes that are not UTF-8 were replaced")
    return lines


def _read_header(lines: list[str], beatmap: Beatmap) -> tuple[int, int]:
    """The format version and the index of the first line after the header."""
    source = beatmap.source
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            beatmap.warnings.append(f"{source}:{index + 1}: no 'osu file format' header; reading as v{LATEST_VERSION}")
            return LATEST_VERSION, index
        if not stripped.startswith("osu file format v"):
            raise BeatmapError(f"{source}:{index + 1}: not an osu! beatmap (expected 'osu file format v14' as the first line)")
        text = stripped[len("osu file format v"):]
        if not text.isdigit():
            raise BeatmapError(f"{source}:{index + 1}: unreadable format version {text!r}")
        version = int(text)
        if version > LATEST_VERSION and version != LAZER_VERSION:
            beatmap.warnings.append(f"{source}:{index + 1}: unknown format version v{version}; reading it as v{LATEST_VERSION}")
            version = LATEST_VERSION
        return version, index + 1
    raise BeatmapError(f"{source}: the file is empty")


def _read_line(beatmap: Beatmap, section: str | None, line: str, offset: float) -> None:
    if section in KEY_VALUE_SECTIONS:
        key, sep, value = line.partition(":")
        if not sep:
            raise _BadLine(f"expected 'key: value', got {line.strip()!r}")
        getattr(beatmap, section.lower())[key.strip()] = value.strip()
    elif section == "Events":
        _read_event(beatmap, line, offset)
    elif section == "TimingPoints":
        beatmap.timing_points.append(_read_timing_point(line, offset))
    elif section == "Colours":
        key, sep, value = line.partition(":")
        if not sep:
            raise _BadLine(f"expected 'ComboN : r,g,b', got {line.strip()!r}")
        beatmap.colours[key.strip()] = value.strip()
    elif section == "HitObjects":
        beatmap.hit_objects.append(_read_hit_object(line, offset))
    elif section is None:
        raise _BadLine("text before the first [Section]")
    else:
        beatmap.extra_sections.setdefault(section, []).append(line.rstrip())


def _read_event(beatmap: Beatmap, line: str, offset: float) -> None:
    parts = [p.strip() for p in line.split(",")]
    kind = parts[0]
    if kind == "0" and len(parts) >= 3 and beatmap.background is None:
        beatmap.background = parts[2].strip('"')
    elif kind in ("1", "Video") and len(parts) >= 3 and beatmap.video is None:
        beatmap.video = (_float(parts[1], "video offset"), parts[2].strip('"'))
    elif kind in ("2", "Break") and len(parts) >= 3:
        start, end = _time(parts[1]) + offset, _time(parts[2]) + offset
        if end < start:
            raise _BadLine("break ends before it starts")
        beatmap.breaks.append((start, end))
    else:
        beatmap.storyboard.append(line.rstrip())


def _read_timing_point(line: str, offset: float) -> TimingPoint:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 2:
        raise _BadLine(f"a timing point needs at least time,beatLength: {line.strip()!r}")
    time = _time(parts[0]) + offset
    beat_length = _float(parts[1], "beat length", allow_nan=True)
    uninherited = parts[6] == "1" if len(parts) > 6 and parts[6] else beat_length > 0
    if uninherited and not (math.isfinite(beat_length) and beat_length > 0):
        raise _BadLine(f"uninherited timing point with beat length {parts[1]!r}")
    return TimingPoint(
        time=time,
        beat_length=beat_length,
        meter=(_int(parts[2], "meter") or 4) if len(parts) > 2 and parts[2] else 4,  # osu! reads meter 0 as 4/4
        sample_set=_int(parts[3], "sample set") if len(parts) > 3 and parts[3] else 0,
        sample_index=_int(parts[4], "sample index") if len(parts) > 4 and parts[4] else 0,
        volume=_int(parts[5], "volume") if len(parts) > 5 and parts[5] else 100,
        uninherited=uninherited,
        effects=_int(parts[7], "effects") if len(parts) > 7 and parts[7] else 0,
    )


def _read_hit_object(line: str, offset: float) -> HitObject:
    parts = [p.strip() for p in line.strip().split(",")]
    if len(parts) < 4:
        raise _BadLine(f"a hit object needs at least x,y,time,type: {line.strip()!r}")
    x, y = _coordinate(parts[0]), _coordinate(parts[1])
    time = _time(parts[2]) + offset
    type_bits = _int(parts[3], "type")
    hitsound = _int(parts[4], "hitsound") if len(parts) > 4 and parts[4] else 0
    common = dict(x=x, y=y, time=time, new_combo=bool(type_bits & 4), combo_skip=(type_bits >> 4) & 7, hitsound=hitsound)

    if type_bits & 1:  # osu! tests the circle bit first
        return HitObject(kind=CIRCLE, sample=_hit_sample(parts, 5), **common)
    if type_bits & 2:
        return _read_slider(parts, common, line)
    if type_bits & 8:
        if len(parts) < 6:
            raise _BadLine("a spinner needs an end time")
        end = _time(parts[5]) + offset
        return HitObject(kind=SPINNER, end_time=max(end, time), sample=_hit_sample(parts, 6), **common)
    if type_bits & 128:
        if len(parts) < 6:
            raise _BadLine("a hold note needs an end time")
        end_text, _, sample_text = parts[5].partition(":")
        end = _time(end_text) + offset
        return HitObject(kind=HOLD, end_time=max(end, time), sample=_parse_hit_sample(sample_text), **common)
    raise _BadLine(f"unknown hit object type {type_bits}")


def _read_slider(parts: list[str], common: dict, line: str) -> HitObject:
    if len(parts) < 8:
        raise _BadLine(f"a slider needs curve, slides and length: {line.strip()!r}")
    curve = parts[5].split("|")
    curve_type = curve[0].strip().upper() if curve[0].strip().isalpha() else "B"
    points = []
    for text in curve[1:] if curve[0].strip().isalpha() else curve:
        if not text.strip():
            continue
        px, sep, py = text.partition(":")
        if not sep:
            raise _BadLine(f"slider point {text!r} is not x:y")
        points.append((_coordinate(px), _coordinate(py)))
    slides = _int(parts[6], "slide count")
    if not 1 <= slides <= MAX_SLIDES:
        raise _BadLine(f"slide count {slides} is outside 1..{MAX_SLIDES}")
    length = _float(parts[7], "pixel length")
    if length > MAX_COORDINATE:
        raise _BadLine(f"pixel length {length} is absurd")
    edge_sounds = [_int(s, "edge sound") for s in parts[8].split("|")] if len(parts) > 8 and parts[8] else []
    edge_sets = []
    if len(parts) > 9 and parts[9]:
        for text in parts[9].split("|"):
            normal, _, addition = text.partition(":")
            edge_sets.append((_int(normal, "edge set"), _int(addition or "0", "edge set")))
    sample = _hit_sample(parts, 10)
    # osu! gives edges without their own sound the slider's hitsound and sample sets.
    edges = slides + 1
    edge_sounds = (edge_sounds + [common["hitsound"]] * edges)[:edges]
    edge_sets = (edge_sets + [(sample.normal_set, sample.addition_set)] * edges)[:edges]
    return HitObject(
        kind=SLIDER, curve_type=curve_type, curve_points=points, slides=slides, length=max(length, 0.0),
        edge_sounds=edge_sounds, edge_sets=edge_sets, sample=sample, **common,
    )


def _hit_sample(parts: list[str], index: int) -> HitSample:
    return _parse_hit_sample(parts[index]) if len(parts) > index else HitSample()


def _parse_hit_sample(text: str) -> HitSample:
    fields = text.split(":")
    numbers = [_int(f, "hit sample") if f else 0 for f in fields[:4]]
    numbers += [0] * (4 - len(numbers))
    filename = ":".join(fields[4:]) if len(fields) > 4 else ""
    return HitSample(*numbers, filename=filename)


def _float(text: str, what: str, allow_nan: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadLine(f"{what} {text!r} is not a number") from None
    if math.isnan(value) and allow_nan:
        return value
    if not math.isfinite(value):
        raise _BadLine(f"{what} {text!r} is not a finite number")
    return value


def _int(text: str, what: str) -> int:
    value = _float(text, what)
    if abs(value) > MAX_TIME:
        raise _BadLine(f"{what} {text!r} is out of range")
    return int(value)


def _time(text: str) -> float:
    value = _float(text, "time")
    if abs(value) > MAX_TIME:
        raise _BadLine(f"time {text!r} is out of range")
    return value


def _coordinate(text: str) -> float:
    value = _float(text, "coordinate")
    if abs(value) > MAX_COORDINATE:
        raise _BadLine(f"coordinate {text!r} is absurd")
    return value


# ---------------------------------------------------------------------------------------------
# Writing


def format_beatmap(beatmap: Beatmap) -> str:
    """The beatmap as v14 .osu text (LF line endings; osu! reads them)."""
    out = [f"osu file format v{LATEST_VERSION}", ""]
    difficulty = dict(beatmap.difficulty)
    difficulty.setdefault("ApproachRate", _format_number(beatmap.ar))  # v14 has no "AR = OD" fallback
    sections = {
        "General": [f"{k}: {v}" for k, v in beatmap.general.items()],
        "Editor": [f"{k}: {v}" for k, v in beatmap.editor.items()],
        "Metadata": [f"{k}:{v}" for k, v in beatmap.metadata.items()],
        "Difficulty": [f"{k}:{v}" for k, v in difficulty.items()],
        "Events": _format_events(beatmap),
        "TimingPoints": [_format_timing_point(p) for p in beatmap.timing_points],
        "Colours": [f"{k} : {v}" for k, v in beatmap.colours.items()],
        "HitObjects": [_format_hit_object(o) for o in beatmap.hit_objects],
    }
    for name in SECTION_ORDER:
        if name == "Colours" and not beatmap.colours:
            continue
        out += [f"[{name}]", *sections[name], ""]
        if name == "Events":
            for extra, lines in beatmap.extra_sections.items():
                out += [f"[{extra}]", *lines, ""]
    return "\n".join(out)


def write_beatmap(beatmap: Beatmap, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write v14 text atomically (temporary file + rename); never replaces a file unless asked."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise BeatmapError(f"{name}: is a folder, not a file name")
    if os.path.exists(name) and not overwrite:
        raise BeatmapError(f"{name}: already exists; refusing to overwrite it")
    text = format_beatmap(beatmap)
    temporary = f"{name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(temporary, name)
    except OSError as e:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise BeatmapError(f"{name}: cannot write the file ({e.strerror or e})") from None


def _format_events(beatmap: Beatmap) -> list[str]:
    lines = ["//Background and Video events"]
    if beatmap.background is not None:
        lines.append(f'0,0,"{beatmap.background}",0,0')
    if beatmap.video is not None:
        lines.append(f'Video,{_format_number(beatmap.video[0])},"{beatmap.video[1]}"')
    lines.append("//Break Periods")
    lines += [f"2,{_format_number(s)},{_format_number(e)}" for s, e in beatmap.breaks]
    lines.append("//Storyboard")
    return lines + beatmap.storyboard


def _format_timing_point(p: TimingPoint) -> str:
    return ",".join([
        _format_number(p.time), _format_number(p.beat_length), str(p.meter), str(p.sample_set),
        str(p.sample_index), str(p.volume), "1" if p.uninherited else "0", str(p.effects),
    ])


def _format_hit_object(o: HitObject) -> str:
    type_bits = {CIRCLE: 1, SLIDER: 2, SPINNER: 8, HOLD: 128}[o.kind]
    type_bits |= (4 if o.new_combo else 0) | (o.combo_skip & 7) << 4
    head = f"{_format_number(o.x)},{_format_number(o.y)},{_format_number(o.time)},{type_bits},{o.hitsound}"
    sample = _format_hit_sample(o.sample)
    if o.kind == CIRCLE:
        return f"{head},{sample}"
    if o.kind == SPINNER:
        return f"{head},{_format_number(o.end_time)},{sample}"
    if o.kind == HOLD:
        return f"{head},{_format_number(o.end_time)}:{sample}"
    points = "".join(f"|{_format_number(x)}:{_format_number(y)}" for x, y in o.curve_points)
    return ",".join([
        head, f"{o.curve_type}{points}", str(o.slides), _format_number(o.length),
        "|".join(map(str, o.edge_sounds)), "|".join(f"{n}:{a}" for n, a in o.edge_sets), sample,
    ])


def _format_hit_sample(s: HitSample) -> str:
    return f"{s.normal_set}:{s.addition_set}:{s.index}:{s.volume}:{s.filename}"


def _format_number(value: float) -> str:
    """Integers without a decimal point, other floats in the shortest form that reads back exactly."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
