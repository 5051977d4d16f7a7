"""osuT5.audio: decoding every format the corpus and users bring, partial files, errors, speed change, cache."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from osuT5 import audio as audio_mod
from osuT5.audio import AudioCache, AudioError, AudioWarning, change_speed, load_audio

SR = 16000
TONE_HZ = 440.0


def tone(seconds: float = 1.0, rate: int = 44100, channels: int = 2, noise: float = 0.0) -> np.ndarray:
    """A 440 Hz sine at amplitude 0.5, (frames, channels); optional seeded noise makes lossy files bigger."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = np.repeat((0.5 * np.sin(2 * np.pi * TONE_HZ * t))[:, None], channels, axis=1)
    if noise:
        x = x + np.random.default_rng(0).normal(0.0, noise, x.shape)
    return x


def dominant_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spectrum)])


def can_write(fmt: str, subtype: str) -> bool:
    return fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt)


# (file name, soundfile format, subtype, rate the file is written at)
FORMATS = [
    ("tone.wav", "WAV", "PCM_16", 44100),
    ("tone.flac", "FLAC", "PCM_16", 44100),
    ("tone.ogg", "OGG", "VORBIS", 44100),
    ("tone.mp3", "MP3", "MPEG_LAYER_III", 44100),
    ("tone.opus", "OGG", "OPUS", 48000),  # libsndfile's opus encoder refuses 44.1 kHz
]


@pytest.mark.parametrize("name,fmt,subtype,rate", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_every_format_to_16k_mono_peak_one(tmp_path, name, fmt, subtype, rate):
    if not can_write(fmt, subtype):
        pytest.skip(f"this libsndfile build cannot write {fmt}/{subtype}")
    path = tmp_path / name
    sf.write(path, tone(1.0, rate), rate, format=fmt, subtype=subtype)

    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - SR) <= 0.01 * SR
    assert abs(float(np.max(np.abs(x))) - 1.0) <= 1e-6
    assert abs(dominant_hz(x) - TONE_HZ) <= 5.0


def test_other_sample_rate_and_no_resample_when_equal(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(0.5, SR, channels=1), SR, subtype="FLOAT")
    x = load_audio(path, sample_rate=SR)
    assert len(x) == SR // 2
    np.testing.assert_allclose(x, tone(0.5, SR, channels=1)[:, 0] / 0.5, atol=1e-6)

    y = load_audio(path, sample_rate=22050)
    assert abs(len(y) - 11025) <= 2 and abs(dominant_hz(y, 22050) - TONE_HZ) <= 5.0


def test_downmix_is_the_mean_of_the_channels(tmp_path):
    path = tmp_path / "anti_phase.wav"
    x = tone(0.25)
    x[:, 1] = -x[:, 0]  # left + right cancel: the mean is silence, the first channel alone is not
    sf.write(path, x, 44100, subtype="FLOAT")
    assert not np.any(load_audio(path))


def test_silent_audio_stays_zeros(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((44100, 2)), 44100)
    x = load_audio(path)
    assert x.dtype == np.float32 and abs(len(x) - SR) <= 0.01 * SR
    assert not np.any(x) and np.all(np.isfinite(x))


@pytest.mark.skipif(not can_write("MP3", "MPEG_LAYER_III"), reason="libsndfile here cannot write mp3")
def test_truncated_mp3_keeps_what_decodes_and_warns(tmp_path):
    path = tmp_path / "cut.mp3"
    sf.write(path, tone(3.0), 44100, format="MP3", subtype="MPEG_LAYER_III")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])

    with pytest.warns(AudioWarning, match=r"cut\.mp3.*kept"):
        x = load_audio(path)

    assert len(x) > 0.5 * 3 * SR
    assert abs(float(np.max(np.abs(x))) - 1.0) <= 1e-6
    assert abs(dominant_hz(x) - TONE_HZ) <= 5.0


def test_truncated_ogg_keeps_complete_pages(tmp_path):
    # An ogg cut mid-page reports the length of its last complete page, so nothing can tell it was
    # truncated (no warning is promised); what matters is that the complete pages still decode.
    path = tmp_path / "cut.ogg"
    sf.write(path, tone(3.0, noise=0.1), 44100, format="OGG", subtype="VORBIS")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])

    x = load_audio(path)
    assert len(x) > 0.5 * 3 * SR


