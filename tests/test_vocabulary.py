"""Token ids: the v29 layout, encode/decode, metadata bucketing and tokenizer.json."""
from __future__ import annotations

import json

import pytest

from tokenizer.events import Event, EventRange, EventType
from tokenizer.vocabulary import EOS, PAD, SOS, Tokenizer, TokenizerConfig

from conftest import V29_CONFIG

T = EventType

TOKENIZER_JSON_KEYS = [
    "offset", "context_sos", "context_eos", "event_ranges", "input_event_ranges", "event_range", "event_start",
    "event_end", "vocab_size_out", "vocab_size_in", "num_classes", "num_diff_classes", "max_difficulty",
    "beatmap_idx", "beatmap_mapper", "mapper_idx", "num_mapper_classes", "beatmap_descriptors", "descriptor_idx",
    "num_descriptor_classes", "num_cs_classes",
]

# Reference v29 output layout: (type, first id, min value, max value).
V29_OUTPUT_LAYOUT = [
    (T.TIME_SHIFT, 17, 0, 818), (T.SNAPPING, 836, 0, 16), (T.DISTANCE, 853, 0, 640), (T.POS, 1494, 0, 956),
    (T.COLUMN, 2451, 0, 17), (T.SCROLL_SPEED, 2469, 0, 1000), (T.NEW_COMBO, 3470, 0, 0), (T.HITSOUND, 3471, 0, 72),
    (T.VOLUME, 3544, 0, 100), (T.CIRCLE, 3645, 0, 0), (T.SPINNER, 3646, 0, 0), (T.SPINNER_END, 3647, 0, 0),
    (T.SLIDER_HEAD, 3648, 0, 0), (T.BEZIER_ANCHOR, 3649, 0, 0), (T.PERFECT_ANCHOR, 3650, 0, 0),
    (T.CATMULL_ANCHOR, 3651, 0, 0), (T.RED_ANCHOR, 3652, 0, 0), (T.LAST_ANCHOR, 3653, 0, 0),
    (T.SLIDER_END, 3654, 0, 0), (T.BEAT, 3655, 0, 0), (T.MEASURE, 3656, 0, 0), (T.TIMING_POINT, 3657, 0, 0),
    (T.KIAI, 3658, 0, 1), (T.HOLD_NOTE, 3660, 0, 0), (T.HOLD_NOTE_END, 3661, 0, 0),
    (T.SCROLL_SPEED_CHANGE, 3662, 0, 0), (T.DRUMROLL, 3663, 0, 0), (T.DRUMROLL_END, 3664, 0, 0),
    (T.DENDEN, 3665, 0, 0), (T.DENDEN_END, 3666, 0, 0),
]


def ids_of(tokenizer: Tokenizer) -> dict:
    return {
        "offset": tokenizer.offset, "vocab_size_out": tokenizer.vocab_size_out, "vocab_size_in": tokenizer.vocab_size_in,
        "context_sos": tokenizer.context_sos, "context_eos": tokenizer.context_eos,
        "event_start": tokenizer.event_start, "event_end": tokenizer.event_end,
        "event_ranges": tokenizer.event_ranges, "input_event_ranges": tokenizer.input_event_ranges,
        "mapper_idx": tokenizer.mapper_idx, "descriptor_idx": tokenizer.descriptor_idx,
        "decoded": [tokenizer.decode(i) for i in range(tokenizer.offset, tokenizer.vocab_size_in)],
    }


# ---------------------------------------------------------------------------------------------
# Layout

def test_v29_layout(tokenizer):
    assert (PAD, SOS, EOS) == (0, 1, 2)
    assert tokenizer.offset == 17
    assert tokenizer.event_start[T.TIME_SHIFT] == 17
    assert tokenizer.encode(Event(T.TIME_SHIFT, 818)) == 835
    assert tokenizer.vocab_size_out == 3667
    assert [(r.type, tokenizer.event_start[r.type], r.min_value, r.max_value) for r in tokenizer.event_ranges] == V29_OUTPUT_LAYOUT
    assert tokenizer.config.max_time_shift == 818
    assert tokenizer.config.window_ms == pytest.approx(8184.0)


