"""The generation pipeline behind inference.py: check the request, run the passes, write the files.

Arguments are resolved once into `Request` (reference notes §4.1): a reference beatmap fills what
the user left unset, every value is range-checked, and the output folder is proven writable before
any model work starts, so bad input costs a second and never leaves a half-written file.
"""
from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from postprocess.beatmap import build_beatmap, with_whole_pixels
from postprocess.combos import regular_combos
from postprocess.difficulty import fit_star_rating, raise_star_rating, removal_order, spread_chords, weakest_first_order
from postprocess.generated import SUFFIX as GENERATED_SUFFIX
from postprocess.generated import Generation, GeneratedError, read_generated, write_generated
from postprocess.holds import add_holds
from postprocess.merge import merge_partial
from postprocess.onset_fill import OnsetFill, fill_chords, fill_onsets
from postprocess.package import write_osz
from postprocess.rhythm import RhythmModel, RhythmModelError, RhythmScorer, SongOnsets, TickScore, load_rhythm_model, onset_share
from postprocess.spacing import even_spacing
from postprocess.tempo import beat_support, estimate_redline, follow_tempo, start_bars
from postprocess.timing import DEFAULT_BEAT_LENGTH, consensus_markers, markers_to_timing_points
from tokenizer.check import star_rating
from tokenizer.encode import beatmap_to_groups, hold_note_ratio, is_hitsounded, scroll_speed_ratio, timing_groups
from tokenizer.events import ContextType, EventType, Group
from tokenizer.osu_file import Beatmap, BeatmapError, format_beatmap, read_beatmap, write_beatmap
from tokenizer.timing import Timing, TimingPoint
from tokenizer.vocabulary import Tokenizer

from osu_diffusion.objects import object_sequence
from osu_diffusion.refine import RefineOptions, Refiner, RefinerError

from .audio import DEFAULT_SAMPLE_RATE, AudioError, load_audio
from .cli import is_number
from .density import DensityControl, from_stars
from .generate import ContextPlan, Generator
from .logits import SamplingConfig
from .model import load_model
from .onset_prior import OnsetPrior
from .sequence import BeatmapMetadata

T = EventType
AUDIO_EXTENSIONS = (".mp3", ".ogg", ".wav", ".flac", ".opus", ".m4a", ".aac")
IN_CONTEXTS = ("NONE", "TIMING", "KIAI", "MAP", "SV", "GD", "NO_HS")
OUT_CONTEXTS = ("TIMING", "KIAI", "MAP", "SV")
PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16", "amp")
TIMING_SOURCES = ("auto", "model", "audio")
# Settings whose default is null that take a number (the command line checks those with a number as default).
NUMBER_SETTINGS = ("gamemode", "difficulty", "year", "keycount", "hold_note_ratio", "scroll_speed_ratio", "circle_size",
                   "slider_multiplier", "overall_difficulty", "approach_rate", "hp_drain_rate", "slider_tick_rate",
                   "start_time", "end_time", "seed", "bpm", "preview_time", "threads")
SILENCE = 1e-4  # peak amplitude below which a file counts as silent (before normalisation it is all zeros)
TAG_KEYS = ("model_path", "gamemode", "difficulty", "mapper_id", "year", "descriptors", "negative_descriptors",
            "cfg_scale", "cfg_difficulty", "temperature", "timing_temperature", "top_p", "top_k", "super_timing",
            "in_context", "output_type", "start_time", "end_time", "seed")


class InferenceError(Exception):
    """A request that cannot be carried out; the message is one sentence for the user."""


class EmptyMapError(InferenceError):
    """The model ran but wrote no hit objects, so there is no beatmap to save."""


@dataclass
class Request:
    """A checked, fully resolved generation request."""
    cfg: DictConfig
    audio_path: Path
    output_dir: Path
    reference: Beatmap | None
    reference_path: Path | None
    mode: int
    metadata: BeatmapMetadata
    settings: dict[str, str]  # [Difficulty] values as written
    names: dict[str, str]  # [Metadata] values
    seed: int
    in_context: list[str]
    output_type: list[str]
    preview_time: int
    background: str | None
    difficulty_defaulted: bool = False  # no difficulty given: it aims at default_difficulty


@dataclass
class Result:
    beatmap: Beatmap
    osu_path: Path
    osz_path: Path | None
    seconds: float
    tokens: int
    stars: float
    bpm: float
    generated_path: Path | None = None  # the saved generation, with save_generated
    default_stars: float | None = None  # the star rating aimed at where no difficulty was given

    def summary(self) -> str:
        where = self.osz_path or self.osu_path
        speed = f" ({self.tokens / max(self.seconds, 1e-9):.0f} tokens/s)" if self.tokens else ""
        aimed = "" if self.default_stars is None else (
            f"\n(no difficulty was given, so it aimed at {self.default_stars:g}*, a typical human map; "
            f"difficulty=N chooses)")
        return (f"{len(self.beatmap.hit_objects)} objects, {self.stars:.2f}*, {self.bpm:g} BPM -> {where} "
                f"in {self.seconds:.1f} s{speed}{aimed}")


