"""The tick scorer: its features on a click track, training it on a click corpus, the shipped model, bad folders."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from postprocess.rhythm import (BAND_NEIGHBOURS, BANDS_HZ, BAR_QUARTERS, FEATURES, NEIGHBOURS, RhythmModelError, SongOnsets,
                                load_rhythm_model, tick_features)
from postprocess.tempo import PHASE_BAND_HZ, OnsetEnvelope
from postprocess.train_rhythm import train
from tokenizer.timing import Timing, TimingPoint

from conftest import click_track, clicks_at

REPO = Path(__file__).resolve().parents[1]
ON_TICK = NEIGHBOURS.index(0)
SECTION = len(NEIGHBOURS)
BANDS = SECTION + 1
PLACE = BANDS + len(BANDS_HZ) * len(BAND_NEIGHBOURS) + 1
PER_BEAT, MODE = PLACE + BAR_QUARTERS, PLACE + BAR_QUARTERS + 2


def features_of(audio: np.ndarray, times: np.ndarray, objects_per_s: float = 2.0, mode: int = 0) -> np.ndarray:
    return tick_features(SongOnsets.of(audio, 16000), Timing([TimingPoint(0.0, 500.0)]), times, objects_per_s, mode)


def test_one_stft_gives_the_song_the_same_envelopes_as_one_per_band_set():
    audio = click_track(10.0, 150.0, 16000, 100.0) + clicks_at(np.arange(300.0, 10000.0, 400.0), 10.0, 16000, hz=5000.0)
    song = SongOnsets.of(audio, 16000)
    assert np.array_equal(song.whole.values, OnsetEnvelope.of(audio, 16000).values)
    assert np.array_equal(song.bands.values, OnsetEnvelope.of(audio, 16000, BANDS_HZ).values)
    assert np.array_equal(song.phase.values, OnsetEnvelope.of(audio, 16000, [PHASE_BAND_HZ]).values[:, 0])


def test_features_read_the_onsets_on_and_around_a_tick_and_its_place_in_the_bar():
    times = np.arange(2000.0, 6000.0, 125.0)  # the 1/4 ticks of 120 BPM; clicks on every beat
    features = features_of(click_track(8.0), times)
    on_beat = times % 500 == 0
    assert features.shape == (32, FEATURES) and features.dtype == np.float32
    assert features[on_beat, ON_TICK].min() > 0.3 and features[~on_beat, ON_TICK].max() < 0.05
    assert np.array_equal(features[:, NEIGHBOURS.index(4)], features[:, ON_TICK])  # a beat on, the same as on the tick
    assert features[times % 500 == 375, NEIGHBOURS.index(1)].min() > 0.3  # a click a quarter beat after
    bands = BANDS + BAND_NEIGHBOURS.index(0) * len(BANDS_HZ) + np.arange(len(BANDS_HZ))  # each band on the tick
    assert (features[on_beat][:, bands].min(axis=0) > 2 * features[~on_beat][:, bands].max(axis=0)).all()
    place = features[:, PLACE:PLACE + BAR_QUARTERS].argmax(axis=1)
    assert place.tolist() == [int(t // 125) % 16 for t in times]  # 2000 ms is the 16th quarter: a bar's start
    assert np.allclose(features[:, PER_BEAT], math.log(2.0 * 0.5))  # 2 objects/s at 500 ms a beat
    assert features[:, MODE:MODE + 4].argmax(axis=1).tolist() == [0] * 32


def test_a_model_trained_on_a_click_corpus_scores_the_mapped_clicks_above_the_rest(synthetic_corpus, tmp_path):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train_rhythm", [f"data_root={synthetic_corpus}", f"output_dir={tmp_path / 'rhythm'}",
                                       "gamemodes=[0,3]", "epochs=150", "threads=1", "label_tolerance_ms=40"])
    train(cfg)
    config = json.loads((tmp_path / "rhythm" / "config.json").read_text())
    assert config["gamemodes"] == [0, 3] and config["features"] == FEATURES
    # 40 ms: the audio timing of synthetic clicks sits 30 ms early (their log flux rises before them; real songs' 10 ms)
    assert min(config["val_top_k_f1"][mode]["model"] for mode in ("0", "3")) >= 0.95
    model = load_rhythm_model(tmp_path / "rhythm")
    times = np.arange(2000.0, 6000.0, 125.0)
    on_beat = times % 500 == 0
    chance = model.probability(features_of(click_track(8.0), times))
    assert chance[on_beat].min() > 0.5 > chance[~on_beat].max()


def test_the_shipped_model_prefers_loud_onsets_to_silence_and_knows_its_modes():
    model = load_rhythm_model(REPO / "weights" / "rhythm")
    assert model.gamemodes == (0, 1, 3)
    assert (REPO / "weights" / "rhythm" / "model.safetensors").stat().st_size < 100_000
    times = np.arange(2000.0, 10000.0, 250.0)  # the 1/2 ticks; clicks on the beats of the first half only
    audio = clicks_at(np.arange(0.0, 6000.0, 500.0), 12.0)
    for mode in (0, 3):
        chance = model.probability(features_of(audio, times, objects_per_s=2.0, mode=mode))
        clicks, silence = chance[(times < 6000) & (times % 500 == 0)], chance[times >= 6500]
        assert clicks.min() > 2 * silence.max(), mode


def test_a_missing_or_stale_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(RhythmModelError, match="holds no rhythm model"):
        load_rhythm_model(tmp_path)
    shipped = REPO / "weights" / "rhythm"
    (tmp_path / "model.safetensors").write_bytes((shipped / "model.safetensors").read_bytes())
    config = json.loads((shipped / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "features": FEATURES - 1}))
    with pytest.raises(RhythmModelError, match="trained on other features"):
        load_rhythm_model(tmp_path)
