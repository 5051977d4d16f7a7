"""osuT5.sources: finding (beatmap, audio) examples in index.csv corpora, parquet datasets, Songs folders and .osz."""
from __future__ import annotations

import csv
import io
import logging
import os
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import osu_text
from osuT5.sources import BeatmapEntry, SourceError, derived_split, find_beatmaps

LOGGER = "osuT5.sources"


def wav_bytes(seconds: float = 0.05, rate: int = 8000) -> bytes:
    """A tiny real wav (a quiet sine), so the audio files are genuine audio."""
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def osu(mode: int = 0, audio: str = "audio.wav", version: str = "Normal", set_id: int = -1) -> str:
    hit_objects = ["64,192,1000,1,0,0:0:0:0:"] if mode == 3 else ["256,192,1000,1,0,0:0:0:0:"]
    return osu_text(mode, hit_objects, general={"AudioFilename": audio},
                    metadata={"Version": version, "BeatmapSetID": str(set_id)})


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def make_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


# ---------------------------------------------------------------------------------------------
# (a) index.csv


INDEX_COLUMNS = ["set_id", "split", "osu_path", "audio_path", "mode", "star_rating", "beatmap_id", "creator"]


def make_index_corpus(root: Path) -> Path:
    rows = [
        ("SA", "train", "sets/SA/a [Easy].osu", "sets/SA/audio.ogg", 0, "2.5"),
        ("SA", "train", "sets/SA/a [4K].osu", "sets/SA/audio.ogg", 3, "3.1"),
        ("SB", "val", "sets/SB/b [Oni].osu", "sets/SB/audio.ogg", 1, ""),
        ("SB", "val", "sets/SB/b [Hard].osu", "sets/SB/audio2.ogg", 0, "4.0"),  # audio2.ogg is missing
        ("SC", "train", "sets/SC/c [Normal].osu", "sets/SC/audio.ogg", 0, "1.0"),  # the .osu is missing
    ]
    with open(write(root / "index.csv", ""), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(INDEX_COLUMNS)
        for set_id, split, osu_rel, audio_rel, mode, stars in rows:
            writer.writerow([set_id, split, osu_rel, audio_rel, mode, stars, "0", "pytest"])
            if set_id != "SC":
                write(root / osu_rel, osu(mode, Path(audio_rel).name))
    write(root / "sets/SA/audio.ogg", b"not decoded here")
    write(root / "sets/SB/audio.ogg", b"not decoded here")
    write(root / "sets/SC/audio.ogg", b"not decoded here")
    return root


def test_index_csv_rows_with_split_and_mode_filters(tmp_path, caplog, monkeypatch):
    root = make_index_corpus(tmp_path / "corpus")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        everything = find_beatmaps(root)
    assert [(e.set_key, e.osu_path.name) for e in everything] == [
        ("SA", "a [4K].osu"), ("SA", "a [Easy].osu"), ("SB", "b [Oni].osu")]
    assert "skipped 2 of 5 beatmaps" in caplog.text
    assert "1 missing .osu" in caplog.text and "1 missing audio" in caplog.text

    mania = everything[0]
    assert mania == BeatmapEntry(osu_path=root / "sets/SA/a [4K].osu", audio_path=root / "sets/SA/audio.ogg",
                                 set_key="SA", split="train", mode=3, star_rating=3.1)
    assert mania.osu_path.is_absolute() and mania.audio_path.is_file()
    assert everything[2].star_rating is None and everything[2].split == "val"

    train = find_beatmaps(root, split="train")
    assert {e.osu_path.name for e in train} == {"a [Easy].osu", "a [4K].osu"}
    assert all(e.split == "train" for e in train)
    assert [e.osu_path.name for e in find_beatmaps(root, split="val")] == ["b [Oni].osu"]
    assert [e.osu_path.name for e in find_beatmaps(root, split="train", modes=[3])] == ["a [4K].osu"]
    assert [e.mode for e in find_beatmaps(root, modes=(0, 1))] == [0, 1]
    # Pointing at the index file itself works too; a relative root gives absolute paths.
    assert find_beatmaps(root / "index.csv") == everything
    monkeypatch.chdir(tmp_path)
    assert find_beatmaps("corpus") == everything


def test_index_csv_filters_that_leave_nothing_warn_and_return_empty(tmp_path, caplog):
    root = make_index_corpus(tmp_path / "corpus")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert find_beatmaps(root, modes=[2]) == []
    assert "no beatmaps in" in caplog.text and "modes=[2]" in caplog.text


def test_index_csv_unknown_split_and_bad_index_are_errors(tmp_path):
    root = make_index_corpus(tmp_path / "corpus")
    with pytest.raises(SourceError, match="has no split 'test'; its splits are 'train', 'val'"):
        find_beatmaps(root, split="test")
    bad = write(tmp_path / "bad" / "index.csv", "name,path\nx,y\n").parent
    with pytest.raises(SourceError, match="no audio_path or osu_path column"):
        find_beatmaps(bad)
    empty = write(tmp_path / "empty" / "index.csv", ",".join(INDEX_COLUMNS) + "\n").parent
    with pytest.raises(SourceError, match="index.csv lists none"):
        find_beatmaps(empty)


def test_index_csv_without_mode_column_reads_the_mode_from_the_osu(tmp_path):
    root = tmp_path / "corpus"
    write(root / "index.csv", "set_id,osu_path,audio_path\nS1,s/a.osu,s/a.wav\nS1,s/b.osu,s/a.wav\n")
    write(root / "s/a.osu", osu(3, "a.wav"))
    write(root / "s/b.osu", osu(0, "a.wav"))
    write(root / "s/a.wav", wav_bytes())
    entries = find_beatmaps(root, modes=[3])
    assert [(e.osu_path.name, e.mode, e.split) for e in entries] == [("a.osu", 3, None)]


# ---------------------------------------------------------------------------------------------
# (d) Songs folders


def make_songs(root: Path) -> Path:
    # Set 1: the map says "audio.wav" but the file on disk is "Audio.WAV" (osu! on Windows does not care).
    write(root / "100 Artist - Song/Artist - Song (pytest) [Easy].osu", osu(0, "audio.wav", "Easy"))
    write(root / "100 Artist - Song/Artist - Song (pytest) [4K].osu", osu(3, "audio.wav", "4K"))
    write(root / "100 Artist - Song/Audio.WAV", wav_bytes())
    write(root / "100 Artist - Song/bg.jpg", b"\xff\xd8")
    # Set 2: one map whose audio is missing, one that is not a beatmap, one fine map in a sub-folder audio.
    write(root / "201 Other - Tune/Other - Tune (pytest) [Hard].osu", osu(0, "song.mp3", "Hard"))
    write(root / "201 Other - Tune/broken.osu", "osu file format v14\n\n[General]\nAudioFilename: song.mp3\n")
    write(root / "201 Other - Tune/Other - Tune (pytest) [Taiko].osu", osu(1, "Sub\\Track.ogg", "Taiko"))
    write(root / "201 Other - Tune/sub/track.OGG", b"ogg bytes")
    return root


def test_songs_folder_scan(tmp_path, caplog):
    root = make_songs(tmp_path / "Songs")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        entries = find_beatmaps(root)
    assert [(e.set_key, e.osu_path.name, e.mode, e.split) for e in entries] == [
        ("100 Artist - Song", "Artist - Song (pytest) [4K].osu", 3, None),
        ("100 Artist - Song", "Artist - Song (pytest) [Easy].osu", 0, None),
        ("201 Other - Tune", "Other - Tune (pytest) [Taiko].osu", 1, None),
    ]
    assert entries[0].audio_path == root / "100 Artist - Song" / "Audio.WAV"
    assert entries[2].audio_path == root / "201 Other - Tune" / "sub" / "track.OGG"
    assert all(e.audio_path.is_file() and e.osu_path.is_absolute() for e in entries)
    assert all(e.mapper_id is None and e.year is None and e.descriptors == () for e in entries)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        f"skipped 2 of 5 beatmaps in {root}: 1 missing audio, 1 unreadable")
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "[Hard].osu: missing audio (song.mp3)" in debug and "broken.osu: unreadable" in debug

    assert [e.osu_path.name for e in find_beatmaps(root, modes=[3])] == ["Artist - Song (pytest) [4K].osu"]


