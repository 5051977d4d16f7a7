"""MaiMod's suggestions: which surprising tokens become advice, in which category, worded for mappers.

A scored token becomes a suggestion when the model's most likely token is not the real one, its
excess surprisal S - H reaches `min_surprisal` bits, and it is not noise (reference notes §7.3): a time
that differs by no more than `time_tolerance_ms`, a slider end's position or distance (they follow
from the slider's length), a catch object's height. Each suggestion gets one category and a sentence
a mapper can act on; the report keeps the `top_n` most severe per category, in time order.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass

from omegaconf import DictConfig

from tokenizer.decode import HALF_STEP_MS, TIME_STEP_MS
from tokenizer.events import ANCHOR_TYPES, GROUP_TYPES, ContextType, Event, EventType, Group
from tokenizer.timing import Timing
from tokenizer.vocabulary import Tokenizer

from .critic import MODE_NAMES, Review, TokenScore
from .pipeline import InferenceError

T = EventType
CATEGORIES = ("Rhythm", "Timing", "Compose", "New Combos", "Hit Sounds", "Sliders", "Scroll Speeds", "Kiai", "Misc")
OUTPUTS = ("rich", "text", "json")
TIMING_TYPES = (T.BEAT, T.MEASURE, T.TIMING_POINT)
SLIDER_PARTS = (*ANCHOR_TYPES, T.LAST_ANCHOR, T.SLIDER_END)
OBJECT_STARTS = (T.CIRCLE, T.SLIDER_HEAD, T.SPINNER, T.HOLD_NOTE, T.DRUMROLL, T.DENDEN)
NAMES = {
    T.CIRCLE: "circle", T.SLIDER_HEAD: "slider", T.SPINNER: "spinner", T.SPINNER_END: "spinner end",
    T.BEZIER_ANCHOR: "bezier anchor", T.PERFECT_ANCHOR: "perfect-curve anchor", T.CATMULL_ANCHOR: "catmull anchor",
    T.RED_ANCHOR: "red anchor", T.LAST_ANCHOR: "slider's last anchor", T.SLIDER_END: "slider end", T.BEAT: "beat",
    T.MEASURE: "measure start", T.TIMING_POINT: "timing point", T.HOLD_NOTE: "hold note", T.HOLD_NOTE_END: "hold note end",
    T.SCROLL_SPEED_CHANGE: "scroll speed change", T.DRUMROLL: "drumroll", T.DRUMROLL_END: "drumroll end",
    T.DENDEN: "denden", T.DENDEN_END: "denden end",
}
MODE_NAMES_OF = {  # what each mode calls its objects, where that differs
    1: {T.CIRCLE: "note"},
    2: {T.CIRCLE: "fruit", T.SLIDER_HEAD: "juice stream", T.SLIDER_END: "juice stream end", T.SPINNER: "banana shower",
        T.SPINNER_END: "banana shower end"},
    3: {T.CIRCLE: "note"},
}
SAMPLE_SETS = {1: "normal", 2: "soft", 3: "drum"}
WHISTLE, FINISH, CLAP = 1, 2, 4  # bits of a HITSOUND value (tokenizer.encode.hitsound_value)


@dataclass
class Suggestion:
    time_ms: float
    category: str
    subject: str  # what it is about: "Circle", "Slider end", "Beat"
    message: str
    severity: float  # excess surprisal S - H, bits
    surprisal: float  # bits
    entropy: float  # bits

    @property
    def relative_surprisal(self) -> float:
        return self.surprisal / self.entropy if self.entropy > 0 else 0.0

    @property
    def timestamp(self) -> str:
        return timestamp(self.time_ms)

    @property
    def link(self) -> str:
        """Opens the osu! editor at this time."""
        return f"osu://edit/{self.timestamp}"

    def as_dict(self) -> dict:
        return {**asdict(self), "relative_surprisal": self.relative_surprisal, "timestamp": self.timestamp, "link": self.link}


def timestamp(ms: float) -> str:
    """mm:ss:mmm, as osu!'s editor writes and reads times."""
    total = max(round(ms), 0)
    return f"{total // 60000:02d}:{total // 1000 % 60:02d}:{total % 1000:03d}"