def test_v29_context_markers(tokenizer):
    # 7 context types, each an SOS/EOS pair, in first-seen template order after PAD/SOS/EOS
    assert tokenizer.context_sos == {"none": 3, "timing": 5, "kiai": 7, "map": 9, "sv": 11, "no_hs": 13, "gd": 15}
    assert tokenizer.context_eos == {k: v + 1 for k, v in tokenizer.context_sos.items()}


def test_v29_input_ranges(tokenizer):
    layout = [(r.type, tokenizer.event_start[r.type], r.min_value, r.max_value) for r in tokenizer.input_event_ranges]
    assert layout == [
        (T.GAMEMODE, 3667, 0, 3), (T.DIFFICULTY, 3671, 0, 24), (T.MAPPER, 3696, 0, 0), (T.CS, 3697, 0, 21),
        (T.YEAR, 3719, 2007, 2077), (T.HITSOUNDED, 3790, 0, 1), (T.SONG_LENGTH, 3792, 0, 60),
        (T.SONG_POSITION, 3853, -1, 101), (T.DESCRIPTOR, 3956, 0, 72), (T.KEYCOUNT, 4029, 1, 18),
        (T.HOLD_NOTE_RATIO, 4047, -1, 12), (T.SCROLL_SPEED_RATIO, 4061, -1, 12), (T.GLOBAL_SV, 4075, 40, 360),
    ]
    assert tokenizer.vocab_size_in == 4396
    assert tokenizer.num_descriptor_classes == 72


def test_config_from_yaml(v29_config):
    assert TokenizerConfig.from_yaml("v29") == v29_config
    assert TokenizerConfig.from_yaml(str(V29_CONFIG)) == v29_config
    assert len(v29_config.descriptors) == 72 and v29_config.descriptors[47] == "tech"
    with pytest.raises(FileNotFoundError):
        TokenizerConfig.from_yaml("no-such-config")


def test_default_config_matches_v29_output_layout(tokenizer):
    default = Tokenizer(TokenizerConfig())
    assert default.offset == 17
    assert default.vocab_size_out == 3667
    assert default.event_ranges == tokenizer.event_ranges


def test_ranges_are_contiguous(tokenizer):
    expected = tokenizer.offset
    for r in tokenizer.event_ranges + tokenizer.input_event_ranges:
        assert tokenizer.event_start[r.type] == expected
        assert tokenizer.event_end[r.type] == expected + r.size
        expected += r.size
    assert expected == tokenizer.vocab_size_in


def test_layout_follows_config():
    small = Tokenizer(TokenizerConfig(gamemodes=[0], add_sv=False, add_kiai=False, add_timing_points=False,
                                      context_templates=[{"in": ["none"], "out": ["map"]}], position_split_axes=True,
                                      input_tokens=["gamemode", "difficulty"]))
    types = [r.type for r in small.event_ranges]
    assert T.COLUMN not in types and T.SCROLL_SPEED not in types and T.KIAI not in types
    assert T.TIMING_POINT not in types and T.DRUMROLL not in types and T.HOLD_NOTE not in types
    assert small.event_range[T.POS_X] == EventRange(T.POS_X, -8, 24)
    assert small.event_range[T.POS_Y] == EventRange(T.POS_Y, -8, 20)
    assert small.offset == 3 + 2 * 2
    assert [r.type for r in small.input_event_ranges] == [T.GAMEMODE, T.DIFFICULTY]
    with pytest.raises(ValueError):
        Tokenizer(TokenizerConfig(input_tokens=["gamemode", "colour"]))
    with pytest.raises(ValueError):
        Tokenizer(TokenizerConfig(context_templates=[{"in": ["nonsense"], "out": []}]))