def test_a_single_set_folder_is_its_own_set(tmp_path):
    root = make_songs(tmp_path / "Songs")
    entries = find_beatmaps(root / "100 Artist - Song")
    assert {e.set_key for e in entries} == {"100 Artist - Song"} and len(entries) == 2


def test_audio_names_that_leave_the_set_folder_are_missing(tmp_path, caplog):
    write(tmp_path / "outside.wav", wav_bytes())
    write(tmp_path / "Songs/1 A/up.osu", osu(0, "../../outside.wav"))
    write(tmp_path / "Songs/1 A/abs.osu", osu(0, str(tmp_path / "outside.wav")))
    write(tmp_path / "Songs/1 A/ok.osu", osu(0, "a.wav"))
    write(tmp_path / "Songs/1 A/a.wav", wav_bytes())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        entries = find_beatmaps(tmp_path / "Songs")
    assert [e.osu_path.name for e in entries] == ["ok.osu"]
    assert "2 missing audio" in caplog.text


def test_derived_split_is_per_set_and_deterministic(tmp_path):
    assert derived_split("20") == "val" and derived_split("1328980 A - B") == "val"
    assert derived_split("21") == "train" and derived_split("1328989 A - B") == "train"
    assert derived_split("no number") == derived_split("no number") in ("train", "val")
    keys = [f"set {i}" for i in range(2000)]  # no leading number: CRC-32, about 1 in 20 val
    assert 50 < sum(derived_split(k) == "val" for k in keys) < 150

    for set_id in (40, 41):
        for version in ("Easy", "Hard"):
            name = f"{set_id} A - B/{version}.osu"
            write(tmp_path / "Songs" / name, osu(0, "a.wav", version))
        write(tmp_path / "Songs" / f"{set_id} A - B/a.wav", wav_bytes())
    val = find_beatmaps(tmp_path / "Songs", split="val")
    train = find_beatmaps(tmp_path / "Songs", split="train")
    assert {(e.set_key, e.split) for e in val} == {("40 A - B", "val")} and len(val) == 2
    assert {(e.set_key, e.split) for e in train} == {("41 A - B", "train")} and len(train) == 2
    with pytest.raises(SourceError, match="split must be 'train' or 'val'"):
        find_beatmaps(tmp_path / "Songs", split="test")