# -- resolving the request ------------------------------------------------------------------------
def resolve(cfg: DictConfig) -> Request:
    """Check every argument and fill unset ones from the reference beatmap or the defaults."""
    for name in NUMBER_SETTINGS:
        value = cfg[name]
        _check(value is None or is_number(value), f"{name} must be a number, not {value}")
    reference, reference_path = _reference(cfg)
    audio_path = _audio_path(cfg, reference, reference_path)
    ref = reference
    mode = _pick(cfg.gamemode, ref.mode if ref else None, 0)
    _check(mode in (0, 1, 2, 3), f"gamemode must be 0 (osu!), 1 (taiko), 2 (catch) or 3 (mania), not {mode}")
    default_difficulty = _per_mode(cfg.default_difficulty)
    _check(len(default_difficulty) == 4 and all(d is None or (is_number(d) and 0 <= d <= 20) for d in default_difficulty),
           f"default_difficulty must be null or a star rating from 0 to 20, once or for each mode 0-3, not {cfg.default_difficulty}")
    difficulty = _pick(cfg.difficulty, _stars(ref) if ref and ref.mode == mode else None, None)
    _check(difficulty is None or 0 <= difficulty <= 20, f"difficulty must be a star rating from 0 to 20, not {difficulty}")
    difficulty_defaulted = difficulty is None and default_difficulty[mode] is not None
    if difficulty_defaulted:
        difficulty = float(default_difficulty[mode])
    keycount = int(_pick(cfg.keycount, ref.keycount if ref and ref.mode == 3 else None, 4))
    _check(1 <= keycount <= 18, f"keycount must be from 1 to 18, not {keycount}")
    circle_size = _pick(cfg.circle_size, ref.cs if ref and ref.mode != 3 else None, 4.0)
    values = {
        "hp_drain_rate": _pick(cfg.hp_drain_rate, ref.hp if ref else None, 5.0),
        "circle_size": circle_size,
        "overall_difficulty": _pick(cfg.overall_difficulty, ref.od if ref else None, 8.0),
        "approach_rate": _pick(cfg.approach_rate, ref.ar if ref else None, 9.0),
    }
    for name, value in values.items():
        _check(0 <= value <= 10, f"{name} must be from 0 to 10, not {value}")
    slider_multiplier = _pick(cfg.slider_multiplier, ref.slider_multiplier if ref else None, 1.4)
    _check(0.4 <= slider_multiplier <= 3.6, f"slider_multiplier must be from 0.4 to 3.6, not {slider_multiplier}")
    tick_rate = _pick(cfg.slider_tick_rate, ref.slider_tick_rate if ref else None, 1.0)
    _check(0.5 <= tick_rate <= 8, f"slider_tick_rate must be from 0.5 to 8, not {tick_rate}")
    ratios = {}
    for name, compute in (("hold_note_ratio", hold_note_ratio), ("scroll_speed_ratio", scroll_speed_ratio)):
        from_reference = compute(ref) if ref and ref.mode == mode and ref.hit_objects else None
        ratios[name] = _pick(cfg[name], from_reference, None)
        _check(ratios[name] is None or 0 <= ratios[name] <= 1, f"{name} must be from 0 to 1, not {ratios[name]}")
    _check(0 <= cfg.mania_hold_share <= 1, f"mania_hold_share must be from 0 to 1, not {cfg.mania_hold_share}")
    year = cfg.year
    _check(year is None or 2007 <= int(year) <= 2100, f"year must be 2007 or later, not {year}")
    _check_sampling(cfg)
    in_context, output_type = _contexts(cfg, reference)
    start, end = cfg.start_time, cfg.end_time
    _check(start is None or start >= 0, f"start_time must be 0 or more, not {start}")
    _check(start is None or end is None or end > start, f"end_time ({end}) must be after start_time ({start})")
    _check(not cfg.add_to_beatmap or reference is not None, "add_to_beatmap needs beatmap_path, the map to add to")
    _check(not cfg.overwrite_reference_beatmap or cfg.add_to_beatmap,
           "overwrite_reference_beatmap only applies with add_to_beatmap=true")
    seed = int(cfg.seed) if cfg.seed is not None else random.randint(0, 65535)
    hitsounded = _pick(cfg.hitsounded, is_hitsounded(ref) if ref else None, True)
    metadata = BeatmapMetadata(
        mode=mode, star_rating=difficulty, mapper=None if cfg.mapper_id is None else str(cfg.mapper_id),
        year=None if year is None else int(year), hitsounded=bool(hitsounded), slider_multiplier=slider_multiplier,
        circle_size=circle_size, keycount=keycount, hold_note_ratio=ratios["hold_note_ratio"],
        scroll_speed_ratio=ratios["scroll_speed_ratio"], descriptors=list(cfg.descriptors) or None,
    )
    settings = {
        "HPDrainRate": _number(values["hp_drain_rate"]),
        "CircleSize": _number(keycount if mode == 3 else circle_size),
        "OverallDifficulty": _number(values["overall_difficulty"]),
        "ApproachRate": _number(values["approach_rate"]),
        "SliderMultiplier": _number(slider_multiplier),
        "SliderTickRate": _number(tick_rate),
    }
    output_dir = _output_dir(cfg, audio_path, reference_path)
    return Request(cfg, audio_path, output_dir, reference, reference_path, mode, metadata, settings,
                   _names(cfg, ref, audio_path, difficulty), seed, in_context, output_type,
                   int(_pick(cfg.preview_time, _int_or_none(ref.general.get("PreviewTime")) if ref else None, -1)),
                   cfg.background if cfg.background is not None else (ref.background if ref else None),
                   difficulty_defaulted)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InferenceError(message)


def _check_file(path: Path, what: str) -> None:
    _check(path.exists(), f"{what} {path} does not exist")
    _check(path.is_file(), f"{what} {path} is a folder, not a file")


def _pick(value, from_reference, default):
    """The user's value, else the reference's, else the default."""
    if value is not None:
        return value
    return from_reference if from_reference is not None else default


