"""The decoder sequence layout (reference notes §2.7), shared by training and generation.

    in-contexts | metadata tokens | last_kiai, last_sv, song_position | SOS | out-contexts ... | EOS

Only tokens after SOS are ever labelled; training may also leave the lookback part unlabelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenizer.encode import hold_note_ratio, is_hitsounded, scroll_speed_ratio
from tokenizer.events import ContextType, Event, EventType
from tokenizer.osu_file import Beatmap
from tokenizer.vocabulary import EOS, SOS, Tokenizer

T = EventType


@dataclass
class BeatmapMetadata:
    """Style conditioning for one beatmap; None means "unknown" (dropped out, or not given by the user)."""
    mode: int = 0
    star_rating: float | None = None
    mapper: str | None = None
    year: int | None = None
    hitsounded: bool = True
    song_length_ms: float = 0.0
    slider_multiplier: float = 1.4
    circle_size: float | None = None
    keycount: int = 4
    hold_note_ratio: float | None = None
    scroll_speed_ratio: float | None = None
    descriptors: list[str] | None = None


def beatmap_metadata(beatmap: Beatmap, star_rating: float | None, song_length_ms: float, mapper: str | None = None,
                     year: int | None = None, descriptors: list[str] | None = None) -> BeatmapMetadata:
    """A real map's conditioning as training sees it (its mode, settings and statistics); needs hit objects."""
    return BeatmapMetadata(
        mode=beatmap.mode, star_rating=star_rating, mapper=mapper, year=year, hitsounded=is_hitsounded(beatmap),
        song_length_ms=song_length_ms, slider_multiplier=beatmap.slider_multiplier, circle_size=beatmap.cs,
        keycount=beatmap.keycount, hold_note_ratio=hold_note_ratio(beatmap), scroll_speed_ratio=scroll_speed_ratio(beatmap),
        descriptors=descriptors,
    )


@dataclass
class Context:
    """One context block: its type, its own special tokens (GD: the other difficulty's) and its events."""
    type: ContextType
    events: list[Event] = field(default_factory=list)
    specials: list[Event] = field(default_factory=list)
    labelled: list[bool] | None = None  # per event; None labels every event (out contexts only)


def metadata_events(tokenizer: Tokenizer, meta: BeatmapMetadata, window_start_ms: float, last_kiai: int = 0,
                    last_scroll_speed: float = 1.0) -> list[Event]:
    """The global special tokens in upstream order, each only when the vocabulary has it."""
    has = tokenizer.event_range.__contains__
    mode = meta.mode
    candidates: list[tuple[EventType, bool, object]] = [
        (T.GAMEMODE, True, lambda: [tokenizer.gamemode_event(mode)]),
        (T.DIFFICULTY, True, lambda: [tokenizer.difficulty_event(meta.star_rating)]),
        (T.MAPPER, True, lambda: [tokenizer.mapper_event(meta.mapper)]),
        (T.YEAR, True, lambda: [tokenizer.year_event(meta.year)]),
        (T.HITSOUNDED, True, lambda: [tokenizer.hitsounded_event(meta.hitsounded)]),
        (T.SONG_LENGTH, True, lambda: [tokenizer.song_length_event(meta.song_length_ms)]),
        (T.GLOBAL_SV, mode in (0, 2), lambda: [tokenizer.global_sv_event(meta.slider_multiplier)]),
        (T.CS, mode in (0, 2), lambda: [tokenizer.cs_event(meta.circle_size)]),
        (T.KEYCOUNT, mode == 3, lambda: [tokenizer.keycount_event(meta.keycount)]),
        (T.HOLD_NOTE_RATIO, mode == 3, lambda: [tokenizer.hold_note_ratio_event(meta.hold_note_ratio)]),
        (T.SCROLL_SPEED_RATIO, mode in (1, 3), lambda: [tokenizer.scroll_speed_ratio_event(meta.scroll_speed_ratio)]),
        (T.DESCRIPTOR, True, lambda: tokenizer.descriptor_events(meta.descriptors)),
        (T.KIAI, True, lambda: [Event(T.KIAI, int(bool(last_kiai)))]),
        (T.SCROLL_SPEED, True, lambda: [tokenizer.clip(T.SCROLL_SPEED, round(last_scroll_speed * 100))]),
        (T.SONG_POSITION, True, lambda: [tokenizer.song_position_event(window_start_ms, meta.song_length_ms)]),
    ]
    events: list[Event] = []
    for event_type, applies, make in candidates:
        if applies and has(event_type):
            events += make()
    return events


def build_sequence(tokenizer: Tokenizer, in_contexts: list[Context], metadata: list[Event],
                   out_contexts: list[Context], end: bool = True) -> tuple[list[int], list[bool]]:
    """Token ids and, per id, whether it is a training target (after SOS and not masked by its context).

    With `end=False` the sequence stops after the last out context's events (an inference prompt that
    the model continues), without that context's ctx_eos or the final EOS.
    """
    ids: list[int] = []
    targets: list[bool] = []

    def add(new_ids: list[int], labelled: bool | list[bool]) -> None:
        ids.extend(new_ids)
        targets.extend(labelled if isinstance(labelled, list) else [labelled] * len(new_ids))

    for context in in_contexts:
        name = context.type.value
        add([tokenizer.context_sos[name]] + tokenizer.encode_many(context.specials + context.events) + [tokenizer.context_eos[name]], False)
    add(tokenizer.encode_many(metadata) + [SOS], False)
    with_markers = tokenizer.config.add_out_context_types
    for i, context in enumerate(out_contexts):
        last = i == len(out_contexts) - 1
        name = context.type.value
        if with_markers:
            add([tokenizer.context_sos[name]], True)
        add(tokenizer.encode_many(context.events), context.labelled if context.labelled is not None else True)
        if with_markers and (end or not last):
            add([tokenizer.context_eos[name]], True)
    if end:
        add([EOS], True)
    return ids, targets