def test_missing_path(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.mp3.*not found"):
        load_audio(tmp_path / "nope.mp3")


def test_directory(tmp_path):
    folder = tmp_path / "song.ogg"
    folder.mkdir()
    with pytest.raises(AudioError, match=r"song\.ogg.*directory"):
        load_audio(folder)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.ogg"
    path.touch()
    with pytest.raises(AudioError, match=r"empty\.ogg.*empty"):
        load_audio(path)


def test_text_file_named_mp3(tmp_path, monkeypatch):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio\n" * 20)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"notes\.mp3.*not an audio file"):
        load_audio(path)


def test_m4a_without_ffmpeg_says_so(tmp_path, monkeypatch):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"song\.m4a.*ffmpeg"):
        load_audio(path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_route_decodes(tmp_path):
    path = tmp_path / "song.m4a"  # wav bytes under an m4a name: ffmpeg probes the content
    sf.write(path, tone(1.0), 44100, format="WAV")
    x = load_audio(path)
    assert x.dtype == np.float32 and abs(len(x) - SR) <= 0.01 * SR
    assert abs(dominant_hz(x) - TONE_HZ) <= 5.0


def test_change_speed_raises_pitch_and_shortens():
    x = tone(1.0, SR, channels=1)[:, 0].astype(np.float32)
    assert change_speed(x, 1.0) is x

    fast = change_speed(x, 1.5)
    assert fast.dtype == np.float32
    assert abs(len(fast) - len(x) / 1.5) <= 0.01 * len(x) / 1.5
    assert abs(dominant_hz(fast) - 1.5 * TONE_HZ) <= 5.0

    slow = change_speed(x, 0.75)
    assert abs(len(slow) - len(x) / 0.75) <= 0.01 * len(x) / 0.75
    assert abs(dominant_hz(slow) - 0.75 * TONE_HZ) <= 5.0


def test_cache_decodes_once_and_invalidates_on_new_mtime(tmp_path, monkeypatch):
    src = tmp_path / "tone.wav"
    sf.write(src, tone(0.5), 44100)
    cache_dir = tmp_path / "cache"
    cache = AudioCache(cache_dir)

    first = cache.load(src)
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".npy"]  # exactly one entry, no temp left
    np.testing.assert_array_equal(first, load_audio(src))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again despite a cache hit")

    monkeypatch.setattr(audio_mod, "load_audio", must_not_decode)
    second = AudioCache(cache_dir).load(str(src))  # a fresh instance (another worker) hits too
    np.testing.assert_array_equal(second, first)
    assert isinstance(second, np.memmap)

    calls = []

    def counting_decode(path, sample_rate=SR):
        calls.append(path)
        return np.zeros(8, dtype=np.float32)

    monkeypatch.setattr(audio_mod, "load_audio", counting_decode)
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    third = cache.load(src)
    assert len(calls) == 1 and len(third) == 8
    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_cache_keys_on_sample_rate_and_passes_errors_through(tmp_path):
    src = tmp_path / "tone.wav"
    sf.write(src, tone(0.5), 44100)
    assert len(AudioCache(tmp_path / "c", 16000).load(src)) == 8000
    assert len(AudioCache(tmp_path / "c", 8000).load(src)) == 4000
    with pytest.raises(AudioError, match="missing.ogg"):
        AudioCache(tmp_path / "c").load(tmp_path / "missing.ogg")


def test_cache_without_dir_just_decodes(tmp_path):
    src = tmp_path / "tone.wav"
    sf.write(src, tone(0.5), 44100)
    x = AudioCache(None).load(src)
    assert abs(len(x) - 8000) <= 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.wav"]


def test_corpus_audio_length_matches_index(corpus_root: Path):
    with open(corpus_root / "index.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["audio_path"].lower().endswith(".ogg") and r["audio_duration_s"]]
    if not rows:
        pytest.skip("index.csv lists no .ogg audio")
    row = min(rows, key=lambda r: float(r["audio_duration_s"]))  # the shortest keeps the test fast

    path = corpus_root / row["audio_path"]
    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    info = sf.info(str(path))
    assert abs(len(x) - info.frames * SR / info.samplerate) <= 1  # every frame decoded
    # audio_duration_s is ffprobe's length of the *original* file; the corpus README puts the
    # transcoded ogg within -0.05..+0.13 s of it, hence slightly more than 0.1 s of slack.
    assert abs(len(x) / SR - float(row["audio_duration_s"])) <= 0.15