def _number(value: float) -> str:
    return f"{float(value):g}"


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _stars(beatmap: Beatmap) -> float | None:
    return star_rating(beatmap) if beatmap.hit_objects else None


def read_beatmap_path(path_text: str) -> tuple[Path, Beatmap]:
    """The user's beatmap_path, read (never written), or one sentence on why it cannot be used."""
    path = Path(str(path_text)).expanduser()
    _check_file(path, "beatmap_path")
    _check(path.suffix.lower() == ".osu", f"beatmap_path {path} is not a .osu file")
    try:
        return path, read_beatmap(path)
    except BeatmapError as e:
        raise InferenceError(f"beatmap_path is not a usable beatmap: {e}") from None


def _reference(cfg: DictConfig) -> tuple[Beatmap | None, Path | None]:
    if cfg.beatmap_path is None:
        return None, None
    path, beatmap = read_beatmap_path(cfg.beatmap_path)
    _check(bool(beatmap.hit_objects) or bool(beatmap.timing_points), f"beatmap_path {path} has no timing points and no hit objects")
    return beatmap, path


def _audio_path(cfg: DictConfig, reference: Beatmap | None, reference_path: Path | None) -> Path:
    if cfg.audio_path is not None:
        path = Path(str(cfg.audio_path)).expanduser()
    elif reference is not None and reference.general.get("AudioFilename"):
        path = reference_path.parent / reference.general["AudioFilename"].strip()
    else:
        raise InferenceError("give audio_path=SONG (or beatmap_path=MAP whose audio file is next to it)")
    _check_file(path, "audio file")
    _check(path.suffix.lower() in AUDIO_EXTENSIONS,
           f"{path.name} is not a supported audio format (use {', '.join(AUDIO_EXTENSIONS)})")
    return path


def _check_sampling(cfg: DictConfig) -> None:
    _check(cfg.cfg_scale >= 1, f"cfg_scale must be 1 (off) or more, not {cfg.cfg_scale}")
    _check(isinstance(cfg.cfg_difficulty, bool), f"cfg_difficulty must be true or false, not {cfg.cfg_difficulty}")
    for name in ("temperature", "timing_temperature", "mania_column_temperature", "taiko_hit_temperature"):
        _check(cfg[name] >= 0, f"{name} must be 0 or more, not {cfg[name]}")
    _check(0 < cfg.top_p <= 1, f"top_p must be above 0 and at most 1, not {cfg.top_p}")
    _check(cfg.top_k >= 0, f"top_k must be 0 (off) or more, not {cfg.top_k}")
    _check(0 <= cfg.lookback < 1 and 0 <= cfg.lookahead < 1 and cfg.lookback + cfg.lookahead < 1,
           "lookback and lookahead must each be from 0 to 1 and together below 1")
    _check(cfg.max_new_tokens >= 1, f"max_new_tokens must be 1 or more, not {cfg.max_new_tokens}")
    _check(cfg.timer_iterations >= 1, f"timer_iterations must be 1 or more, not {cfg.timer_iterations}")
    _check(cfg.timing_leniency > 0, f"timing_leniency must be above 0 ms, not {cfg.timing_leniency}")
    _check(cfg.bpm is None or 30 <= cfg.bpm <= 1000, f"bpm must be from 30 to 1000, not {cfg.bpm}")
    _check(cfg.timing_source in TIMING_SOURCES,
           f"timing_source must be one of {', '.join(TIMING_SOURCES)}, not {cfg.timing_source}")
    _check(cfg.audio_timing_margin > 0, f"audio_timing_margin must be above 0, not {cfg.audio_timing_margin}")
    _check(30 <= cfg.min_bpm < cfg.max_bpm <= 1000, "min_bpm and max_bpm must be from 30 to 1000, min_bpm below max_bpm")
    density = cfg.target_density
    _check(density in (None, "auto") or (is_number(density) and density > 0),
           f"target_density must be auto, null (off) or objects per second above 0, not {density}")
    for name, what in (("onset_prior", "a weight"), ("onset_snap", "a number of beats"), ("onset_fill", "a share of target_density")):
        values = _per_mode(cfg[name])
        _check(len(values) == 4 and all(is_number(v) and v >= 0 for v in values),
               f"{name} must be {what} of 0 (off) or more, or one per mode 0-3, not {cfg[name]}")
    for name, what in (("onset_fill_gap", "ms"), ("mania_raise_gap", "ms"), ("onset_fill_strength", "a tick score"),
                       ("onset_fill_drop", "a tick score"),
                       ("onset_fill_whole_beats", "objects a beat")):
        _check(is_number(cfg[name]) and cfg[name] >= 0,
               f"{name} must be {what}, 0 or more, not {cfg[name]}")
    _check(isinstance(cfg.onset_fill_divisor, int) and not isinstance(cfg.onset_fill_divisor, bool)
           and 1 <= cfg.onset_fill_divisor <= 16, f"onset_fill_divisor must be a snap divisor from 1 to 16, not {cfg.onset_fill_divisor}")
    _check(isinstance(cfg.mania_raise_divisor, int) and not isinstance(cfg.mania_raise_divisor, bool)
           and 0 <= cfg.mania_raise_divisor <= 16,
           f"mania_raise_divisor must be a snap divisor from 1 to 16, or 0 (off), not {cfg.mania_raise_divisor}")
    fit = _per_mode(cfg.fit_stars)
    _check(len(fit) == 4 and all(isinstance(v, bool) for v in fit),
           f"fit_stars must be true or false, once or for each mode 0-3, not {cfg.fit_stars}")
    tolerance = _per_mode(cfg.star_tolerance)
    _check(len(tolerance) == 4 and all(is_number(v) and v >= 0 for v in tolerance),
           f"star_tolerance must be stars, 0 or more, once or for each mode 0-3, not {cfg.star_tolerance}")
    spacing = cfg.even_spacing
    _check(spacing is None or (_is_number_pair(spacing) and 0 <= spacing[0] <= spacing[1]),
           f"even_spacing must be null (off) or [low, high], shares of the spacing with 0 <= low <= high, not {spacing}")
    _check(isinstance(cfg.new_combo_at_bars, int) and not isinstance(cfg.new_combo_at_bars, bool) and cfg.new_combo_at_bars >= 0,
           f"new_combo_at_bars must be a number of objects, 0 (off) or more, not {cfg.new_combo_at_bars}")
    _check(cfg.spacing_fit is None or _is_number_pair(cfg.spacing_fit),
           f"spacing_fit must be null or [a, b] of log(px per ms) = a + b * stars, not {cfg.spacing_fit}")
    _check(cfg.mania_chord_fit is None or _is_number_pair(cfg.mania_chord_fit),
           f"mania_chord_fit must be null (off) or [a, b] of notes per distinct time = a + b * stars, not {cfg.mania_chord_fit}")
    separate = cfg.separate_starts
    _check((OmegaConf.is_list(separate) or isinstance(separate, (list, tuple))) and len(separate) == 4
           and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in separate),
           f"separate_starts must be a snap divisor, 0 (off) or more, for each mode 0-3, not {separate}")
    _check(str(cfg.precision) in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision}")


