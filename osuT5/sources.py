"""Find training examples (a .osu file and its audio) wherever users keep beatmaps.

The dataset only needs a flat list of (beatmap, audio, set) entries; this module turns each kind of
place a user may point at into that list, so that the rest of the training code never cares where
the data came from:

(a) a folder with ``index.csv``: our own corpus layout (one row per .osu, paths relative to it);
(b) a folder with ``metadata.parquet``: Mapperator's "mmrs" dataset layout, files under ``data/``;
(c) an ``.osz`` file, or a folder of them (a Downloads folder): extracted safely into ``extract_dir``;
(d) any other folder, e.g. osu!'s ``Songs`` folder: every folder holding .osu files is one set.

Catalogue sources (a, b) are trusted for their metadata: their .osu files are only checked for
existence, not parsed, because parsing a 200k-map dataset up front would take many minutes (about
4 ms a map); the dataset parses each map when it uses it. Folder and .osz sources have no
catalogue, so each .osu is read with the project's reader (``tokenizer.osu_file.read_beatmap``) to
get its audio file name and mode, which also drops unreadable maps.

Beatmaps that cannot be used (missing audio, missing or unreadable .osu) are skipped and counted:
one summary warning per call, per-file reasons at debug level. A root that cannot be used at all
raises ``SourceError`` with one sentence saying why.

Splits: index.csv has its own ``split`` column. Other sources have none, so their entries carry
``split=None`` unless a split is asked for, in which case a deterministic per-set rule is used
(see ``derived_split``): every difficulty of a set lands in the same split.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from tokenizer.osu_file import BeatmapError, read_beatmap

log = logging.getLogger(__name__)

__all__ = ["AUDIO_EXTENSIONS", "BeatmapEntry", "SourceError", "derived_split", "find_beatmaps"]

AUDIO_EXTENSIONS = frozenset({".mp3", ".ogg", ".wav", ".flac", ".opus", ".m4a", ".aac"})
VAL_EVERY = 20  # derived split: a set is in "val" when its number % VAL_EVERY == 0
DERIVED_SPLITS = ("train", "val")
OSZ_MARKER = ".osz-source.json"  # written into each extraction folder; lets unchanged .osz be skipped
MAX_MEMBER_BYTES = 1 << 30  # a bigger .osu or audio member is surely not a beatmap (zip bombs)
PARQUET_REQUIRED = ("BeatmapSetId", "BeatmapSetFolder", "BeatmapFile", "AudioFile")
PARQUET_OPTIONAL = ("Id", "ModeInt", "Mode", "UserId", "RankedDate", "SubmittedDate", "DifficultyRating",
                    "OmdbTags")
PARQUET_MODE_NAMES = {"osu": 0, "taiko": 1, "fruits": 2, "catch": 2, "mania": 3}

_DRIVE = re.compile(r"^[A-Za-z]:")
_LEADING_NUMBER = re.compile(r"^\s*(\d+)")
_YEAR = re.compile(r"^\s*(\d{4})")


class SourceError(Exception):
    """The root cannot be used as a source of beatmaps; the message says why in one sentence."""


@dataclass(frozen=True)
class BeatmapEntry:
    """One training example: a .osu file, the audio it plays, and what the source says about it.

    Fields the source does not know are None (or empty), so the dataset can emit "unknown" tokens.
    """

    osu_path: Path
    audio_path: Path
    set_key: str  # groups a set's difficulties: index set_id, parquet BeatmapSetId, folder name, osz stem
    split: str | None = None  # "train"/"val"/... when the source says (or a split was derived on request)
    mode: int | None = None  # 0 osu, 1 taiko, 2 catch, 3 mania
    mapper_id: int | None = None  # osu! user id (parquet UserId)
    year: int | None = None  # parquet RankedDate year, else SubmittedDate year
    star_rating: float | None = None  # index.csv star_rating, parquet DifficultyRating
    descriptors: tuple[str, ...] = ()  # parquet OmdbTags


def derived_split(set_key: str) -> str:
    """The split of a set for sources without one: "val" for every 20th set, else "train".

    The set's number is the leading integer of its key (osu!'s Songs folders and .osz files are
    named "<BeatmapSetId> <Artist> - <Title>", and parquet keys are the BeatmapSetId itself);
    a key without a positive leading number uses its CRC-32 instead. The set is "val" when that
    number % 20 == 0. Deterministic, so the split never changes between runs or machines, and
    per set, so a song never appears in both splits.
    """
    match = _LEADING_NUMBER.match(set_key)
    number = int(match.group(1)) if match else 0
    if number <= 0:
        number = zlib.crc32(set_key.encode("utf-8"))
    return "val" if number % VAL_EVERY == 0 else "train"


def find_beatmaps(root: str | os.PathLike, split: str | None = None, modes: Iterable[int] | None = None,
                  extract_dir: str | os.PathLike | None = None) -> list[BeatmapEntry]:
    """All usable (beatmap, audio) entries under `root`, sorted by (set_key, osu_path).

    `root` is a corpus folder with index.csv, a dataset folder with metadata.parquet, an .osz file,
    or any folder of beatmaps (osu!'s Songs folder, a Downloads folder of .osz files). `split`
    keeps one split (see the module docstring); `modes` keeps those game modes. `extract_dir` is
    where .osz files are extracted (one sub-folder per .osz; unchanged ones are not re-extracted);
    it is required when the source is an .osz. Paths in the entries are absolute.
    Raises SourceError when the root does not exist, is not a usable kind of file or folder, or
    holds no usable beatmaps.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise SourceError(f"{root_path} does not exist; pass a folder of beatmaps, a corpus folder with index.csv, "
                          f"a dataset folder with metadata.parquet, or an .osz file")
    root_path = root_path.absolute()
    if root_path.is_file() and root_path.name.lower() in ("index.csv", "metadata.parquet"):
        root_path = root_path.parent
    if split is not None and not isinstance(split, str):
        raise SourceError(f"split must be a name such as 'train' or 'val', not {split!r}")
    wanted_modes = None if modes is None else frozenset(int(m) for m in modes)

    tally = _Tally()
    if root_path.is_file():
        if root_path.suffix.lower() != ".osz":
            raise SourceError(f"{root_path} is a file but not an .osz; pass an .osz file or a folder of beatmaps")
        _check_derived_split(split)
        entries = _from_osz_files([root_path], split, wanted_modes, extract_dir, tally)
    elif not root_path.is_dir():
        raise SourceError(f"{root_path} is neither a folder nor an .osz file")
    elif (root_path / "index.csv").is_file():
        entries = _from_index(root_path, split, wanted_modes, tally)
    elif (root_path / "metadata.parquet").is_file():
        _check_derived_split(split)
        entries = _from_parquet(root_path, split, wanted_modes, tally)
    else:
        _check_derived_split(split)
        entries = _from_folder(root_path, split, wanted_modes, extract_dir, tally)

    _finish(root_path, entries, tally, split, wanted_modes)
    return sorted(entries, key=lambda e: (e.set_key, str(e.osu_path)))


# ---------------------------------------------------------------------------------------------
# Bookkeeping


class _Tally:
    """Counts what was looked at, what the filters dropped and why the rest was skipped."""

    def __init__(self) -> None:
        self.candidates = 0  # beatmaps the source lists or holds
        self.filtered = 0  # dropped by split/modes: not a problem
        self.reasons: Counter[str] = Counter()
        self.empty_reason = "it holds no .osu files"  # what "no candidates" means for this kind of source

    def skip(self, path: Path | str, reason: str, detail: str = "") -> None:
        self.reasons[reason] += 1
        log.debug("skipped %s: %s%s", path, reason, f" ({detail})" if detail else "")

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))


