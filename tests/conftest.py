"""Shared helpers for the tokenizer tests: hand-written .osu builders and the v29 tokenizer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the Hugging Face hub

REPO_ROOT = Path(__file__).resolve().parents[1]
V29_CONFIG = REPO_ROOT / "configs" / "tokenizer" / "v29.yaml"

# A 120 BPM redline at 0 (beat 500 ms, 4/4, soft sample set, index 0, volume 60).
DEFAULT_REDLINE = "0,500,4,2,0,60,1,0"


def osu_text(
    mode: int = 0,
    hit_objects: Iterable[str] = ("256,192,1000,1,0,0:0:0:0:",),
    timing_points: Iterable[str] = (DEFAULT_REDLINE,),
    *,
    version: int | str = 14,
    general: dict[str, str] | None = None,
    editor: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    difficulty: dict[str, str] | None = None,
    events: Iterable[str] = (),
    colours: dict[str, str] | None = None,
    extra_sections: str = "",
    header: str | None = None,
    newline: str = "\n",
) -> str:
    """A .osu file as text in the layout osu! writes (v14 by default) for `mode`.

    Every section can be overridden; `header` replaces the first line entirely.
    """
    general = {"AudioFilename": "audio.mp3", "AudioLeadIn": "0", "PreviewTime": "-1", "Countdown": "0",
               "SampleSet": "Soft", "StackLeniency": "0.7", "Mode": str(mode), "LetterboxInBreaks": "0",
               "WidescreenStoryboard": "0", **(general or {})}
    editor = {"DistanceSpacing": "1", "BeatDivisor": "4", "GridSize": "32", "TimelineZoom": "1", **(editor or {})}
    metadata = {"Title": "Test Song", "TitleUnicode": "Test Song", "Artist": "Tester", "ArtistUnicode": "Tester",
                "Creator": "pytest", "Version": f"Mode {mode}", "Source": "", "Tags": "unit test",
                "BeatmapID": "0", "BeatmapSetID": "-1", **(metadata or {})}
    difficulty = {"HPDrainRate": "5", "CircleSize": "4", "OverallDifficulty": "8", "ApproachRate": "9",
                  "SliderMultiplier": "1.4", "SliderTickRate": "1", **(difficulty or {})}
    lines = [header if header is not None else f"osu file format v{version}", ""]
    lines += ["[General]", *(f"{k}: {v}" for k, v in general.items()), ""]
    lines += ["[Editor]", *(f"{k}: {v}" for k, v in editor.items()), ""]
    lines += ["[Metadata]", *(f"{k}:{v}" for k, v in metadata.items()), ""]
    lines += ["[Difficulty]", *(f"{k}:{v}" for k, v in difficulty.items()), ""]
    lines += ["[Events]", "//Background and Video events", *events, "//Break Periods", "//Storyboard", ""]
    if extra_sections:
        lines += [extra_sections.rstrip("\n"), ""]
    lines += ["[TimingPoints]", *timing_points, ""]
    if colours:
        lines += ["[Colours]", *(f"{k} : {v}" for k, v in colours.items()), ""]
    lines += ["[HitObjects]", *hit_objects, ""]
    return newline.join(lines)


def circle(x: float, y: float, time: float, *, new_combo: bool = False, hitsound: int = 0,
           sample: str = "0:0:0:0:") -> str:
    return f"{x:g},{y:g},{time:g},{1 | (4 if new_combo else 0)},{hitsound},{sample}"


def mania_note(column: int, keys: int, time: float, hitsound: int = 0) -> str:
    return f"{int((column + 0.5) * 512 / keys)},192,{time:g},1,{hitsound},0:0:0:0:"


def mania_hold(column: int, keys: int, time: float, end: float, hitsound: int = 0) -> str:
    return f"{int((column + 0.5) * 512 / keys)},192,{time:g},128,{hitsound},{end:g}:0:0:0:0:"


def std_map_text() -> str:
    """120 BPM (500 ms beats), SV 1.5 from 2000 ms: circles, a 2-span bezier slider, a spinner, a linear slider."""
    objects = [circle(64 + 40 * k, 100 + 20 * (k % 3), 500 + 250 * k, new_combo=k == 0) for k in range(6)]
    objects += ["300,200,2000,2,0,B|350:150|400:200,2,105",
                "256,192,3500,12,0,4000,0:0:0:0:",
                "100,300,4500,2,0,L|220:300,1,70"]
    return osu_text(0, objects, ["0,500,4,2,0,60,1,0", "2000,-66.6666666667,4,2,0,60,0,0", "3000,-100,4,2,0,60,0,0"])


@pytest.fixture
def write_osu(tmp_path):
    """write_osu(content, name="map.osu") -> Path; content is text (written as UTF-8) or bytes."""
    def write(content: str | bytes, name: str = "map.osu") -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return write


@pytest.fixture(scope="session")
def v29_config():
    from omegaconf import OmegaConf

    from tokenizer.vocabulary import TokenizerConfig

    return TokenizerConfig.from_dict(OmegaConf.to_container(OmegaConf.load(V29_CONFIG)))


@pytest.fixture(scope="session")
def tokenizer(v29_config):
    from tokenizer.vocabulary import Tokenizer

    return Tokenizer(v29_config)


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    """../shared/beatmaps next to the repository; the corpus tests skip when it is absent."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "beatmaps"
    if not (root / "index.csv").is_file():
        pytest.skip("../shared/beatmaps not found")
    return root