def _is_number_pair(value) -> bool:
    return (OmegaConf.is_list(value) or isinstance(value, (list, tuple))) and len(value) == 2 and all(is_number(v) for v in value)


def _names_list(values, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [str(v).upper() for v in (values or [])]
    for name in names:
        _check(name in allowed, f"{what} {name} is not one of {', '.join(allowed)}")
    return names


def _contexts(cfg: DictConfig, reference: Beatmap | None) -> tuple[list[str], list[str]]:
    in_context = _names_list(cfg.in_context, IN_CONTEXTS, "in_context")
    output_type = _names_list(cfg.output_type, OUT_CONTEXTS, "output_type")
    _check(bool(output_type), "output_type must name at least one of TIMING, KIAI, MAP, SV")
    needs_reference = [c for c in in_context if c != "NONE"]
    if needs_reference and reference is None:
        raise InferenceError(f"in_context {needs_reference[0]} needs beatmap_path, the map to take it from")
    if cfg.add_to_beatmap:  # a partial remap keeps the reference's timing and kiai
        in_context = sorted(set(in_context) | {"TIMING", "KIAI"}, key=IN_CONTEXTS.index)
    return in_context, output_type


def _output_dir(cfg: DictConfig, audio_path: Path, reference_path: Path | None) -> Path:
    if cfg.output_path is not None:
        folder = Path(str(cfg.output_path)).expanduser()
    else:
        folder = reference_path.parent if reference_path is not None else audio_path.parent
    _check(not folder.exists() or folder.is_dir(), f"output_path {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InferenceError(f"cannot write to the output folder {folder} ({e.strerror or e})") from None
    return folder


def _names(cfg: DictConfig, ref: Beatmap | None, audio_path: Path, difficulty: float | None) -> dict[str, str]:
    meta = ref.metadata if ref else {}
    title = _pick(cfg.title, meta.get("Title"), audio_path.stem)
    artist = _pick(cfg.artist, meta.get("Artist"), "Unknown Artist")
    version = cfg.version if cfg.version is not None else (
        f"{meta['Version']} (AI)" if "Version" in meta else f"AI {difficulty:g}*" if difficulty is not None else "AI")
    return {
        "Title": str(title), "TitleUnicode": str(_pick(cfg.title_unicode, meta.get("TitleUnicode"), title)),
        "Artist": str(artist), "ArtistUnicode": str(_pick(cfg.artist_unicode, meta.get("ArtistUnicode"), artist)),
        "Creator": str(_pick(cfg.creator, meta.get("Creator"), "Mapperatorinator")), "Version": str(version),
        "Source": str(_pick(cfg.source, meta.get("Source"), "")),
    }


# -- running it -----------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InferenceError(f"device {name!r} is not a device torch knows (use auto, cpu, cuda or mps)") from None
    _check(device.type != "cuda" or torch.cuda.is_available(), f"device {name} was asked for but CUDA is not available")
    _check(device.type != "mps" or torch.backends.mps.is_available(), f"device {name} was asked for but MPS is not available")
    return device


def pick_precision(name: str, device: torch.device) -> str:
    """`auto`: where the hardware computes bf16 natively, bf16 autocast on a GPU, and on a CPU bf16
    weights with int8 copies for the decoder's one-token steps (bound there by reading the weights,
    bench/RESULTS.md); else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "amp" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        native = [getattr(torch.cpu, f"_is_{kind}_supported", lambda: False)() for kind in ("avx512_bf16", "amx_tile")]
        return "int8" if any(native) else "fp32"
    return "fp32"


def load_generator(cfg: DictConfig, device: torch.device, precision: str):
    """Model and tokenizer in `precision`, with one clear error for a bad model folder."""
    _check(precision != "fp16" or device.type == "cuda", "precision fp16 needs a CUDA device; use bf16 or amp on this machine")
    _check(precision != "int8" or device.type == "cpu", "precision int8 is for CPUs; use amp or bf16 on this device")
    dtype = {"bf16": torch.bfloat16, "int8": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    try:
        model, tokenizer = load_model(str(cfg.model_path), device=device, dtype=dtype)
    except FileNotFoundError as e:
        raise InferenceError(f"model_path {cfg.model_path}: {e}; train one (osuT5/train.py) or pass model_path=FOLDER") from None
    model.prepare_steps(int8=precision == "int8")
    return model, tokenizer


def load_refiner(cfg: DictConfig, device: torch.device, tokenizer: Tokenizer) -> Refiner:
    """The position refiner, keeping objects inside the generator's position cells."""
    options = RefineOptions(start_step=int(cfg.diff_start_step), cfg_scale=float(cfg.diff_cfg_scale),
                            distance_passes=int(cfg.diff_distance_passes),
                            cell_size=float(tokenizer.config.position_precision))
    _check(1 <= options.start_step <= 1000, f"diff_start_step must be from 1 to 1000, not {options.start_step}")
    try:
        return Refiner.load(str(cfg.diff_model_path), options, device)
    except RefinerError as error:
        raise InferenceError(str(error)) from None


def refine_positions(groups: list[Group], refiner: Refiner, redlines: list[TimingPoint], meta: BeatmapMetadata) -> None:
    """Replace the generated cell-centre positions of the map groups with refined ones, in place."""
    seq = object_sequence(groups, Timing(redlines), meta.slider_multiplier)
    if len(seq):
        classes = refiner.classes(meta.star_rating, meta.mapper, meta.descriptors, meta.circle_size)
        seq.write_back(refiner.refine(seq, classes))


def run(cfg: DictConfig) -> Result:
    """Resolve, generate every requested context (or read a saved generation), post-process and write the
    beatmap (and .osz, and with `save_generated` the generation)."""
    began = time.perf_counter()
    request = resolve(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(request.seed)
    audio = load_song(request.audio_path, DEFAULT_SAMPLE_RATE)  # before the model: bad audio fails in a second
    rhythm = load_rhythm(cfg)
    if cfg.generated_path:
        generation, song_ms, tokens = _saved_generation(request), len(audio) * 1000 / DEFAULT_SAMPLE_RATE, 0
        song = partial(SongOnsets.of, audio, DEFAULT_SAMPLE_RATE)
    else:
        generator, generation, song_ms = _run_model(request, audio)
        song, tokens = (lambda: generator.song_onsets), generator.tokens_generated
    beatmap = _postprocess(request, generation, song, song_ms, rhythm)
    if not beatmap.hit_objects:
        raise EmptyMapError("the model wrote no hit objects for this song; nothing was saved "
                            "(try another seed, a higher temperature, or check model_path)")
    osu_path, osz_path = _write(request, beatmap)
    generated_path = _free_name(osu_path.parent, osu_path.stem, GENERATED_SUFFIX) if cfg.save_generated else None
    if generated_path is not None:
        write_generated(generated_path, generation)
    stars = star_rating(beatmap) if beatmap.hit_objects else 0.0
    bpm = round(60000 / Timing(beatmap.timing_points).median_beat_length(song_ms), 2)
    return Result(beatmap, osu_path, osz_path, time.perf_counter() - began, tokens, stars, bpm, generated_path,
                  request.metadata.star_rating if request.difficulty_defaulted else None)


def _saved_generation(request: Request) -> Generation:
    """The generation at `generated_path`, for the requested mode."""
    try:
        generation = read_generated(Path(str(request.cfg.generated_path)))
    except GeneratedError as e:
        raise InferenceError(str(e)) from None
    _check(generation.mode == request.mode,
           f"the saved generation is for gamemode {generation.mode}, not the requested {request.mode}")
    return generation


def _run_model(request: Request, audio: np.ndarray) -> tuple[Generator, Generation, float]:
    """Load the models and generate: the generator (for its onsets and token count), the generation, song ms."""
    cfg = request.cfg
    generator = build_generator(request, audio)
    refiner = load_refiner(cfg, generator.device, generator.tokenizer) if cfg.generate_positions and request.mode in (0, 2) else None
    return generator, _generate(request, generator, generator.tokenizer, generator.song_ms, refiner), generator.song_ms


def build_generator(request: Request, audio: np.ndarray) -> Generator:
    """The generator model in the configured precision, over the song (loaded again if the model wants
    another sample rate), sampling as the request asks."""
    cfg = request.cfg
    device = pick_device(str(cfg.device))
    precision = pick_precision(str(cfg.precision), device)
    model, tokenizer = load_generator(cfg, device, precision)
    if model.config.sample_rate != DEFAULT_SAMPLE_RATE:
        audio = load_song(request.audio_path, model.config.sample_rate)
    _check(request.mode in tokenizer.config.gamemodes, f"this model was not trained for gamemode {request.mode}")
    unknown = [d for d in list(cfg.descriptors) + list(cfg.negative_descriptors) if d not in tokenizer.descriptor_idx]
    if unknown:
        raise InferenceError(f"descriptor {unknown[0]!r} is not in this model's vocabulary (see its tokenizer.json)")
    request.metadata.song_length_ms = len(audio) * 1000 / model.config.sample_rate
    autocast = torch.bfloat16 if precision == "amp" else None
    sampling = SamplingConfig(do_sample=bool(cfg.do_sample), temperature=float(cfg.temperature),
                              timing_temperature=float(cfg.timing_temperature),
                              mania_column_temperature=float(cfg.mania_column_temperature),
                              taiko_hit_temperature=float(cfg.taiko_hit_temperature),
                              top_p=float(cfg.top_p), top_k=int(cfg.top_k), cfg_scale=float(cfg.cfg_scale),
                              gamemode=request.mode, lookback_ends_window=bool(cfg.lookback_ends_window))
    return Generator(model, tokenizer, audio, sampling, request.seed, float(cfg.lookback), float(cfg.lookahead),
                     int(cfg.max_new_tokens), autocast=autocast, progress=bool(cfg.progress))


def _postprocess(request: Request, generation: Generation, song: Callable[[], SongOnsets],
                 song_ms: float, rhythm: RhythmModel | None) -> Beatmap:
    """The playable beatmap: built from the groups on the redlines, fitted to the stars, given holds (mania), merged
    for a remap."""
    cfg = request.cfg
    template = _template(request)
    template.timing_points = list(generation.redlines)
    onset_snap = float(_per_mode(cfg.onset_snap)[request.mode])
    fill_share, target = float(_per_mode(cfg.onset_fill)[request.mode]), _target_density(cfg, request.metadata)
    filling = fill_share > 0 and target is not None and not cfg.add_to_beatmap
    stars, jump_fit = request.metadata.star_rating, cfg.jump_fit[request.mode]
    fitting = _per_mode(cfg.fit_stars)[request.mode] and stars is not None and not cfg.add_to_beatmap
    score = None
    if onset_snap > 0 or filling or (fitting and jump_fit is None):  # taiko and mania fitting removes the weakest notes
        score = _tick_score(rhythm, request.mode, song(), Timing(generation.redlines), target)
    beatmap = build_beatmap(generation.groups, template, seed=request.seed,
                            snap_overlaps=bool(cfg.snap_near_perfect_overlaps), resnap=bool(cfg.resnap_events),
                            exact_snaps=bool(cfg.exact_snaps),
                            separate_finest=int(cfg.separate_starts[request.mode]),
                            onset_score=score, onset_snap_beats=onset_snap)
    fill = None
    if filling:
        fill = OnsetFill(fill_share * target, float(cfg.onset_fill_gap), float(cfg.onset_fill_strength), int(cfg.onset_fill_divisor),
                         float(cfg.onset_fill_drop), float(cfg.onset_fill_whole_beats))
        beatmap = fill_onsets(beatmap, score, fill, song_ms)
    if request.mode == 0 and cfg.even_spacing is not None:  # before fitting, which rates the spaced map
        per_ms = from_stars(stars, tuple(cfg.spacing_fit)) if stars is not None and cfg.spacing_fit is not None else None
        beatmap = even_spacing(beatmap, *map(float, cfg.even_spacing), per_ms)
    more = replace(fill, drop_below=0.0) if fill is not None else None  # adding circles takes none out
    if fitting and more is not None and request.mode == 3 and cfg.mania_chord_fit is not None:
        per_time = max(1.0, float(cfg.mania_chord_fit[0]) + float(cfg.mania_chord_fit[1]) * stars)
        beatmap = spread_chords(beatmap, per_time, score, lambda b, count: fill_onsets(b, score, more, song_ms, count))
    if fitting:
        # osu! and catch ease their jumps, then lose the hardest objects; taiko and mania have no movement to ease
        floor = from_stars(stars, tuple(jump_fit)) if jump_fit is not None else None
        order = removal_order if jump_fit is not None else partial(weakest_first_order, score=score)
        tolerance = float(_per_mode(cfg.star_tolerance)[request.mode])
        beatmap = fit_star_rating(beatmap, stars, tolerance, floor, float(cfg.fit_max_removed), order)
        if more is not None:  # a map under the request gets circles on its best free ticks
            raisers = [lambda b, count: fill_onsets(b, score, more, song_ms, count)]
            if request.mode == 3 and cfg.mania_raise_divisor:  # still under: finer ticks, then chords
                finer = replace(more, divisor=int(cfg.mania_raise_divisor), min_gap_ms=float(cfg.mania_raise_gap))
                raisers += [lambda b, count: fill_onsets(b, score, finer, song_ms, count),
                            lambda b, count: fill_chords(b, score, count, finer.min_gap_ms)]
            for add in raisers:
                beatmap = raise_star_rating(beatmap, stars, tolerance, add)
    if request.mode == 0 and cfg.new_combo_at_bars:  # after fitting, which adds and removes objects
        beatmap = regular_combos(beatmap, int(cfg.new_combo_at_bars))
    if request.mode == 3:  # last: the times fitting chose stay
        asked = request.metadata.hold_note_ratio
        beatmap = add_holds(beatmap, float(asked if asked is not None else cfg.mania_hold_share))
    beatmap = with_whole_pixels(beatmap)
    if cfg.add_to_beatmap:
        beatmap = merge_partial(request.reference, beatmap, *_range(cfg, song_ms))
    return beatmap


def load_rhythm(cfg: DictConfig) -> RhythmModel | None:
    """The tick scorer at `rhythm_model_path` (None: off), or one sentence on why it cannot be used."""
    if cfg.rhythm_model_path is None:
        return None
    try:
        return load_rhythm_model(str(cfg.rhythm_model_path))
    except RhythmModelError as error:
        raise InferenceError(str(error)) from None


def _tick_score(rhythm: RhythmModel | None, mode: int, song: SongOnsets, timing: Timing, target: float | None) -> TickScore:
    """What onset snapping and filling rank ticks by: the rhythm model's probability where it was trained on the
    mode (and there is a target density), else onset strength."""
    if rhythm is None or target is None or mode not in rhythm.gamemodes:
        return onset_share(song.whole)
    return RhythmScorer(rhythm, song, timing, target, mode)


def load_song(path: Path, sample_rate: int, task: str = "map") -> np.ndarray:
    """The song, or one sentence on why it cannot be used (`task` words what a silent song stops)."""
    try:
        audio = load_audio(path, sample_rate)
    except AudioError as e:
        raise InferenceError(str(e)) from None
    _check(len(audio) >= sample_rate // 10, f"audio file {path.name} is empty (under 0.1 s of sound)")
    _check(float(np.abs(audio).max()) > SILENCE, f"audio file {path.name} is silent: there is nothing to {task}")
    return audio


def _range(cfg: DictConfig, song_ms: float) -> tuple[float, float]:
    return (float(cfg.start_time) if cfg.start_time is not None else 0.0,
            float(cfg.end_time) if cfg.end_time is not None else song_ms)


def _generate(request: Request, generator: Generator, tokenizer: Tokenizer, song_ms: float,
              refiner: Refiner | None = None) -> Generation:
    """Timing, then kiai, map and sv passes (each sees the ones before), then the refiner."""
    cfg = request.cfg
    start, end = _range(cfg, song_ms)
    reference_groups = beatmap_to_groups(request.reference, tokenizer.config) if request.reference else {}
    outputs = _planned_outputs(tokenizer, request)
    plan = ContextPlan(in_contexts=_in_contexts(tokenizer, request, reference_groups), finished={},
                       metadata=request.metadata, negative=_negative(cfg, request.metadata))
    windows = generator.windows(cfg.start_time, cfg.end_time)
    redlines = _timing(request, generator, plan, outputs)
    if ContextType.TIMING in outputs or "TIMING" in request.in_context:
        plan.finished[ContextType.TIMING] = timing_groups(Timing(redlines), song_ms, tokenizer.config)
    generated: list[Group] = []
    for context in outputs:
        if context == ContextType.TIMING:
            continue
        name = context.value.upper()
        if name in request.in_context:
            plan.finished[context] = reference_groups.get(context, [])
            continue
        prefilled = [g for g in reference_groups.get(context, []) if g.time < start] if cfg.add_to_beatmap else None
        density = onsets = None
        if context == ContextType.MAP:
            density = _density_control(cfg, request.metadata, Timing(redlines).median_beat_length(song_ms))
            weight = float(_per_mode(cfg.onset_prior)[request.mode])
            onsets = OnsetPrior.of(generator.onsets, weight) if weight > 0 else None
        groups = generator.generate_context(context, windows, plan, prefilled=prefilled, density=density, onsets=onsets)
        plan.finished[context] = groups
        generated += [g for g in groups if start - 10 <= g.time <= end + 10]
    if refiner is not None:
        refine_positions(generated, refiner, redlines, request.metadata)
    return Generation(request.mode, redlines, generated)


def _per_mode(value) -> list:
    """A setting given once or per mode 0-3, as one value per mode."""
    return list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value] * 4


def _density_control(cfg: DictConfig, meta: BeatmapMetadata, beat_ms: float | None = None) -> DensityControl | None:
    """The map pass's density control, steering toward `_target_density`."""
    target = _target_density(cfg, meta)
    if target is None:
        return None
    return DensityControl(target, share=float(cfg.density_min_gap[meta.mode]), horizon_ms=float(cfg.density_horizon),
                          gain=float(cfg.density_gain), tolerance=float(cfg.density_tolerance[meta.mode]),
                          beat_ms=beat_ms)


def _target_density(cfg: DictConfig, meta: BeatmapMetadata) -> float | None:
    """Objects per second to aim for: the given number, or (auto) human maps' at the requested stars."""
    if cfg.target_density is None or (cfg.target_density == "auto" and meta.star_rating is None):
        return None
    if cfg.target_density == "auto":
        return from_stars(meta.star_rating, tuple(cfg.density_fit[meta.mode]))
    return float(cfg.target_density)


def _planned_outputs(tokenizer: Tokenizer, request: Request) -> list[ContextType]:
    """The template's outputs up to the last one requested (each sees those before it); SV only for mania."""
    template = _chosen_template(tokenizer, request)
    names = [n for n in template["out"] if n != "sv" or request.mode == 3]
    wanted = [n for n in names if n.upper() in request.output_type]
    _check(bool(wanted), f"this model cannot generate {', '.join(request.output_type)} (it writes {', '.join(names)})")
    return [ContextType(n) for n in names[:names.index(wanted[-1]) + 1]]


def _chosen_template(tokenizer: Tokenizer, request: Request) -> dict:
    """The model's context template that takes the requested GD / NO_HS in-contexts (or none)."""
    special = {c.lower() for c in request.in_context if c in ("GD", "NO_HS")}
    for template in tokenizer.config.context_templates:
        if set(template.get("in", [])) - {"none"} == special:
            return template
    raise InferenceError(f"this model cannot take in_context {', '.join(sorted(special)).upper()}")


def _in_contexts(tokenizer: Tokenizer, request: Request, reference_groups: dict) -> list[tuple[ContextType, list[Group], list]]:
    template = _chosen_template(tokenizer, request)
    contexts = []
    for name in template.get("in", []):
        kind = ContextType(name)
        if kind == ContextType.GD:
            stars = _stars(request.reference)
            contexts.append((kind, reference_groups[ContextType.MAP], [tokenizer.difficulty_event(stars)]))
        elif kind == ContextType.NO_HS:
            contexts.append((kind, reference_groups[ContextType.MAP], []))
        else:
            contexts.append((ContextType.NONE, [], []))
    return contexts


def _negative(cfg: DictConfig, meta: BeatmapMetadata) -> BeatmapMetadata | None:
    """The unconditional prompt: same settings, negative descriptors; the mapper only when descriptors
    steer; no star rating with `cfg_difficulty`, so guidance pushes toward the requested one."""
    if cfg.cfg_scale <= 1:
        return None
    steer = bool(cfg.descriptors) or bool(cfg.negative_descriptors)
    return replace(meta, descriptors=list(cfg.negative_descriptors) or None, mapper=meta.mapper if steer else None,
                   star_rating=None if cfg.cfg_difficulty else meta.star_rating)


def _timing(request: Request, generator: Generator, plan: ContextPlan, outputs: list[ContextType]) -> list[TimingPoint]:
    """Redlines from the reference, the forced `bpm`, or the generated beats and the audio's own tempo,
    whichever `timing_source` asks for (auto: the generated ones unless the song's onsets back the audio's
    tempo `audio_timing_margin` times better); with `follow_tempo`, plus redlines where the song's beats
    drift away from those."""
    cfg = request.cfg
    if "TIMING" in request.in_context:
        return [p for p in request.reference.timing_points if p.uninherited]
    if cfg.bpm is not None:
        return [TimingPoint(float(cfg.offset), 60000.0 / float(cfg.bpm))]
    generated = []
    if ContextType.TIMING in outputs and cfg.timing_source != "audio":
        if cfg.super_timing:
            passes = generator.parallel_markers(int(cfg.timer_iterations), plan, np.random.default_rng(request.seed))
            markers = consensus_markers(passes)
        else:
            groups = generator.generate_context(ContextType.TIMING, generator.windows(), plan)
            markers = [(g.time, g.type) for g in groups if g.type in (T.BEAT, T.MEASURE, T.TIMING_POINT)]
        generated = markers_to_timing_points(markers, leniency=float(cfg.timing_leniency))
    onsets = generator.onsets
    if generated and cfg.timing_source == "model":
        chosen = generated
    else:
        estimated = estimate_redline(onsets, generator.song_onsets.phase, float(cfg.min_bpm), float(cfg.max_bpm))
        if estimated is None:
            chosen = generated or [TimingPoint(float(cfg.offset), DEFAULT_BEAT_LENGTH)]
        elif generated and beat_support(onsets, generated) * float(cfg.audio_timing_margin) >= beat_support(onsets, [estimated]):
            chosen = generated
        else:
            chosen = [start_bars(estimated, generator.song_onsets.kick)]
    if not cfg.follow_tempo:
        return chosen
    return follow_tempo(onsets, chosen, generator.song_ms, float(cfg.timing_leniency))


def _template(request: Request) -> Beatmap:
    """The settings of the file to write; timing points and objects are filled in later."""
    cfg = request.cfg
    tags = " ".join(filter(None, [str(cfg.tags) if cfg.tags else "", *_generation_tags(cfg, request)]))
    general = {"AudioFilename": request.audio_path.name, "AudioLeadIn": "0", "PreviewTime": str(request.preview_time),
               "Countdown": "0", "SampleSet": "Soft", "StackLeniency": "0.7", "Mode": str(request.mode),
               "LetterboxInBreaks": "0", "WidescreenStoryboard": "1"}
    editor = {"DistanceSpacing": "1", "BeatDivisor": "4", "GridSize": "8", "TimelineZoom": "1"}
    metadata = {**request.names, "Tags": tags, "BeatmapID": "0", "BeatmapSetID": "-1"}
    return Beatmap(general=general, editor=editor, metadata=metadata, difficulty=dict(request.settings),
                   background=request.background, source="<generated>")


def _generation_tags(cfg: DictConfig, request: Request) -> list[str]:
    """key=value for every generation parameter that was set, so the file records how it was made."""
    tags = []
    for key in TAG_KEYS:
        value = request.seed if key == "seed" else cfg[key]
        if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
            value = ",".join(str(v) for v in value) if len(value) else None
        if value is not None and value is not False:
            tags.append(f"{key}={str(value).replace(' ', '_')}")
    return tags


def _write(request: Request, beatmap: Beatmap) -> tuple[Path, Path | None]:
    """The .osu (a new file unless overwriting the reference was asked for) and, if asked, the .osz."""
    cfg = request.cfg
    if cfg.add_to_beatmap and cfg.overwrite_reference_beatmap:
        path = request.reference_path
        write_beatmap(beatmap, path, overwrite=True)
    else:
        path = _free_name(request.output_dir, _file_name(beatmap), ".osu")
        write_beatmap(beatmap, path)
    if not cfg.export_osz:
        return path, None
    osz = _free_name(request.output_dir, path.stem, ".osz")
    background = request.audio_path.parent / request.background if request.background else None
    write_osz(osz, path.name, format_beatmap(beatmap), request.audio_path,
              background if background is not None and background.is_file() else None)
    return path, osz


def _file_name(beatmap: Beatmap) -> str:
    m = beatmap.metadata
    name = f"{m.get('Artist', '')} - {m.get('Title', '')} ({m.get('Creator', '')}) [{m.get('Version', '')}]"
    return re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", name).strip(" .")[:200] or "beatmap"


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem.suffix, or stem (2).suffix, ... : never an existing file."""
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem} ({n}){suffix}"
        n += 1
    return path