# ---------------------------------------------------------------------------------------------
# (c) .osz archives


def legit_osz(path: Path, audio_name: str = "audio.wav") -> Path:
    return make_zip(path, {
        "Artist - Song (pytest) [Easy].osu": osu(0, audio_name, "Easy"),
        "Artist - Song (pytest) [Insane].osu": osu(0, audio_name, "Insane"),
        audio_name: wav_bytes(),
        "bg.jpg": b"\xff\xd8",
        "video.mp4": b"video",
        "Artist - Song (pytest).osb": "[Events]\n",
        "hitsounds/soft-hitnormal.wav": wav_bytes(),  # audio: extracted; harmless
    })


def test_osz_file_is_extracted_and_scanned(tmp_path):
    osz = legit_osz(tmp_path / "123 Artist - Song.osz")
    out = tmp_path / "extracted"
    entries = find_beatmaps(osz, extract_dir=out)
    target = out / "123 Artist - Song"
    assert [(e.set_key, e.osu_path.name) for e in entries] == [
        ("123 Artist - Song", "Artist - Song (pytest) [Easy].osu"),
        ("123 Artist - Song", "Artist - Song (pytest) [Insane].osu")]
    assert all(e.audio_path == target / "audio.wav" and e.mode == 0 for e in entries)
    assert all_files(out) == {
        "123 Artist - Song/Artist - Song (pytest) [Easy].osu", "123 Artist - Song/Artist - Song (pytest) [Insane].osu",
        "123 Artist - Song/audio.wav", "123 Artist - Song/hitsounds/soft-hitnormal.wav",
        "123 Artist - Song/.osz-source.json"}
    assert sf.info(str(target / "audio.wav")).samplerate == 8000


def test_malicious_osz_writes_nothing_outside_extract_dir(tmp_path, caplog):
    osz = tmp_path / "downloads" / "666 Evil.osz"
    osz.parent.mkdir()
    with zipfile.ZipFile(osz, "w") as archive:
        for name in ("../evil.osu", "/abs.osu", "..\\win.osu", "C:/drive.osu", "C:\\drive2.osu",
                     "sub/../../up.osu", "sub\\..\\..\\up2.osu", "....//dots.osu", "a.osu:stream"):
            archive.writestr(name, osu(0, "audio.wav", "evil"))
        link = zipfile.ZipInfo("link.osu")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("good.osu", osu(0, "audio.wav", "good"))
        archive.writestr("audio.wav", wav_bytes())
    assert "..\\win.osu" in zipfile.ZipFile(osz).namelist() and "/abs.osu" in zipfile.ZipFile(osz).namelist()

    out = tmp_path / "work" / "extract"
    before = all_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        entries = find_beatmaps(osz.parent, extract_dir=out)
    assert [e.osu_path.name for e in entries] == ["good.osu"]
    assert entries[0].audio_path == out / "666 Evil" / "audio.wav"
    created = all_files(tmp_path) - before
    assert created == {"work/extract/666 Evil/good.osu", "work/extract/666 Evil/audio.wav",
                       "work/extract/666 Evil/.osz-source.json"}
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert not Path("/abs.osu").exists()
    assert "skipped 10 member(s) that would be written outside" in caplog.text
    assert "'../evil.osu'" in caplog.text