def click_track(seconds: float, bpm: float = 120.0, sample_rate: int = 16000, offset_ms: float = 0.0):
    """Mono float32 audio with a short 1 kHz click on every beat."""
    import numpy as np

    return clicks_at(np.arange(offset_ms, seconds * 1000, 60000 / bpm), seconds, sample_rate)


def clicks_at(times_ms, seconds: float, sample_rate: int = 16000, hz: float = 1000.0):
    """Mono float32 audio with a short click (a 25 ms burst of `hz`, 1 kHz by default) at each of the times."""
    import numpy as np

    audio = np.zeros(int(seconds * sample_rate), dtype=np.float32)
    click = np.sin(2 * np.pi * hz * np.arange(400) / sample_rate) * np.hanning(400)
    for time in times_ms:
        i = int(time * sample_rate / 1000)
        audio[i:i + 400] += click[:len(audio) - i]
    return audio


def make_synthetic_corpus(root: Path, sets: int = 3, seconds: float = 20.0) -> Path:
    """A tiny beatmap folder in our corpus layout: per set a click track and an osu! + a mania map on its beats.

    The last set is the val split. Returns `root`.
    """
    import csv

    import soundfile

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(sets):
        folder = root / "sets" / f"S{s}"
        folder.mkdir(parents=True)
        bpm = 120 + 20 * s
        beat = 60000 / bpm
        soundfile.write(folder / "audio.ogg", click_track(seconds, bpm), 16000)
        times = [round(beat * k) for k in range(1, int(seconds * 1000 / beat) - 1)]
        maps = {
            0: [circle(64 + (k * 96) % 384, 96 + (k * 64) % 192, t, new_combo=k % 4 == 0) for k, t in enumerate(times)],
            3: [mania_note(k % 4, 4, t) for k, t in enumerate(times)],
        }
        for mode, objects in maps.items():
            name = f"set{s}_mode{mode}.osu"
            text = osu_text(mode, objects, [f"0,{beat:.6g},4,2,0,60,1,0"], general={"AudioFilename": "audio.ogg"},
                            metadata={"Creator": f"mapper{s}", "Version": f"mode {mode}"})
            (folder / name).write_text(text, encoding="utf-8")
            rows.append({"set_id": f"S{s}", "split": "val" if s == sets - 1 else "train",
                         "osu_path": f"sets/S{s}/{name}", "audio_path": f"sets/S{s}/audio.ogg", "mode": mode})
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus"))


TINY_BACKBONE = dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=128, decoder_ffn_dim=128)
TINY_MEL = dict(n_fft=1024, n_mels=64, f_min=20.0, f_max=8000.0, mel_scale="htk", mel_norm=None,
                spectrogram_log_scale=True, pad_mode="reflect")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved random model of a tiny shape: the real loading and generation code runs in seconds."""
    import torch

    from osuT5.model import Mapperatorinator, model_config, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    save_model(Mapperatorinator(model_config(TINY_BACKBONE, TINY_MEL, tokenizer, 256, 3.0, True)), tokenizer, folder)
    return folder


def quantised_groups(beatmap, tokenizer) -> dict:
    """A human map's groups as a model would write them: through tokens, window by window (10 ms times, 32 px cells)."""
    from tokenizer.decode import events_to_groups
    from tokenizer.encode import beatmap_to_groups, groups_to_events, window_slice

    window = tokenizer.config.window_ms
    out = {}
    for context, groups in beatmap_to_groups(beatmap, tokenizer.config).items():
        times, decoded, start = [g.time for g in groups], [], 0.0
        while groups and start <= times[-1]:
            ids = tokenizer.encode_many(groups_to_events(window_slice(groups, times, start, start + window), tokenizer, start))
            decoded += events_to_groups(tokenizer.decode_many(ids), tokenizer, start)
            start += window
        out[context] = decoded
    return out


def replay_maps(monkeypatch, tokenizer, beatmap_for_mode) -> None:
    """Make every generation pass write `beatmap_for_mode(mode)`'s groups, as a perfect model would."""
    from osuT5.generate import Generator

    def generate_context(self, context, windows, plan, prefilled=None, sampling=None, progress=None, density=None, onsets=None):
        groups = quantised_groups(beatmap_for_mode(plan.metadata.mode), tokenizer).get(context, [])
        low, high = windows[0].region_start_ms, windows[-1].region_end_ms
        self.tokens_generated += 7 * len(groups)
        return sorted((prefilled or []) + [g for g in groups if low <= g.time < high], key=lambda g: g.time)

    monkeypatch.setattr(Generator, "generate_context", generate_context)