def check_options(cfg: DictConfig) -> None:
    """The report settings, checked before any model work."""
    if str(cfg.output) not in OUTPUTS:
        raise InferenceError(f"output must be one of {', '.join(OUTPUTS)}, not {cfg.output}")
    if cfg.top_n < 1:
        raise InferenceError(f"top_n must be 1 or more, not {cfg.top_n}")
    if cfg.min_surprisal < 0 or cfg.time_tolerance_ms < 0:
        raise InferenceError("min_surprisal and time_tolerance_ms must be 0 or more")


# -- naming ---------------------------------------------------------------------------------------
def taiko_hit(hitsound: int) -> str:
    """don / kat / big don / big kat from a HITSOUND value: whistle or clap make a kat, finish a big note."""
    bits = hitsound % 8
    return ("big " if bits & FINISH else "") + ("kat" if bits & (WHISTLE | CLAP) else "don")


def event_name(event: Event, mode: int) -> str:
    """A type token's name in the mode's own words."""
    if event.type == T.KIAI:
        return "kiai start" if event.value else "kiai end"
    return MODE_NAMES_OF.get(mode, {}).get(event.type) or NAMES.get(event.type, event.type.value.replace("_", " "))


def group_name(group: Group, mode: int) -> str:
    if mode == 1 and group.type == T.CIRCLE and group.hitsounds:
        return taiko_hit(group.hitsounds[0][0])
    return event_name(Event(group.type, group.value), mode)