def test_unchanged_osz_is_not_extracted_again(tmp_path):
    (tmp_path / "dl").mkdir()
    osz = legit_osz(tmp_path / "dl" / "7 A - B.osz")
    out = tmp_path / "out"
    first = find_beatmaps(osz, extract_dir=out)
    sentinel = write(out / "7 A - B" / "sentinel.txt", "an unchanged osz leaves its folder alone")
    assert find_beatmaps(osz, extract_dir=out) == first
    assert sentinel.exists()

    os.utime(osz, ns=(osz.stat().st_atime_ns, osz.stat().st_mtime_ns + 10**9))  # the .osz changed
    assert find_beatmaps(osz, extract_dir=out) == first
    assert not sentinel.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_users_own_folder_in_extract_dir_is_never_replaced(tmp_path):
    osz = legit_osz(tmp_path / "9 A - B.osz")
    songs = tmp_path / "Songs"
    mine = write(songs / "9 A - B" / "mine.osu", "my own edit")
    entries = find_beatmaps(osz, extract_dir=songs)
    assert mine.read_text() == "my own edit"
    assert {e.set_key for e in entries} == {e.osu_path.parent.name for e in entries}
    assert entries[0].set_key.startswith("9 A - B (") and len(entries) == 2
    assert find_beatmaps(osz, extract_dir=songs) == entries  # the suffixed folder is reused