def _check_derived_split(split: str | None) -> None:
    if split is not None and split not in DERIVED_SPLITS:
        raise SourceError(f"this source has no split column, so split must be 'train' or 'val' (derived per set), "
                          f"not {split!r}")


def _finish(root: Path, entries: list[BeatmapEntry], tally: _Tally, split: str | None,
            modes: frozenset[int] | None) -> None:
    skipped = sum(tally.reasons.values())
    if skipped:
        log.warning("skipped %d of %d beatmaps in %s: %s", skipped, skipped + len(entries), root, tally.summary())
    if tally.candidates == 0:
        raise SourceError(f"no beatmaps found in {root}: {tally.empty_reason}")
    if not entries:
        if tally.filtered == 0:
            raise SourceError(f"no usable beatmaps in {root}: all {skipped} were skipped ({tally.summary()})")
        log.warning("no beatmaps in %s match split=%r modes=%s", root, split,
                    None if modes is None else sorted(modes))


def _float_or_none(value: object) -> float | None:
    """A finite number from a CSV/parquet cell, or None for blanks, text, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int_or_none(value: object) -> int | None:
    number = _float_or_none(value)
    return None if number is None else int(number)


def _mode_of(osu_path: Path, tally: _Tally) -> int | None:
    """The mode from the .osu itself, for catalogue rows that leave it out; None (counted) if unreadable."""
    try:
        return read_beatmap(osu_path).mode
    except (BeatmapError, OSError, ValueError) as e:
        tally.skip(osu_path, "unreadable", str(e))
        return None


# ---------------------------------------------------------------------------------------------
# (a) index.csv


def _from_index(root: Path, split: str | None, modes: frozenset[int] | None, tally: _Tally) -> list[BeatmapEntry]:
    index = root / "index.csv"
    try:
        with open(index, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{index} cannot be read as a CSV file ({e})") from None
    missing = {"osu_path", "audio_path"} - columns
    if missing:
        raise SourceError(f"{index} has no {' or '.join(sorted(missing))} column, so it is not a beatmap index")

    tally.empty_reason = "its index.csv lists none"
    has_split = "split" in columns
    if split is not None:
        if has_split:
            available = {(row.get("split") or "").strip() for row in rows}
            if rows and split not in available:
                raise SourceError(f"{index} has no split {split!r}; its splits are "
                                  f"{', '.join(repr(s) for s in sorted(available) if s) or 'all empty'}")
        else:
            _check_derived_split(split)

    entries = []
    for row in rows:
        osu_rel = (row.get("osu_path") or "").strip()
        if not osu_rel:
            continue  # a blank line or a row without a beatmap is not a beatmap
        tally.candidates += 1
        set_key = (row.get("set_id") or "").strip() or PurePosixPath(osu_rel.replace("\\", "/")).parent.name
        if has_split:
            row_split = (row.get("split") or "").strip() or None
        else:
            row_split = derived_split(set_key) if split is not None else None
        if split is not None and row_split != split:
            tally.filtered += 1
            continue
        osu_path = root / osu_rel
        if not osu_path.is_file():
            tally.skip(osu_path, "missing .osu")
            continue
        mode = _int_or_none(row.get("mode"))
        keep, mode = _wanted_mode(mode, osu_path, modes, tally)
        if not keep:
            continue
        audio_rel = (row.get("audio_path") or "").strip()
        audio_path = root / audio_rel if audio_rel else None
        if audio_path is None or not audio_path.is_file():
            tally.skip(osu_path, "missing audio", audio_rel)
            continue
        entries.append(BeatmapEntry(osu_path=osu_path, audio_path=audio_path, set_key=set_key, split=row_split,
                                    mode=mode, star_rating=_float_or_none(row.get("star_rating"))))
    return entries


def _wanted_mode(mode: int | None, osu_path: Path, modes: frozenset[int] | None, tally: _Tally) -> tuple[bool, int | None]:
    """(keep, mode); the mode is read from the .osu only when the source lacks it and a filter needs it."""
    if modes is None:
        return True, mode
    if mode is None:
        mode = _mode_of(osu_path, tally)
        if mode is None:
            return False, None
    if mode not in modes:
        tally.filtered += 1
        return False, mode
    return True, mode


# ---------------------------------------------------------------------------------------------
# (b) metadata.parquet (Mapperator "mmrs")


def _from_parquet(root: Path, split: str | None, modes: frozenset[int] | None, tally: _Tally) -> list[BeatmapEntry]:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError("reading metadata.parquet needs pyarrow: pip install pyarrow") from None
    path = root / "metadata.parquet"
    try:
        names = set(pq.read_schema(path).names)
        missing = [c for c in PARQUET_REQUIRED if c not in names]
        if missing:
            raise SourceError(f"{path} has no {', '.join(missing)} column(s), so it is not a Mapperator dataset")
        wanted = [c for c in PARQUET_REQUIRED + PARQUET_OPTIONAL if c in names]
        data = pq.read_table(path, columns=wanted).to_pydict()
    except (OSError, ValueError, pyarrow.ArrowException) as e:
        raise SourceError(f"{path} cannot be read as a parquet file ({e})") from None

    tally.empty_reason = "its metadata.parquet lists none"
    data_dir = root / "data"
    count = len(data["BeatmapSetId"])
    entries = []
    for i in range(count):
        def get(column: str):
            values = data.get(column)
            return values[i] if values is not None else None

        tally.candidates += 1
        set_id = _int_or_none(get("BeatmapSetId"))
        folder, osu_name = get("BeatmapSetFolder"), get("BeatmapFile")
        if set_id is None or not folder or not osu_name:
            tally.skip(f"{path} row {i}", "incomplete row")
            continue
        set_key = str(set_id)
        row_split = derived_split(set_key) if split is not None else None
        if split is not None and row_split != split:
            tally.filtered += 1
            continue
        osu_path = data_dir / str(folder) / str(osu_name)
        if not osu_path.is_file():
            tally.skip(osu_path, "missing .osu")
            continue
        mode = _int_or_none(get("ModeInt"))
        if mode is None:
            mode = PARQUET_MODE_NAMES.get(str(get("Mode") or "").strip().lower())
        keep, mode = _wanted_mode(mode, osu_path, modes, tally)
        if not keep:
            continue
        audio_name = get("AudioFile")
        audio_path = data_dir / str(folder) / str(audio_name) if audio_name else None
        if audio_path is None or not audio_path.is_file():
            tally.skip(osu_path, "missing audio", str(audio_name or ""))
            continue
        entries.append(BeatmapEntry(
            osu_path=osu_path, audio_path=audio_path, set_key=set_key, split=row_split, mode=mode,
            mapper_id=_int_or_none(get("UserId")),
            year=_year(get("RankedDate")) or _year(get("SubmittedDate")),
            star_rating=_float_or_none(get("DifficultyRating")),
            descriptors=_descriptors(get("OmdbTags"))))
    return entries


def _year(value: object) -> int | None:
    """The year of a parquet date: a timestamp/date, or ISO text such as "2021-03-04T...". """
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.year
    if isinstance(value, str):
        match = _YEAR.match(value)
        return int(match.group(1)) if match else None
    return None


def _descriptors(value: object) -> tuple[str, ...]:
    """OmdbTags as a tuple of names; the column is a list of strings or comma-separated text."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(s for s in (str(item).strip() for item in items if item is not None) if s)
    except TypeError:
        return ()


