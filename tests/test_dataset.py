"""Training examples: sequence layout, labels, augmentations, determinism and skipped beatmaps."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from osuT5.audio import AudioCache
from osuT5.dataset import DatasetOptions, WindowDataset, collate, load_records, mapper_index
from osuT5.model import IGNORE_INDEX
from osuT5.sequence import BeatmapMetadata, Context, build_sequence, metadata_events
from osuT5.sources import find_beatmaps
from tokenizer.events import ContextType, Event, EventType
from tokenizer.vocabulary import EOS, SOS, Tokenizer

T = EventType


@pytest.fixture(scope="module")
def setup(synthetic_corpus, tmp_path_factory, v29_config):
    audio = AudioCache(tmp_path_factory.mktemp("audio-cache"))
    records = load_records(find_beatmaps(synthetic_corpus, split="train"), audio)
    config = dataclasses.replace(v29_config, mapper_idx=mapper_index(records))  # never mutate the shared fixture
    return records, Tokenizer(config), audio


def make(setup, **options) -> WindowDataset:
    records, tokenizer, audio = setup
    return WindowDataset(records, tokenizer, DatasetOptions(**options), audio, tgt_seq_len=1024)


def map_events(tokenizer: Tokenizer, ids, start_token: str = "map") -> list[Event]:
    """The events between the map context's ctx_sos and ctx_eos."""
    ids = list(ids)
    lo = ids.index(tokenizer.context_sos[start_token]) + 1
    return tokenizer.decode_many(ids[lo:ids.index(tokenizer.context_eos[start_token], lo)])


def test_sequence_layout(tokenizer):
    meta = BeatmapMetadata(mode=0, star_rating=5.2, song_length_ms=90_000, circle_size=4)
    metadata = metadata_events(tokenizer, meta, window_start_ms=9000)
    types = [e.type for e in metadata]
    assert types == [T.GAMEMODE, T.DIFFICULTY, T.MAPPER, T.YEAR, T.HITSOUNDED, T.SONG_LENGTH, T.GLOBAL_SV, T.CS,
                     T.DESCRIPTOR, T.KIAI, T.SCROLL_SPEED, T.SONG_POSITION]
    assert metadata[1] == Event(T.DIFFICULTY, 10) and metadata[-1] == Event(T.SONG_POSITION, 10)
    circle = [Event(T.CIRCLE), Event(T.TIME_SHIFT, 3)]
    ids, targets = build_sequence(tokenizer, [Context(ContextType.NONE)], metadata, [Context(ContextType.MAP, circle)])
    sos = ids.index(SOS)
    assert ids[:2] == [tokenizer.context_sos["none"], tokenizer.context_eos["none"]]
    assert ids[sos + 1:] == [tokenizer.context_sos["map"], *tokenizer.encode_many(circle), tokenizer.context_eos["map"], EOS]
    assert not any(targets[:sos + 1]) and all(targets[sos + 1:])
    prompt, _ = build_sequence(tokenizer, [Context(ContextType.NONE)], metadata, [Context(ContextType.MAP, circle)], end=False)
    assert prompt == ids[:-2]  # an inference prompt stops before ctx_eos and EOS


def test_mania_metadata_has_keycount_and_ratios(tokenizer):
    types = [e.type for e in metadata_events(tokenizer, BeatmapMetadata(mode=3, keycount=7), 0)]
    assert T.KEYCOUNT in types and T.HOLD_NOTE_RATIO in types and T.SCROLL_SPEED_RATIO in types
    assert T.CS not in types and T.GLOBAL_SV not in types


def test_plain_example_matches_the_beatmap(setup):
    records, tokenizer, _ = setup
    ds = make(setup)
    assert len(ds) == sum(int(np.ceil(r.duration_ms / ds.window_ms)) for r in records)
    b = next(i for i, r in enumerate(records) if r.beatmap.mode == 0)
    example = ds.example(0, b, 1)
    inputs, labels = example["decoder_input_ids"], example["labels"]
    full = list(inputs) + [int(labels[-1])]
    events = map_events(tokenizer, full)
    start = ds.window_ms
    expected = [o.time for o in records[b].beatmap.hit_objects if start <= o.time < start + ds.window_ms]
    shifts = [e.value for i, e in enumerate(events[:-1]) if events[i].type == T.CIRCLE and events[i + 1].type == T.TIME_SHIFT
              for e in [events[i + 1]]]
    assert shifts == [int((t - start) / 10) for t in expected]
    # labels are the inputs shifted by one wherever labelled, and nothing before SOS is labelled
    sos = list(inputs).index(SOS)
    assert (labels[:sos] == IGNORE_INDEX).all()
    labelled = labels != IGNORE_INDEX
    assert (labels[labelled][:-1] == inputs[1:][labelled[:-1]][: labelled.sum() - 1]).all()
    assert labels[labelled][-1] == EOS
    assert example["audio"].shape == (ds.window_samples,) and example["audio"].dtype == np.float32