def test_downloads_folder_of_osz_with_extract_dir_inside_it(tmp_path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    legit_osz(downloads / "1 A - B.osz")
    legit_osz(downloads / "2 C - D.osz", audio_name="Song.wav")
    write(downloads / "notes.txt", "not a beatmap")
    entries = find_beatmaps(downloads, extract_dir=downloads / ".extracted")
    assert [(e.set_key, e.audio_path.name) for e in entries] == [
        ("1 A - B", "audio.wav"), ("1 A - B", "audio.wav"), ("2 C - D", "Song.wav"), ("2 C - D", "Song.wav")]
    # A second scan does not see the extracted folders as extra sets.
    assert find_beatmaps(downloads, extract_dir=downloads / ".extracted") == entries


def test_songs_folder_picks_up_osz_only_with_extract_dir(tmp_path, caplog):
    root = make_songs(tmp_path / "Songs")
    legit_osz(root / "300 New - Set.osz")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        plain = find_beatmaps(root)
    assert "ignored 1 .osz file(s)" in caplog.text
    with_osz = find_beatmaps(root, extract_dir=tmp_path / "x")
    assert len(with_osz) == len(plain) + 2 and with_osz[-1].set_key == "300 New - Set"


def test_osz_needs_extract_dir(tmp_path):
    (tmp_path / "dl").mkdir()
    osz = legit_osz(tmp_path / "dl" / "5 A - B.osz")
    with pytest.raises(SourceError, match="pass extract_dir"):
        find_beatmaps(osz)
    with pytest.raises(SourceError, match="holds 1 .osz file"):
        find_beatmaps(osz.parent)


def test_broken_osz_is_skipped_and_explained(tmp_path, caplog):
    write(tmp_path / "dl" / "bad.osz", b"this is not a zip file")
    legit_osz(tmp_path / "dl" / "4 A - B.osz")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        entries = find_beatmaps(tmp_path / "dl", extract_dir=tmp_path / "out")
    assert len(entries) == 2 and "bad.osz cannot be extracted" in caplog.text
    with pytest.raises(SourceError, match="all 1 were skipped .1 unreadable .osz."):
        find_beatmaps(tmp_path / "dl" / "bad.osz", extract_dir=tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Unusable roots


def test_unusable_roots_raise_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        find_beatmaps(tmp_path / "nowhere")
    write(tmp_path / "empty" / "readme.txt", "no beatmaps here")
    with pytest.raises(SourceError, match="no beatmaps found in .*it holds no .osu files"):
        find_beatmaps(tmp_path / "empty")
    with pytest.raises(SourceError, match="is a file but not an .osz"):
        find_beatmaps(tmp_path / "empty" / "readme.txt")
    write(tmp_path / "noaudio" / "1 A/a.osu", osu(0, "gone.wav"))
    with pytest.raises(SourceError, match=r"no usable beatmaps .*all 1 were skipped \(1 missing audio\)"):
        find_beatmaps(tmp_path / "noaudio")


# ---------------------------------------------------------------------------------------------
# (b) metadata.parquet


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    write(tmp_path / "mmrs" / "metadata.parquet", b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SourceError, match=r"^reading metadata.parquet needs pyarrow: pip install pyarrow$"):
        find_beatmaps(tmp_path / "mmrs")


def test_parquet_dataset(tmp_path, caplog):
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq

    root = tmp_path / "mmrs"
    rows = [  # (set id, beatmap id, mode, user, ranked, submitted, stars, tags, audio, folder, file)
        (40, 1, 0, 111, datetime.datetime(2021, 5, 1), datetime.datetime(2020, 1, 1), 5.5, ["clean", "jump aim"],
         "audio.mp3", "40 A - B", "A - B (m) [X].osu"),
        (40, 2, 3, 222, None, datetime.datetime(2019, 2, 2), 3.25, [], "audio.mp3", "40 A - B", "A - B (m) [4K].osu"),
        (41, 3, 0, 333, datetime.datetime(2022, 1, 1), None, 4.0, None, "song.ogg", "41 C - D", "C - D (m) [Y].osu"),
        (42, 4, 0, 444, None, None, 2.0, None, "gone.mp3", "42 E - F", "E - F (m) [Z].osu"),  # audio missing
    ]
    for set_id, _, mode, *_rest, audio, folder, osu_name in rows:
        write(root / "data" / folder / osu_name, osu(mode, audio))
        if audio != "gone.mp3":
            write(root / "data" / folder / audio, b"audio")
    names = ["BeatmapSetId", "Id", "ModeInt", "UserId", "RankedDate", "SubmittedDate", "DifficultyRating",
             "OmdbTags", "AudioFile", "BeatmapSetFolder", "BeatmapFile"]
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})
    table = table.append_column("Artist", pa.array(["A", "A", "C", "E"]))
    pq.write_table(table, root / "metadata.parquet")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        entries = find_beatmaps(root)
    assert "skipped 1 of 4 beatmaps" in caplog.text and "1 missing audio" in caplog.text
    assert entries == [
        BeatmapEntry(root / "data/40 A - B/A - B (m) [4K].osu", root / "data/40 A - B/audio.mp3", "40", None, 3,
                     222, 2019, 3.25, ()),
        BeatmapEntry(root / "data/40 A - B/A - B (m) [X].osu", root / "data/40 A - B/audio.mp3", "40", None, 0,
                     111, 2021, 5.5, ("clean", "jump aim")),
        BeatmapEntry(root / "data/41 C - D/C - D (m) [Y].osu", root / "data/41 C - D/song.ogg", "41", None, 0,
                     333, 2022, 4.0, ()),
    ]
    assert [(e.set_key, e.split) for e in find_beatmaps(root, split="val")] == [("40", "val"), ("40", "val")]
    assert [(e.set_key, e.split) for e in find_beatmaps(root, split="train")] == [("41", "train")]
    assert [e.mode for e in find_beatmaps(root, modes=[3])] == [3]


# ---------------------------------------------------------------------------------------------
# The shared corpus (skipped when ../shared/beatmaps is absent)


def test_corpus_splits(corpus_root):
    train = find_beatmaps(corpus_root, split="train")
    val = find_beatmaps(corpus_root, split="val")
    assert len(train) == 402 and len(val) == 139
    assert {e.split for e in train} == {"train"} and {e.split for e in val} == {"val"}
    assert not {e.set_key for e in train} & {e.set_key for e in val}
    assert all(e.audio_path.is_file() and e.osu_path.is_file() for e in train + val)
    assert {e.mode for e in train + val} == {0, 1, 2, 3}
    assert len(find_beatmaps(corpus_root, split="train", modes=[3])) == 194