# ---------------------------------------------------------------------------------------------
# (d) folders of beatmap sets


def _progress(items, desc: str, unit: str):
    """A progress bar on a terminal (scanning a big Songs folder takes minutes), nothing otherwise."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=unit, disable=None, leave=False)


def _from_folder(root: Path, split: str | None, modes: frozenset[int] | None,
                 extract_dir: str | os.PathLike | None, tally: _Tally) -> list[BeatmapEntry]:
    skip_dir = Path(extract_dir).expanduser().absolute().resolve() if extract_dir is not None else None
    set_dirs: list[tuple[Path, list[str]]] = []
    osz_files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # never follows symlinked folders
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if skip_dir is None or (here / d).resolve() != skip_dir)
        osu_names = sorted(f for f in filenames if f.lower().endswith(".osu"))
        if osu_names:
            set_dirs.append((here, osu_names))
        osz_files += sorted(here / f for f in filenames if f.lower().endswith(".osz"))

    entries = []
    for folder, osu_names in _progress(set_dirs, "scanning beatmap folders", "set"):
        set_key = folder.relative_to(root).as_posix() if folder != root else root.name
        entries += _scan_set(folder, osu_names, set_key, split, modes, tally)

    if osz_files:
        if extract_dir is None:
            if tally.candidates == 0:
                raise SourceError(f"{root} holds {len(osz_files)} .osz file(s) and no extracted beatmaps; "
                                  "pass extract_dir=<folder> to extract them")
            log.warning("ignored %d .osz file(s) in %s; pass extract_dir to use them", len(osz_files), root)
        else:
            entries += _from_osz_files(osz_files, split, modes, extract_dir, tally)
    return entries


def _scan_set(folder: Path, osu_names: list[str], set_key: str, split: str | None,
              modes: frozenset[int] | None, tally: _Tally) -> list[BeatmapEntry]:
    """The entries of one set folder: each .osu is read for its mode and AudioFilename."""
    tally.candidates += len(osu_names)
    row_split = derived_split(set_key) if split is not None else None
    if split is not None and row_split != split:
        tally.filtered += len(osu_names)
        return []
    listings: dict[Path, list[str] | None] = {}
    entries = []
    for name in osu_names:
        osu_path = folder / name
        try:
            beatmap = read_beatmap(osu_path)
        except (BeatmapError, OSError, ValueError) as e:
            tally.skip(osu_path, "unreadable", str(e))
            continue
        mode = beatmap.mode
        if modes is not None and mode not in modes:
            tally.filtered += 1
            continue
        audio_name = beatmap.general.get("AudioFilename", "")
        audio_path = _find_audio(folder, audio_name, listings)
        if audio_path is None:
            tally.skip(osu_path, "missing audio", audio_name)
            continue
        entries.append(BeatmapEntry(osu_path=osu_path, audio_path=audio_path, set_key=set_key, split=row_split,
                                    mode=mode))
    return entries


def _find_audio(folder: Path, name: str, listings: dict[Path, list[str] | None]) -> Path | None:
    """`name` (an AudioFilename) inside `folder`, matching case-insensitively as osu! on Windows does.

    Names that leave the folder (absolute, drive letters, "..") are treated as missing.
    """
    norm = name.strip().replace("\\", "/")
    if not norm or norm.startswith("/") or _DRIVE.match(norm):
        return None
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    exact = folder.joinpath(*parts)
    if exact.is_file():
        return exact
    current = folder
    for part in parts:
        if current not in listings:
            try:
                listings[current] = sorted(os.listdir(current))
            except OSError:
                listings[current] = None
        children = listings[current]
        if children is None:
            return None
        wanted = part.casefold()
        match = next((child for child in children if child.casefold() == wanted), None)
        if match is None:
            return None
        current = current / match
    return current if current.is_file() else None


# ---------------------------------------------------------------------------------------------
# (c) .osz archives


def _from_osz_files(osz_files: list[Path], split: str | None, modes: frozenset[int] | None,
                    extract_dir: str | os.PathLike | None, tally: _Tally) -> list[BeatmapEntry]:
    if extract_dir is None:
        raise SourceError(f"{osz_files[0]} is an .osz archive; pass extract_dir=<folder> to say where to extract it")
    extract_root = Path(extract_dir).expanduser().absolute()
    try:
        extract_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SourceError(f"cannot create the extraction folder {extract_root} ({e.strerror or e})") from None
    if not extract_root.is_dir():
        raise SourceError(f"the extraction folder {extract_root} is not a folder")

    claimed: set[str] = set()
    entries = []
    for osz in _progress(osz_files, "extracting .osz files", "osz"):
        target = _extraction_target(osz, extract_root, claimed)
        if target is None:
            continue
        try:
            _extract_osz(osz, target)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
            log.warning("%s cannot be extracted (%s); skipped", osz, e)
            tally.candidates += 1  # it may have held beatmaps: count it so the summary says why none came
            tally.skip(osz, "unreadable .osz")
            continue
        set_key = target.name
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames.sort()
            osu_names = sorted(f for f in filenames if f.lower().endswith(".osu"))
            if osu_names:
                entries += _scan_set(Path(dirpath), osu_names, set_key, split, modes, tally)
    return entries


def _osz_stamp(osz: Path) -> dict:
    st = osz.stat()
    return {"source": str(osz.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_marker(folder: Path) -> dict | None:
    marker = folder / OSZ_MARKER
    if folder.is_symlink() or not folder.is_dir() or marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _extraction_target(osz: Path, extract_root: Path, claimed: set[str]) -> Path | None:
    """The folder `osz` extracts into: extract_root/<osz stem>, unless that name is taken.

    A folder is only ever replaced when our marker says it came from this same .osz, so a user's
    own folder (extract_dir may be osu!'s Songs folder) is never overwritten; a taken name gets a
    suffix made from the .osz path instead.
    """
    stem = osz.stem.strip().rstrip(". ")
    if not stem.strip("."):
        stem = "osz"
    source = str(osz.resolve())
    suffix = f"{zlib.crc32(source.encode('utf-8')):08x}"
    for name in (stem, f"{stem} ({suffix})"):
        if name.casefold() in claimed:
            continue
        target = extract_root / name
        if target.exists() or target.is_symlink():
            marker = _read_marker(target)
            if marker is None or marker.get("source") != source:
                continue
        claimed.add(name.casefold())
        return target
    log.warning("%s: %s and its suffixed name are already taken by other folders; skipped", osz, extract_root / stem)
    return None


def _safe_member_path(name: str) -> tuple[str, ...] | None:
    """The parts of a zip member's path if it stays inside the extraction folder, else None.

    Rejects absolute paths, drive letters and UNC names, ".." (also via backslashes, which some
    Windows zippers use as separators), parts that Windows would shorten to "." or "..", and ":"
    (NTFS alternate streams).
    """
    if "\x00" in name:
        return None
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        return None
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts or any(not p.strip(". ") or ":" in p for p in parts):
        return None
    return tuple(parts)


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's real name: many .osz makers write UTF-8 names without setting the UTF-8 flag."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            return name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _extract_osz(osz: Path, target: Path) -> None:
    """Extract the .osu and audio members of `osz` into `target`, unless it already holds this .osz.

    Zip-slip safe: members are checked by name (``_safe_member_path``) and again by resolved
    destination, links are never created, and everything is written into a fresh temporary folder
    that only then replaces `target`, so no pre-existing link can redirect a write and a failed
    extraction leaves no half-written folder.
    """
    stamp = _osz_stamp(osz)
    if _read_marker(target) == stamp:
        log.debug("%s: already extracted into %s", osz, target)
        return
    extract_root = target.parent
    tmp = Path(tempfile.mkdtemp(prefix=".extracting-", dir=extract_root))
    tmp_root = tmp.resolve()
    unsafe: list[str] = []
    try:
        with zipfile.ZipFile(osz) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = _member_name(info)
                parts = _safe_member_path(name)
                if parts is None or _is_link(info):
                    unsafe.append(name)
                    continue
                if PurePosixPath(parts[-1]).suffix.lower() not in AUDIO_EXTENSIONS | {".osu"}:
                    continue  # videos, images, storyboards, skins: not needed for training
                destination = tmp.joinpath(*parts)
                if not destination.resolve().is_relative_to(tmp_root):
                    unsafe.append(name)
                    continue
                if info.file_size > MAX_MEMBER_BYTES:
                    log.warning("%s: skipped member %r (%d bytes is too big for a beatmap file)", osz, name,
                                info.file_size)
                    continue
                try:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(destination, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (OSError, zipfile.BadZipFile) as e:
                    log.warning("%s: skipped member %r (%s)", osz, name, e)
                    destination.unlink(missing_ok=True)
        (tmp / OSZ_MARKER).write_text(json.dumps(stamp), encoding="utf-8")
        if target.exists() or target.is_symlink():  # an older extraction of this same .osz
            old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=extract_root))
            target.rename(old / "old")
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if unsafe:
        log.warning("%s: skipped %d member(s) that would be written outside %s or as links: %s", osz, len(unsafe),
                    target, ", ".join(repr(n) for n in unsafe[:5]) + (" ..." if len(unsafe) > 5 else ""))