# ---------------------------------------------------------------------------------------------
# encode / decode

def test_every_output_id_round_trips(tokenizer):
    seen = set()
    for token_id in range(tokenizer.offset, tokenizer.vocab_size_out):
        event = tokenizer.decode(token_id)
        assert tokenizer.encode(event) == token_id
        seen.add(event)
    assert len(seen) == tokenizer.vocab_size_out - tokenizer.offset


def test_every_input_id_round_trips(tokenizer):
    for token_id in range(tokenizer.vocab_size_out, tokenizer.vocab_size_in):
        assert tokenizer.encode(tokenizer.decode(token_id)) == token_id


@pytest.mark.parametrize("event, token_id", [
    (Event(T.TIME_SHIFT, 0), 17), (Event(T.TIME_SHIFT, 100), 117), (Event(T.SNAPPING, 4), 840),
    (Event(T.POS, 478), 1972), (Event(T.CIRCLE), 3645), (Event(T.KIAI, 1), 3659), (Event(T.DENDEN_END), 3666),
    (Event(T.YEAR, 2007), 3719), (Event(T.SONG_POSITION, -1), 3853), (Event(T.GLOBAL_SV, 140), 4175),
])
def test_known_ids(tokenizer, event, token_id):
    assert tokenizer.encode(event) == token_id
    assert tokenizer.decode(token_id) == event


@pytest.mark.parametrize("event", [
    Event(T.TIME_SHIFT, 819), Event(T.TIME_SHIFT, -1), Event(T.SNAPPING, 17), Event(T.DISTANCE, 641),
    Event(T.POS, 957), Event(T.COLUMN, 18), Event(T.HITSOUND, 73), Event(T.VOLUME, 101), Event(T.CIRCLE, 1),
    Event(T.KIAI, 2), Event(T.YEAR, 2006), Event(T.SONG_POSITION, 102), Event(T.GLOBAL_SV, 39),
    Event(T.POS_X, 0), Event(T.POS_REFINE, 0), Event(T.STYLE, 0), Event(T.CONTROL, 0),
])
def test_out_of_range_events_raise(tokenizer, event):
    with pytest.raises(ValueError):
        tokenizer.encode(event)


@pytest.mark.parametrize("token_id", [-1, 0, 1, 2, 3, 16, 4396, 10**6])
def test_non_event_ids_raise(tokenizer, token_id):
    with pytest.raises(ValueError):
        tokenizer.decode(token_id)


def test_decode_many_drops_special_ids(tokenizer):
    ids = [SOS, tokenizer.context_sos["map"], 3645, 117, tokenizer.context_eos["map"], EOS, PAD]
    assert tokenizer.decode_many(ids) == [Event(T.CIRCLE), Event(T.TIME_SHIFT, 100)]
    assert tokenizer.encode_many([Event(T.CIRCLE), Event(T.TIME_SHIFT, 100)]) == [3645, 117]


def test_clip(tokenizer):
    assert tokenizer.clip(T.TIME_SHIFT, 5000) == Event(T.TIME_SHIFT, 818)
    assert tokenizer.clip(T.TIME_SHIFT, -3) == Event(T.TIME_SHIFT, 0)
    assert tokenizer.clip(T.VOLUME, 150) == Event(T.VOLUME, 100)


# ---------------------------------------------------------------------------------------------
# Positions

@pytest.mark.parametrize("x, y, value", [(256, 192, 478), (100, 100, 374), (0, 0, 272), (-256, -256, 0),
                                         (511.9, 383.9, (15 + 8) + (11 + 8) * 33), (-1000, 5000, 0 + (20 + 8) * 33)])
def test_position_cells(tokenizer, x, y, value):
    assert tokenizer.position_events(x, y) == [Event(T.POS, value)]


