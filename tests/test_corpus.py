"""Corpus checks on ../shared/beatmaps (skipped when it is absent): every indexed file through the reader
and writer, a 1-in-10 sample through the token round trip, and a sample of the audio-less files."""
from __future__ import annotations

import csv
import statistics

import pytest
import rosu_pp_py

from tokenizer.check import check_file, file_round_trip_difference
from tokenizer.osu_file import BeatmapError, format_beatmap, parse_beatmap, read_beatmap

SAMPLE_EVERY = 10
OSU_ONLY_SAMPLE_EVERY = 5
OUTLIER_STARS = 10.0  # the corpus README's suggested filter: joke maps and a 2B map above 10 stars


@pytest.fixture(scope="module")
def index_rows(corpus_root):
    with open(corpus_root / "index.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 0
    return rows


def test_every_indexed_file_reads_and_writes_back_exactly(corpus_root, index_rows):
    problems = []
    for row in index_rows:
        path = corpus_root / row["osu_path"]
        try:
            beatmap = read_beatmap(path)
        except BeatmapError as e:
            problems.append(f"unreadable: {e}")
            continue
        difference = file_round_trip_difference(beatmap)
        if difference is not None:
            problems.append(f"{path}: {difference}")
        if (beatmap.mode, beatmap.format_version) != (int(row["mode"]), int(row["format_version"])):
            problems.append(f"{path}: mode/version {beatmap.mode}/{beatmap.format_version}, index says "
                            f"{row['mode']}/{row['format_version']}")
        skipped = sum("in [HitObjects]" in w for w in beatmap.warnings)
        if len(beatmap.hit_objects) + skipped != int(row["n_hitobjects"]):
            problems.append(f"{path}: {len(beatmap.hit_objects)} objects + {skipped} skipped, index says {row['n_hitobjects']}")
        again = parse_beatmap(format_beatmap(beatmap), str(path))
        if again.warnings:
            problems.append(f"{path}: the written file reads with warnings: {again.warnings[:2]}")
    assert problems == []


def test_written_files_keep_star_rating(corpus_root, index_rows):
    """rosu-pp on the written v14 text agrees with the index's rating of the original file (every 2nd file)."""
    problems = []
    for row in index_rows[::2]:
        path = corpus_root / row["osu_path"]
        written = format_beatmap(read_beatmap(path))
        stars = rosu_pp_py.Difficulty().calculate(rosu_pp_py.Beatmap(content=written)).stars
        if abs(stars - float(row["star_rating"])) > 0.01:
            problems.append(f"{path}: {stars:.3f} stars written, {row['star_rating']} in the index")
    assert problems == []


def test_token_round_trip_sample(corpus_root, index_rows, tokenizer):
    reports = [(row, check_file(str(corpus_root / row["osu_path"]), tokenizer)) for row in index_rows[::SAMPLE_EVERY]]
    assert len(reports) >= len(index_rows) // SAMPLE_EVERY
    problems = []
    for row, report in reports:
        if report.error:
            problems.append(report.line())
            continue
        if report.lost or report.extra or report.outside_cell or report.wrong_column or report.file_difference:
            problems.append(report.line())
        if report.file_stars_difference > 0.01:
            problems.append(f"{report.path}: the written file changes the star rating by {report.file_stars_difference:.3f}")
        tolerance = 0.10 if report.mode in (0, 2) else 0.02
        if float(row["star_rating"]) <= OUTLIER_STARS and abs(report.stars_change) > tolerance:
            problems.append(f"star rating {100 * report.stars_change:+.1f}%: {report.line()}")
    assert problems == []
    snapped = sum(r.snapped for _, r in reports)
    within = sum(r.snapped_within_1ms for _, r in reports)
    assert within / snapped >= 0.99
    assert statistics.median(abs(r.stars_change) for _, r in reports) < 0.01
    assert {r.mode for _, r in reports} >= {0, 1, 3}


def test_audio_less_files_read_or_fail_cleanly(corpus_root):
    files = sorted((corpus_root / "osu_only").rglob("*.osu"))
    if not files:
        pytest.skip("../shared/beatmaps/osu_only has no .osu files")
    problems, parsed = [], 0
    for path in files[::OSU_ONLY_SAMPLE_EVERY]:
        try:
            beatmap = read_beatmap(path)
        except BeatmapError as e:
            if str(path) not in str(e):
                problems.append(f"error without the file name: {e}")
            continue
        except Exception as e:  # anything else escaping the reader is a bug
            problems.append(f"{path}: {type(e).__name__}: {e}")
            continue
        parsed += 1
        difference = file_round_trip_difference(beatmap)
        if difference is not None:
            problems.append(f"{path}: {difference}")
    assert problems == []
    assert parsed > len(files[::OSU_ONLY_SAMPLE_EVERY]) * 0.9