def test_examples_are_deterministic_and_epochs_differ(setup):
    options = dict(seed=3, shuffle=True, frame_offset_prob=1.0, dt_prob=0.5, flip_prob=0.5, lookback_prob=0.5,
                   timing_jitter=2, context_weights={"none": 1, "no_hs": 1, "gd": 1},
                   metadata_dropout={"star_rating": 0.5})
    a, b = make(setup, **options), make(setup, **options)
    for i in (0, 5, len(a) - 1):
        ea, eb = a[i], b[i]
        assert np.array_equal(ea["decoder_input_ids"], eb["decoder_input_ids"]) and np.array_equal(ea["audio"], eb["audio"])
    first = list(a.plan)
    a.plan_epoch(1)
    assert a.plan != first and sorted(set(a.plan)) != []


def test_speed_augmentation_scales_times_and_audio(setup):
    records, tokenizer, _ = setup
    ds = make(setup, dt_prob=1.0, dt_range=(1.5, 1.5))
    b = next(i for i, r in enumerate(records) if r.beatmap.mode == 0)
    example = ds.example(0, b, 0)
    events = map_events(tokenizer, list(example["decoder_input_ids"]) + [int(example["labels"][-1])])
    shifts = [events[i + 1].value for i in range(len(events) - 1) if events[i].type == T.CIRCLE]
    expected = [int(o.time / 1.5 / 10) for o in records[b].beatmap.hit_objects if o.time / 1.5 < ds.window_ms]
    assert shifts == expected
    # the clicks of the sped-up audio sit at the sped-up object times (10 ms frames of energy)
    frames = example["audio"][: len(example["audio"]) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero((frames ** 2).sum(1) > 0.05 * (frames ** 2).sum(1).max())
    for t in expected[:5]:
        assert np.min(np.abs(loud - t)) <= 2


def test_flips_mirror_positions(setup):
    records, tokenizer, _ = setup
    b = next(i for i, r in enumerate(records) if r.beatmap.mode == 0)
    plain = make(setup).example(0, b, 0)
    flipped = make(setup, flip_prob=1.0).example(0, b, 0)
    cells = lambda ex: [e.value for e in map_events(tokenizer, list(ex["decoder_input_ids"])) if e.type == T.POS]
    for a, f in zip(cells(plain), cells(flipped)):
        (ax, ay), (fx, fy) = tokenizer.cell_position(a), tokenizer.cell_position(f)
        assert abs((512 - ax) - fx) <= 32 and abs((384 - ay) - fy) <= 32


def test_lookback_leaves_the_first_fifth_unlabelled(setup):
    records, tokenizer, _ = setup
    b = next(i for i, r in enumerate(records) if r.beatmap.mode == 0)
    example = make(setup, lookback_prob=1.0, lookback=0.2).example(0, b, 1)
    labels = example["labels"]
    circle = tokenizer.encode(Event(T.CIRCLE))
    shift_lo = tokenizer.event_start[T.TIME_SHIFT]
    labelled_shifts = [int(labels[i + 1]) - shift_lo for i in range(len(labels) - 1) if labels[i] == circle]
    assert labelled_shifts and min(labelled_shifts) >= int(0.2 * make(setup).window_ms / 10)
    inputs = list(example["decoder_input_ids"])
    all_shifts = [inputs[i + 1] - shift_lo for i in range(len(inputs) - 1) if inputs[i] == circle]
    assert min(all_shifts) < int(0.2 * make(setup).window_ms / 10)  # still in the input


def test_timing_jitter_only_touches_input_time_shifts(setup):
    records, tokenizer, _ = setup
    plain = make(setup).example(0, 0, 1)
    jittered = make(setup, timing_jitter=2).example(0, 0, 1)
    assert np.array_equal(plain["labels"], jittered["labels"])
    diff = jittered["decoder_input_ids"] - plain["decoder_input_ids"]
    changed = np.flatnonzero(diff)
    lo, hi = tokenizer.event_start[T.TIME_SHIFT], tokenizer.event_end[T.TIME_SHIFT]
    assert len(changed) > 0 and np.abs(diff).max() <= 2
    assert all(lo <= plain["decoder_input_ids"][i] < hi for i in changed)


def test_metadata_dropout_gives_unknown_tokens(setup):
    records, tokenizer, _ = setup
    example = make(setup, metadata_dropout={"star_rating": 1.0, "mapper": 1.0}).example(0, 0, 0)
    events = tokenizer.decode_many(list(example["decoder_input_ids"]))
    assert Event(T.DIFFICULTY, tokenizer.config.num_diff_classes) in events
    assert Event(T.MAPPER, tokenizer.num_mapper_classes) in events
    kept = tokenizer.decode_many(list(make(setup).example(0, 0, 0)["decoder_input_ids"]))
    assert Event(T.MAPPER, tokenizer.mapper_idx[records[0].mapper]) in kept


def test_guest_difficulty_context_shows_the_other_map(setup):
    records, tokenizer, _ = setup
    ds = make(setup, context_weights={"gd": 1.0})
    b = next(i for i, r in enumerate(records) if r.beatmap.mode == 0)
    ids = list(ds.example(0, b, 1)["decoder_input_ids"])
    assert ids[0] == tokenizer.context_sos["gd"]
    gd = tokenizer.decode_many(ids[1:ids.index(tokenizer.context_eos["gd"])])
    assert gd[0].type == T.DIFFICULTY and any(e.type == T.COLUMN for e in gd)  # the partner is the mania map


def test_no_hs_context_is_the_map_without_hitsounds(setup):
    records, tokenizer, _ = setup
    ids = list(make(setup, context_weights={"no_hs": 1.0}).example(0, 0, 1)["decoder_input_ids"])
    no_hs = tokenizer.decode_many(ids[1:ids.index(tokenizer.context_eos["no_hs"])])
    out = map_events(tokenizer, ids)
    assert no_hs == [e for e in out if e.type not in (T.HITSOUND, T.VOLUME)]


def test_length_buckets_reduce_padding(setup):
    plain = make(setup, shuffle=True, batch_size=4)
    bucketed = make(setup, shuffle=True, batch_size=4, length_buckets=8)
    assert sorted(plain.plan) == sorted(bucketed.plan)

    def padding(ds):
        lengths = [len(ds[i]["decoder_input_ids"]) for i in range(len(ds))]
        return sum(max(lengths[i:i + 4]) * len(lengths[i:i + 4]) - sum(lengths[i:i + 4]) for i in range(0, len(lengths), 4))
    assert padding(bucketed) < padding(plain)


def test_collate_pads_right(setup):
    ds = make(setup)
    batch = collate([ds[0], ds[3]])
    n0, n1 = len(ds[0]["decoder_input_ids"]), len(ds[3]["decoder_input_ids"])
    assert batch["decoder_input_ids"].shape == (2, max(n0, n1))
    assert batch["decoder_attention_mask"].sum(1).tolist() == [n0, n1]
    assert batch["audio"].shape == (2, ds.window_samples)


def test_broken_beatmaps_are_skipped_and_counted(synthetic_corpus, tmp_path, caplog):
    entries = find_beatmaps(synthetic_corpus, split="train")
    broken = tmp_path / "broken.osu"
    broken.write_text("osu file format v14\n\n[General]\nMode: 0\n")
    bad_audio = tmp_path / "noise.ogg"
    bad_audio.write_text("not audio")
    entries = entries + [entries[0].__class__(broken, entries[0].audio_path, "X"),
                         entries[0].__class__(entries[0].osu_path, bad_audio, "Y")]
    with caplog.at_level(logging.WARNING):
        records = load_records(entries, AudioCache(tmp_path / "cache"))
    assert len(records) == len(entries) - 2
    assert "skipped 2 of 6 beatmaps: 1 unreadable beatmap, 1 unreadable or empty audio" in caplog.text