def hitsound_text(value: int) -> str:
    """normal-set:addition-set and the additions, e.g. soft:drum whistle+clap."""
    normal, addition, bits = SAMPLE_SETS[value % 24 // 8 + 1], SAMPLE_SETS[value // 24 + 1], value % 8
    sounds = [name for bit, name in ((WHISTLE, "whistle"), (FINISH, "finish"), (CLAP, "clap")) if bits & bit]
    return f"{normal}:{addition} {'+'.join(sounds) or 'no additions'}"


def snap_text(divisor: int) -> str:
    return f"1/{divisor}" if divisor else "no"


def group_category(group_type: EventType) -> str:
    if group_type in TIMING_TYPES:
        return "Timing"
    if group_type == T.KIAI:
        return "Kiai"
    if group_type == T.SCROLL_SPEED_CHANGE:
        return "Scroll Speeds"
    return "Sliders" if group_type in SLIDER_PARTS else "Rhythm"


def expected_time(score: TokenScore, timing: Timing) -> float:
    """The time the model expected: its 10 ms step's middle, moved onto the map's nearest tick within 5 ms
    (not for beats: the map's timing is what a timing suggestion questions)."""
    when = score.window_start_ms + TIME_STEP_MS * score.expected.value + HALF_STEP_MS
    if score.context == ContextType.TIMING:
        return when
    divisor = timing.snap_divisor(when, leniency=HALF_STEP_MS)
    return timing.resnap(when, divisor) if divisor else when


# -- turning a score into advice ----------------------------------------------------------------
def advice(score: TokenScore, mode: int, tokenizer: Tokenizer, timing: Timing,
           time_tolerance_ms: float) -> tuple[str, str] | None:
    """(category, sentence) for one surprising token, or None when it is not worth a mapper's time."""
    real, expected, group = score.real, score.expected, score.group
    name = group_name(group, mode)
    if expected == real:
        return None
    if expected is None:
        return (group_category(group.type), f"Unexpected {name}") if real.type in GROUP_TYPES else None
    if T.NEW_COMBO in (real.type, expected.type):
        return "New Combos", "Unexpected new combo" if real.type == T.NEW_COMBO else "Expected a new combo"
    if real.type in GROUP_TYPES and expected.type in GROUP_TYPES:
        return _type_advice(real, expected, group, mode)
    if real.type != expected.type:
        return _structure_advice(real, expected, group)
    return _value_advice(score, mode, tokenizer, timing, time_tolerance_ms)


def _structure_advice(real: Event, expected: Event, group: Group) -> tuple[str, str] | None:
    """A token of another kind than the real one. Only a slider's repeat count is a mapper's choice here;
    the rest (snapping on an anchor, a slider velocity on a circle, ...) is the model misreading the grammar."""
    if group.type == T.LAST_ANCHOR and real.type == T.HITSOUND and expected.type == T.SLIDER_END:
        return "Rhythm", "Expected fewer slider repeats"
    if real.type == T.SLIDER_END and expected.type == T.HITSOUND:
        return "Rhythm", "Expected more slider repeats"
    return None


def _type_advice(real: Event, expected: Event, group: Group, mode: int) -> tuple[str, str] | None:
    """Only swaps within one family (object starts, slider anchors, beats, kiai): the others would break a
    slider or a hold apart, which says more about the model than about the map."""
    if _family(real.type) != _family(expected.type):
        return None
    if real.type == T.LAST_ANCHOR and expected.type in ANCHOR_TYPES:
        return "Sliders", "Expected additional anchors (a more curved slider)"
    if real.type in ANCHOR_TYPES and expected.type == T.LAST_ANCHOR:
        return "Sliders", "Expected the last anchor here (fewer anchors)"
    return group_category(group.type), f"Expected a {event_name(expected, mode)} instead of a {event_name(real, mode)}"


def _family(kind: EventType) -> str:
    if kind in TIMING_TYPES:
        return "timing"
    if kind in (*ANCHOR_TYPES, T.LAST_ANCHOR):
        return "anchor"
    return "start" if kind in OBJECT_STARTS else kind.value


def _value_advice(score: TokenScore, mode: int, tokenizer: Tokenizer, timing: Timing,
                  time_tolerance_ms: float) -> tuple[str, str] | None:
    """Advice where the real and the expected token are of the same kind and differ only in value."""
    real, expected, group = score.real, score.expected, score.group
    name, kind = group_name(group, mode), real.type
    if kind == T.TIME_SHIFT:
        if abs(expected.value - real.value) * TIME_STEP_MS <= time_tolerance_ms:
            return None
        when = expected_time(score, timing)
        if abs(when - group.time) <= time_tolerance_ms:  # the nearest tick is where it already is
            return None
        return group_category(group.type), f"Expected {name} at {timestamp(when)} instead of {timestamp(group.time)}"
    if kind == T.SNAPPING:
        if real.value == 0:
            return group_category(group.type), f"This {name} is not snapped to the beat (expected {snap_text(expected.value)})"
        return group_category(group.type), f"Expected {snap_text(expected.value)} snapping instead of {snap_text(real.value)}"
    if kind in (T.POS, T.DISTANCE):
        return _position_advice(real, expected, group, mode, tokenizer)
    if kind == T.COLUMN:
        return "Compose", f"Expected column {expected.value + 1} instead of {real.value + 1}"
    if kind == T.SCROLL_SPEED:
        what, category = ("slider velocity", "Sliders") if mode in (0, 2) else ("scroll speed", "Scroll Speeds")
        return category, f"Expected {what} x{expected.value / 100:.2f} instead of x{real.value / 100:.2f}"
    if kind == T.HITSOUND:
        if mode == 1 and group.type == T.CIRCLE and taiko_hit(expected.value) != taiko_hit(real.value):
            return "Compose", f"Expected a {taiko_hit(expected.value)} instead of a {taiko_hit(real.value)}"
        return "Hit Sounds", f"Expected hitsound {hitsound_text(expected.value)} instead of {hitsound_text(real.value)}"
    if kind == T.VOLUME:
        return "Hit Sounds", f"Expected volume {expected.value}% instead of {real.value}%"
    what = kind.value.replace("_", " ")  # kinds of other token layouts (split or refined positions)
    return "Misc", f"Expected {what} {expected.value} instead of {real.value} at this {name}"


def _position_advice(real: Event, expected: Event, group: Group, mode: int, tokenizer: Tokenizer) -> tuple[str, str] | None:
    if group.type == T.SLIDER_END:  # where a slider ends follows from its length
        return None
    category = "Sliders" if group.type in SLIDER_PARTS else "Compose"
    if real.type == T.DISTANCE:
        return category, f"Expected distance {expected.value} px to the previous object instead of {real.value} px"
    x, y = tokenizer.cell_position(expected.value)
    if mode == 2:  # only x matters in catch
        if tokenizer.cell_position(real.value)[0] == x:
            return None
        return category, f"Expected x:{x:g} instead of x:{group.x:g}"
    return category, f"Expected position x:{x:g} y:{y:g} instead of x:{group.x:g} y:{group.y:g}"


# -- the report ---------------------------------------------------------------------------------
def suggestions(review: Review, min_surprisal: float, time_tolerance_ms: float) -> list[Suggestion]:
    """Every suggestion that passes the filters; one per category, subject and time (the most severe)."""
    mode, timing = review.beatmap.mode, review.beatmap.timing
    best: dict[tuple[str, str, float], Suggestion] = {}
    for score in review.scores:
        if score.excess_surprisal < min_surprisal:
            continue
        found = advice(score, mode, review.tokenizer, timing, time_tolerance_ms)
        if found is None:
            continue
        category, message = found
        subject = group_name(score.group, mode)
        suggestion = Suggestion(score.group.time, category, subject[:1].upper() + subject[1:], message,
                                score.excess_surprisal, score.surprisal, score.entropy)
        key = (category, suggestion.subject, suggestion.time_ms)
        if key not in best or best[key].severity < suggestion.severity:
            best[key] = suggestion
    return list(best.values())


def top_per_category(found: list[Suggestion], top_n: int) -> dict[str, list[Suggestion]]:
    """The `top_n` most severe suggestions of each category, in time order; categories in CATEGORIES order."""
    by_category: dict[str, list[Suggestion]] = defaultdict(list)
    for suggestion in found:
        by_category[suggestion.category].append(suggestion)
    top = {}
    for category in CATEGORIES:
        if by_category[category]:
            chosen = sorted(by_category[category], key=lambda s: -s.severity)[:top_n]
            top[category] = sorted(chosen, key=lambda s: s.time_ms)
    return top


def header(review: Review, likely_issue: float, subjective: float) -> list[str]:
    mode = review.beatmap.mode
    lines = [f"MaiMod: {review.beatmap_path.name} ({MODE_NAMES[mode]}), {len(review.scores)} tokens scored in "
             f"{review.seconds:.1f} s",
             f"Each value is how much more the map's choice surprised the model than it expected to be surprised "
             f"there (surprisal minus entropy, in bits: 10 means 2^10 = 1024 times less likely than usual). "
             f"From {likely_issue:g} on likely a mistake; below {subjective:g} likely a matter of taste. "
             f"Times open the osu! editor (osu://edit/mm:ss:mmm)."]
    if review.unscored_tokens:
        lines.append(f"{review.unscored_tokens} tokens in very dense windows did not fit the model's sequence length "
                     f"and were not scored.")
    return lines


def line(s: Suggestion) -> str:
    return f"({s.severity:6.1f}) {s.timestamp} ({s.subject}) - {s.message}"


def render_text(review: Review, top: dict[str, list[Suggestion]], likely_issue: float, subjective: float) -> str:
    out = header(review, likely_issue, subjective)
    for category, items in top.items():
        out += ["", f"{category}:"] + [f"  {line(s)}  {s.link}" for s in items]
    if not top:
        out += ["", "No suggestions: nothing in this map surprised the model enough."]
    return "\n".join(out)


def render_json(review: Review, top: dict[str, list[Suggestion]], cfg: DictConfig) -> str:
    return json.dumps({
        "beatmap": str(review.beatmap_path), "mode": review.beatmap.mode, "model": str(cfg.model_path),
        "scored_tokens": len(review.scores), "unscored_tokens": review.unscored_tokens, "seconds": round(review.seconds, 2),
        "top_n": int(cfg.top_n), "min_surprisal": float(cfg.min_surprisal),
        "categories": {category: [s.as_dict() for s in items] for category, items in top.items()},
    }, indent=1)


def print_rich(review: Review, top: dict[str, list[Suggestion]], likely_issue: float, subjective: float) -> None:
    """Coloured by severity, times as editor links."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    first, *rest = header(review, likely_issue, subjective)
    console.print(f"[bold]{escape(first)}[/bold]")
    for text in rest:
        console.print(escape(text), style="dim")
    for category, items in top.items():
        console.print(f"\n[bold underline]{category}[/bold underline]")
        for s in items:
            style = "bold red" if s.severity >= likely_issue else "bold yellow" if s.severity >= subjective else "default"
            console.print(f"  [{style}]({s.severity:6.1f})[/{style}] [link={s.link}]{s.timestamp}[/link] "
                          f"({escape(s.subject)}) - {escape(s.message)}")
    if not top:
        console.print("\nNo suggestions: nothing in this map surprised the model enough.")