def test_cell_position_is_inside_cell_and_playfield(tokenizer):
    for x in range(0, 513, 16):
        for y in range(0, 385, 16):
            [event] = tokenizer.position_events(x, y)
            cx, cy = tokenizer.cell_position(event.value)
            assert 0 <= cx <= 512 and 0 <= cy <= 384
            assert (cx // 32, cy // 32) == (x // 32, y // 32), (x, y, cx, cy)
    assert tokenizer.cell_position(478) == (272.0, 208.0)


# ---------------------------------------------------------------------------------------------
# Metadata tokens

@pytest.mark.parametrize("stars, bucket", [(5.5, 11), (0.0, 0), (0.49, 0), (0.5, 1), (11.99, 23), (12.0, 23),
                                           (54.0, 23), (-1.0, 0), (None, 24), (float("nan"), 24), (float("inf"), 24)])
def test_difficulty_bucket(tokenizer, stars, bucket):
    assert tokenizer.difficulty_event(stars) == Event(T.DIFFICULTY, bucket)


def test_difficulty_of(tokenizer):
    assert tokenizer.difficulty_of(11) == 5.5
    assert tokenizer.difficulty_of(24) is None


@pytest.mark.parametrize("cs, bucket", [(4, 8), (0, 0), (3.6, 7), (10, 20), (11, 20), (-2, 0), (None, 21)])
def test_cs_bucket(tokenizer, cs, bucket):
    assert tokenizer.cs_event(cs) == Event(T.CS, bucket)


@pytest.mark.parametrize("year, value", [(None, 2077), (2015, 2015), (2000, 2007), (2100, 2077)])
def test_year(tokenizer, year, value):
    assert tokenizer.year_event(year) == Event(T.YEAR, value)


@pytest.mark.parametrize("start, length, value", [(0, 100000, -1), (-500, 100000, -1), (100000, 100000, 101),
                                                  (150000, 100000, 101), (50000, 100000, 50), (1, 100000, 0),
                                                  (99600, 100000, 100), (34000, 100000, 34), (1000, 0, -1)])
def test_song_position(tokenizer, start, length, value):
    assert tokenizer.song_position_event(start, length) == Event(T.SONG_POSITION, value)


@pytest.mark.parametrize("ratio, value", [(0, -1), (-0.5, -1), (1, 11), (1.5, 11), (0.34, 3), (0.04, 0),
                                          (0.999, 10), (None, 12), (float("nan"), 12)])
def test_ratio_buckets(tokenizer, ratio, value):
    assert tokenizer.hold_note_ratio_event(ratio) == Event(T.HOLD_NOTE_RATIO, value)
    assert tokenizer.scroll_speed_ratio_event(ratio) == Event(T.SCROLL_SPEED_RATIO, value)


@pytest.mark.parametrize("sm, value", [(1.4, 140), (0.4, 40), (3.6, 360), (0.1, 40), (5, 360), (1.85, 185)])
def test_global_sv(tokenizer, sm, value):
    assert tokenizer.global_sv_event(sm) == Event(T.GLOBAL_SV, value)


def test_other_metadata_tokens(tokenizer):
    assert tokenizer.gamemode_event(3) == Event(T.GAMEMODE, 3)
    assert tokenizer.gamemode_event(7) == Event(T.GAMEMODE, 3)
    assert tokenizer.hitsounded_event(True) == Event(T.HITSOUNDED, 1)
    assert tokenizer.hitsounded_event(0) == Event(T.HITSOUNDED, 0)
    assert tokenizer.song_length_event(95_000) == Event(T.SONG_LENGTH, 9)
    assert tokenizer.song_length_event(10**9) == Event(T.SONG_LENGTH, 60)
    assert tokenizer.keycount_event(7) == Event(T.KEYCOUNT, 7)
    assert tokenizer.keycount_event(20) == Event(T.KEYCOUNT, 18)
    assert tokenizer.mapper_event("12345") == Event(T.MAPPER, 0)  # no mappers known: the unknown class
    assert tokenizer.mapper_event(None) == Event(T.MAPPER, 0)


def test_mapper_classes():
    tok = Tokenizer(TokenizerConfig(mapper_idx={"100": 0, "200": 1, 300: 1}))
    assert tok.num_mapper_classes == 2
    assert tok.mapper_event(100) == Event(T.MAPPER, 0)
    assert tok.mapper_event("300") == Event(T.MAPPER, 1)
    assert tok.mapper_event(999) == Event(T.MAPPER, 2)
    assert tok.mapper_event(None) == Event(T.MAPPER, 2)


def test_descriptors(tokenizer):
    assert tokenizer.descriptor_events(["gimmick", "tech"]) == [Event(T.DESCRIPTOR, 0), Event(T.DESCRIPTOR, 47)]
    assert tokenizer.descriptor_events(["no such descriptor"]) == [Event(T.DESCRIPTOR, 72)]
    assert tokenizer.descriptor_events(["no such descriptor", "port"]) == [Event(T.DESCRIPTOR, 71)]
    assert tokenizer.descriptor_events([]) == [Event(T.DESCRIPTOR, 72)]
    assert tokenizer.descriptor_events(None) == [Event(T.DESCRIPTOR, 72)]
    for events in (tokenizer.descriptor_events(["tech"]), tokenizer.descriptor_events(["?"])):
        tokenizer.encode_many(events)  # all in range


# ---------------------------------------------------------------------------------------------
# tokenizer.json

def test_save_load_identical(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in TOKENIZER_JSON_KEYS:
        assert key in data, key
    assert data["offset"] == 17 and data["vocab_size_out"] == 3667 and data["vocab_size_in"] == 4396
    assert data["event_start"]["t"] == 17 and data["event_end"]["t"] == 836
    assert data["event_range"]["pos"] == {"type": "pos", "min_value": 0, "max_value": 956}
    assert data["num_diff_classes"] == 24 and data["max_difficulty"] == 12.0 and data["num_cs_classes"] == 21
    assert data["num_descriptor_classes"] == 72 and data["descriptor_idx"]["tech"] == 47
    loaded = Tokenizer.load(path)
    assert ids_of(loaded) == ids_of(tokenizer)
    assert loaded.config == tokenizer.config
    # saving the loaded tokenizer gives the same file
    path2 = tmp_path / "again.json"
    loaded.save(path2)
    assert json.loads(path2.read_text(encoding="utf-8")) == data


def test_load_upstream_file_without_config(tokenizer, tmp_path):
    data = tokenizer.to_dict()
    del data["config"]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded = Tokenizer.load(path)
    assert ids_of(loaded) == ids_of(tokenizer)
    assert loaded.config.position_precision == 32
    assert loaded.position_events(100, 100) == [Event(T.POS, 374)]
    assert loaded.cell_position(374) == tokenizer.cell_position(374)
    assert loaded.descriptor_events(["tech"]) == [Event(T.DESCRIPTOR, 47)]
    assert {k: v for k, v in loaded.to_dict().items() if k != "config"} == data


def test_load_upstream_file_with_other_precision(tmp_path):
    original = Tokenizer(TokenizerConfig(position_precision=16))
    data = original.to_dict()
    del data["config"]
    loaded = Tokenizer.from_dict(data)
    assert loaded.config.position_precision == 16
    assert loaded.position_events(100, 100) == original.position_events(100, 100)


def test_load_keeps_stored_ids_over_config(tokenizer):
    """A stored vocabulary is never re-derived from the (possibly newer) config inside it."""
    data = tokenizer.to_dict()
    data["config"]["add_distances"] = False
    loaded = Tokenizer.from_dict(data)
    assert loaded.event_start == tokenizer.event_start
    assert loaded.encode(Event(T.DISTANCE, 10)) == tokenizer.encode(Event(T.DISTANCE, 10))


def test_load_rejects_inconsistent_file(tokenizer):
    data = tokenizer.to_dict()
    data["vocab_size_out"] += 1
    with pytest.raises(ValueError):
        Tokenizer.from_dict(data)
