"""Token ids: the vocabulary layout computed from config, metadata tokens, and tokenizer.json.

Ids follow Mapperatorinator's v29 layout (reference notes §2.1-2.5): PAD, SOS, EOS, the context
SOS/EOS pairs, the output ranges (what the decoder predicts), then the input-only metadata ranges.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

from .events import ContextType, Event, EventRange, EventType

PAD, SOS, EOS = 0, 1, 2
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tokenizer")
YEAR_MIN, YEAR_UNKNOWN = 2007, 2077
SONG_LENGTH_BUCKET_MS = 10_000
# Input-only tokens in the order they take ids (and appear before SOS).
INPUT_TOKEN_ORDER = (
    "gamemode", "style", "difficulty", "mapper", "cs", "year", "hitsounded", "song_length", "song_position",
    "descriptor", "keycount", "hold_note_ratio", "scroll_speed_ratio", "global_sv",
)


@dataclass
class TokenizerConfig:
    """What decides the vocabulary layout; mirrored by configs/tokenizer/*.yaml."""
    src_seq_len: int = 1024
    hop_length: int = 128
    sample_rate: int = 16000
    gamemodes: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    context_templates: list[dict] = field(default_factory=lambda: [
        {"in": ["none"], "out": ["timing", "kiai", "map", "sv"]},
        {"in": ["no_hs"], "out": ["timing", "kiai", "map", "sv"]},
        {"in": ["gd"], "out": ["timing", "kiai", "map", "sv"]},
    ])
    add_out_context_types: bool = True
    add_distances: bool = True
    add_positions: bool = True
    position_precision: int = 32
    position_split_axes: bool = False
    position_refinement: int | None = None
    add_sv: bool = True
    add_kiai: bool = True
    add_timing_points: bool = True
    input_tokens: list[str] = field(default_factory=lambda: [
        "gamemode", "difficulty", "mapper", "cs", "year", "hitsounded", "song_length", "song_position",
        "descriptor", "keycount", "hold_note_ratio", "scroll_speed_ratio", "global_sv",
    ])
    num_classes: int = 0  # legacy "style" classes (beatmap index)
    num_diff_classes: int = 24
    max_difficulty: float = 12.0
    num_cs_classes: int = 21
    mapper_idx: dict[str, int] = field(default_factory=dict)
    descriptors: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict) -> "TokenizerConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_yaml(cls, name_or_path: str) -> "TokenizerConfig":
        """A config from configs/tokenizer/<name>.yaml, or from a path to a YAML file."""
        from omegaconf import OmegaConf

        path = name_or_path if name_or_path.endswith(".yaml") else os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer config {path}")
        return cls.from_dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))

    @property
    def max_time_shift(self) -> int:
        """Largest TIME_SHIFT value (10 ms steps) inside one window of src_seq_len mel frames."""
        return math.floor((self.src_seq_len - 1) * self.hop_length * 1000 / self.sample_rate / 10)

    @property
    def window_ms(self) -> float:
        return (self.src_seq_len - 1) * self.hop_length * 1000 / self.sample_rate


# Playfield range that positions are encoded over (osu!px), wider than the 512x384 field.
X_MIN, X_MAX, Y_MIN, Y_MAX = -256, 768, -256, 640


def _into_playfield(cell_start: float, size: float, field_end: float) -> float:
    centre = cell_start + size / 2
    low, high = max(cell_start, 0.0), min(cell_start + size, field_end)
    touches_field = low < cell_start + size and low <= high  # the cell is half-open: [start, start + size)
    return min(max(centre, low), high) if touches_field else centre


class Tokenizer:
    """Maps events to ids and back, and turns metadata into its (bucketed) input tokens."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        c = self.config
        self.context_sos: dict[str, int] = {}
        self.context_eos: dict[str, int] = {}
        next_id = EOS + 1
        for template in c.context_templates:
            names = list(template.get("in", [])) + (list(template.get("out", [])) if c.add_out_context_types else [])
            for name in names:
                ContextType(name)  # fail early on a typo in the config
                if name not in self.context_sos:
                    self.context_sos[name], self.context_eos[name] = next_id, next_id + 1
                    next_id += 2
        self.offset = next_id
        self.mapper_idx = {str(k): int(v) for k, v in c.mapper_idx.items()}
        self.num_mapper_classes = len(set(self.mapper_idx.values()))
        self.descriptor_idx = {name: i for i, name in enumerate(c.descriptors)}
        self.num_descriptor_classes = len(self.descriptor_idx)
        self.event_ranges = self._output_ranges()
        self.input_event_ranges = self._input_ranges()
        self._index_ranges()

    # -- layout ---------------------------------------------------------------------------------
    def _output_ranges(self) -> list[EventRange]:
        c, T = self.config, EventType
        ranges = [EventRange(T.TIME_SHIFT, 0, c.max_time_shift), EventRange(T.SNAPPING, 0, 16)]
        if c.add_distances:
            ranges.append(EventRange(T.DISTANCE, 0, 640))
        if c.add_positions:
            p = c.position_precision
            if c.position_split_axes:
                ranges += [EventRange(T.POS_X, X_MIN // p, X_MAX // p), EventRange(T.POS_Y, Y_MIN // p, Y_MAX // p)]
            else:
                ranges.append(EventRange(T.POS, 0, self.grid_width * self.grid_height - 1))
            if c.position_refinement:
                ranges.append(EventRange(T.POS_REFINE, 0, (p // c.position_refinement) ** 2 - 1))
        if 3 in c.gamemodes:
            ranges.append(EventRange(T.COLUMN, 0, 17))
        if 1 in c.gamemodes or 3 in c.gamemodes or c.add_sv:
            ranges.append(EventRange(T.SCROLL_SPEED, 0, 1000))
        ranges += [EventRange(T.NEW_COMBO, 0, 0), EventRange(T.HITSOUND, 0, 72), EventRange(T.VOLUME, 0, 100)]
        ranges += [EventRange(t, 0, 0) for t in (
            T.CIRCLE, T.SPINNER, T.SPINNER_END, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.PERFECT_ANCHOR,
            T.CATMULL_ANCHOR, T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END, T.BEAT, T.MEASURE)]
        if c.add_timing_points:
            ranges.append(EventRange(T.TIMING_POINT, 0, 0))
        if c.add_kiai or any("kiai" in t.get("out", []) for t in c.context_templates):
            ranges.append(EventRange(T.KIAI, 0, 1))
        if 3 in c.gamemodes:
            ranges += [EventRange(t, 0, 0) for t in (T.HOLD_NOTE, T.HOLD_NOTE_END, T.SCROLL_SPEED_CHANGE)]
        if 1 in c.gamemodes:
            ranges += [EventRange(t, 0, 0) for t in (T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END)]
        return ranges

    def _input_ranges(self) -> list[EventRange]:
        c, T = self.config, EventType
        mania, scrolling = 3 in c.gamemodes, (1 in c.gamemodes or 3 in c.gamemodes or c.add_sv)
        candidates = {
            "gamemode": EventRange(T.GAMEMODE, 0, 3),
            "style": EventRange(T.STYLE, 0, c.num_classes),
            "difficulty": EventRange(T.DIFFICULTY, 0, c.num_diff_classes),
            "mapper": EventRange(T.MAPPER, 0, self.num_mapper_classes),
            "cs": EventRange(T.CS, 0, c.num_cs_classes),
            "year": EventRange(T.YEAR, YEAR_MIN, YEAR_UNKNOWN),
            "hitsounded": EventRange(T.HITSOUNDED, 0, 1),
            "song_length": EventRange(T.SONG_LENGTH, 0, 60),
            "song_position": EventRange(T.SONG_POSITION, -1, 101),
            "descriptor": EventRange(T.DESCRIPTOR, 0, self.num_descriptor_classes),
            "keycount": EventRange(T.KEYCOUNT, 1, 18) if mania else None,
            "hold_note_ratio": EventRange(T.HOLD_NOTE_RATIO, -1, 12) if mania else None,
            "scroll_speed_ratio": EventRange(T.SCROLL_SPEED_RATIO, -1, 12) if scrolling else None,
            "global_sv": EventRange(T.GLOBAL_SV, 40, 360),
        }
        unknown = set(c.input_tokens) - set(INPUT_TOKEN_ORDER)
        if unknown:
            raise ValueError(f"unknown input tokens in the tokenizer config: {sorted(unknown)}")
        return [candidates[n] for n in INPUT_TOKEN_ORDER if n in c.input_tokens and candidates[n] is not None]

    def _index_ranges(self) -> None:
        self.event_start: dict[EventType, int] = {}
        self.event_end: dict[EventType, int] = {}
        self.event_range: dict[EventType, EventRange] = {}
        start = self.offset
        for r in self.event_ranges + self.input_event_ranges:
            self.event_start[r.type], self.event_end[r.type], self.event_range[r.type] = start, start + r.size, r
            start += r.size
            if r is self.event_ranges[-1]:
                self.vocab_size_out = start
        self.vocab_size_in = start
        self._starts = sorted(self.event_start.values())
        self._range_by_start = {self.event_start[t]: self.event_range[t] for t in self.event_start}

    @property
    def grid_width(self) -> int:
        return (X_MAX - X_MIN) // self.config.position_precision + 1

    @property
    def grid_height(self) -> int:
        return (Y_MAX - Y_MIN) // self.config.position_precision + 1

    # -- ids ------------------------------------------------------------------------------------
    def encode(self, event: Event) -> int:
        r = self.event_range.get(event.type)
        if r is None:
            raise ValueError(f"event type {event.type.value!r} is not in this vocabulary")
        if not r.min_value <= event.value <= r.max_value:
            raise ValueError(f"{event!r} is outside {r.min_value}..{r.max_value}")
        return self.event_start[event.type] + event.value - r.min_value

    def decode(self, token_id: int) -> Event:
        if not self.offset <= token_id < self.vocab_size_in:
            raise ValueError(f"token id {token_id} is not an event id (events are {self.offset}..{self.vocab_size_in - 1})")
        start = self._starts[bisect.bisect_right(self._starts, token_id) - 1]
        r = self._range_by_start[start]
        return Event(r.type, r.min_value + token_id - start)

    def encode_many(self, events: list[Event]) -> list[int]:
        return [self.encode(e) for e in events]

    def decode_many(self, ids: list[int]) -> list[Event]:
        """Events for ids; special ids (PAD, SOS, EOS, context markers) are dropped."""
        return [self.decode(i) for i in ids if i >= self.offset]

    def clip(self, event_type: EventType, value: int) -> Event:
        r = self.event_range[event_type]
        return Event(event_type, min(max(int(value), r.min_value), r.max_value))

    # -- positions ------------------------------------------------------------------------------
    def position_events(self, x: float, y: float) -> list[Event]:
        """POS (or POS_X/POS_Y) on cells of `position_precision` px; floor, so every point lies inside its cell."""
        p = self.config.position_precision
        cx = min(max(math.floor(x / p), X_MIN // p), X_MAX // p)
        cy = min(max(math.floor(y / p), Y_MIN // p), Y_MAX // p)
        if self.config.position_split_axes:
            events = [Event(EventType.POS_X, cx), Event(EventType.POS_Y, cy)]
        else:
            events = [Event(EventType.POS, (cx - X_MIN // p) + (cy - Y_MIN // p) * self.grid_width)]
        if self.config.position_refinement:
            r = self.config.position_refinement
            side = p // r
            events.append(Event(EventType.POS_REFINE, int(x % p) // r + (int(y % p) // r) * side))
        return events

    def cell_position(self, value: int) -> tuple[float, float]:
        """The point of a POS cell nearest its centre that is still on the playfield.

        Edge cells (x = 512 lies in the cell [512, 544)) would otherwise decode off-screen.
        """
        p = self.config.position_precision
        cx = value % self.grid_width + X_MIN // p
        cy = value // self.grid_width + Y_MIN // p
        return _into_playfield(cx * p, p, 512.0), _into_playfield(cy * p, p, 384.0)

    def refined_position(self, x: float, y: float, value: int) -> tuple[float, float]:
        """Replace the cell-centre offset with the POS_REFINE sub-cell centre."""
        p, r = self.config.position_precision, self.config.position_refinement or 1
        side = p // r
        return (math.floor(x / p) * p + (value % side) * r + r / 2,
                math.floor(y / p) * p + (value // side) * r + r / 2)

    # -- input-only metadata tokens (reference notes §2.4) -------------------------------------
    def gamemode_event(self, mode: int) -> Event:
        return self.clip(EventType.GAMEMODE, mode)

    def difficulty_event(self, star_rating: float | None) -> Event:
        c = self.config
        if star_rating is None or not math.isfinite(star_rating):
            return Event(EventType.DIFFICULTY, c.num_diff_classes)
        bucket = int(star_rating * c.num_diff_classes / c.max_difficulty)
        return Event(EventType.DIFFICULTY, min(max(bucket, 0), c.num_diff_classes - 1))

    def difficulty_of(self, value: int) -> float | None:
        return None if value >= self.config.num_diff_classes else value * self.config.max_difficulty / self.config.num_diff_classes

    def mapper_event(self, mapper: str | int | None) -> Event:
        index = self.mapper_idx.get(str(mapper)) if mapper is not None else None
        return Event(EventType.MAPPER, self.num_mapper_classes if index is None else index)

    def cs_event(self, cs: float | None) -> Event:
        unknown = self.config.num_cs_classes
        if cs is None or not math.isfinite(cs):
            return Event(EventType.CS, unknown)
        return Event(EventType.CS, min(max(int(cs * 20 / 10), 0), unknown - 1))

    def year_event(self, year: int | None) -> Event:
        if year is None:
            return Event(EventType.YEAR, YEAR_UNKNOWN)
        return Event(EventType.YEAR, min(max(int(year), YEAR_MIN), YEAR_UNKNOWN))

    def hitsounded_event(self, hitsounded: bool) -> Event:
        return Event(EventType.HITSOUNDED, int(bool(hitsounded)))

    def song_length_event(self, length_ms: float) -> Event:
        return self.clip(EventType.SONG_LENGTH, int(length_ms // SONG_LENGTH_BUCKET_MS))

    def song_position_event(self, window_start_ms: float, length_ms: float) -> Event:
        ratio = window_start_ms / length_ms if length_ms > 0 else 0.0
        if ratio <= 0:
            return Event(EventType.SONG_POSITION, -1)
        if ratio >= 1:
            return Event(EventType.SONG_POSITION, 101)
        return Event(EventType.SONG_POSITION, min(max(round(ratio * 100), 0), 100))

    def descriptor_events(self, descriptors: list[str] | None) -> list[Event]:
        """One token per known descriptor; the unknown token when none are known."""
        known = [self.descriptor_idx[d] for d in descriptors or [] if d in self.descriptor_idx]
        return [Event(EventType.DESCRIPTOR, i) for i in known] or [Event(EventType.DESCRIPTOR, self.num_descriptor_classes)]

    def keycount_event(self, keycount: int) -> Event:
        return self.clip(EventType.KEYCOUNT, keycount)

    def _ratio_event(self, event_type: EventType, ratio: float | None) -> Event:
        if ratio is None or not math.isfinite(ratio):
            return Event(event_type, 12)
        if ratio <= 0:
            return Event(event_type, -1)
        if ratio >= 1:
            return Event(event_type, 11)
        return Event(event_type, min(max(round(ratio * 10), 0), 10))

    def hold_note_ratio_event(self, ratio: float | None) -> Event:
        return self._ratio_event(EventType.HOLD_NOTE_RATIO, ratio)

    def scroll_speed_ratio_event(self, ratio: float | None) -> Event:
        return self._ratio_event(EventType.SCROLL_SPEED_RATIO, ratio)

    def global_sv_event(self, slider_multiplier: float) -> Event:
        return self.clip(EventType.GLOBAL_SV, round(min(max(slider_multiplier, 0.4), 3.6) * 100))

    # -- tokenizer.json -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def ranges(rs: list[EventRange]) -> list[dict]:
            return [{"type": r.type.value, "min_value": r.min_value, "max_value": r.max_value} for r in rs]

        return {
            "offset": self.offset,
            "context_sos": self.context_sos,
            "context_eos": self.context_eos,
            "event_ranges": ranges(self.event_ranges),
            "input_event_ranges": ranges(self.input_event_ranges),
            "event_range": {t.value: ranges([r])[0] for t, r in self.event_range.items()},
            "event_start": {t.value: i for t, i in self.event_start.items()},
            "event_end": {t.value: i for t, i in self.event_end.items()},
            "vocab_size_out": self.vocab_size_out,
            "vocab_size_in": self.vocab_size_in,
            "num_classes": self.config.num_classes,
            "num_diff_classes": self.config.num_diff_classes,
            "max_difficulty": self.config.max_difficulty,
            "beatmap_idx": {},
            "beatmap_mapper": {},
            "mapper_idx": self.mapper_idx,
            "num_mapper_classes": self.num_mapper_classes,
            "beatmap_descriptors": {},
            "descriptor_idx": self.descriptor_idx,
            "num_descriptor_classes": self.num_descriptor_classes,
            "num_cs_classes": self.config.num_cs_classes,
            "config": asdict(self.config),
        }

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizer":
        """Restore a saved vocabulary exactly as stored; never re-derives ids from a newer config."""
        tokenizer = cls.__new__(cls)
        config = TokenizerConfig.from_dict(data.get("config", {}))
        config.mapper_idx = data.get("mapper_idx", {})
        config.descriptors = sorted(data.get("descriptor_idx", {}), key=data.get("descriptor_idx", {}).get)
        tokenizer.config = config
        tokenizer.context_sos = dict(data["context_sos"])
        tokenizer.context_eos = dict(data["context_eos"])
        tokenizer.offset = int(data["offset"])
        tokenizer.mapper_idx = {str(k): int(v) for k, v in data.get("mapper_idx", {}).items()}
        tokenizer.num_mapper_classes = int(data.get("num_mapper_classes", len(tokenizer.mapper_idx)))
        tokenizer.descriptor_idx = {k: int(v) for k, v in data.get("descriptor_idx", {}).items()}
        tokenizer.num_descriptor_classes = int(data.get("num_descriptor_classes", len(tokenizer.descriptor_idx)))
        load = lambda rs: [EventRange(EventType(r["type"]), int(r["min_value"]), int(r["max_value"])) for r in rs]
        tokenizer.event_ranges = load(data["event_ranges"])
        tokenizer.input_event_ranges = load(data["input_event_ranges"])
        pos = next((r for r in tokenizer.event_ranges if r.type == EventType.POS), None)
        if pos is not None and "config" not in data:  # an upstream file: recover the cell size from the grid
            config.position_precision = next(p for p in (1, 2, 4, 8, 16, 32, 64) if
                                             ((X_MAX - X_MIN) // p + 1) * ((Y_MAX - Y_MIN) // p + 1) == pos.size)
        tokenizer._index_ranges()
        if tokenizer.vocab_size_out != data["vocab_size_out"] or tokenizer.vocab_size_in != data["vocab_size_in"]:
            raise ValueError("tokenizer.json is inconsistent: its ranges do not add up to its vocabulary sizes")
        return tokenizer

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
