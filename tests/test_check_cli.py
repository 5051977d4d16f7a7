"""tokenizer.check helpers and the `python -m tokenizer check` command line."""
from __future__ import annotations

import subprocess
import sys

from tokenizer.check import FileReport, check_file, file_round_trip_difference, osu_files, summary
from tokenizer.osu_file import parse_beatmap

from conftest import REPO_ROOT, circle, mania_hold, mania_note, osu_text

GOOD_OSU = osu_text(0, [circle(60 + 30 * i, 100 + 10 * (i % 5), 1000 + 250 * i, new_combo=i % 4 == 0) for i in range(12)]
                    + ["100,100,4000,2,0,L|240:100,1,140"])
GOOD_MANIA = osu_text(3, [mania_note(i % 4, 4, 1000 + 125 * i) for i in range(16)] + [mania_hold(0, 4, 3000, 3500)],
                      difficulty={"CircleSize": "4"})
BROKEN = b"osu file format v14\n\n[General]\nMode: 0\n\n[HitObjects]\nNaN,1,1000,1,0\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tokenizer", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


# ---------------------------------------------------------------------------------------------
# check.py

def test_check_file_good_map(tokenizer, write_osu):
    path = write_osu(GOOD_OSU, "good.osu")
    report = check_file(str(path), tokenizer)
    assert report.error is None
    assert (report.mode, report.objects, report.lost, report.extra) == (0, 13, 0, 0)
    assert report.file_difference is None
    assert report.snapped == 13 and report.snapped_within_1ms == 13
    assert max(report.time_errors) <= 1
    assert report.outside_cell == 0 and report.wrong_column == 0
    assert report.file_stars_difference < 0.01
    assert report.stars_before > 0 and abs(report.stars_change) <= 0.10
    line = report.line()
    assert line.startswith("ok ") and line.endswith(f"| {path}")
    assert "objects=13 lost=0 extra=0" in line and "file_rt=exact" in line


def test_check_file_mania(tokenizer, write_osu):
    report = check_file(str(write_osu(GOOD_MANIA, "mania.osu")), tokenizer)
    assert (report.error, report.mode, report.objects, report.lost, report.extra, report.wrong_column) == (None, 3, 17, 0, 0, 0)
    assert abs(report.stars_change) <= 0.02


def test_check_file_broken_map(tokenizer, write_osu):
    path = write_osu(BROKEN, "broken.osu")
    report = check_file(str(path), tokenizer)
    assert report.error is not None and str(path) in report.error
    assert report.line() == f"FAILED  {report.error}"


def test_file_round_trip_difference():
    assert file_round_trip_difference(parse_beatmap(GOOD_OSU)) is None
    assert file_round_trip_difference(parse_beatmap(osu_text(0).replace("ApproachRate:9\n", ""))) is None
    beatmap = parse_beatmap(GOOD_OSU)
    beatmap.metadata["Title"] = "two\nlines"  # cannot survive a line-based file
    assert file_round_trip_difference(beatmap) == "metadata differ after write and read"


def test_summary_line():
    good = FileReport("a.osu", mode=0, objects=10, time_errors=[0.0, 1.0], snapped=2, snapped_within_1ms=2,
                      stars_before=2.0, stars_after=2.1)
    mania = FileReport("b.osu", mode=3, objects=5, lost=1, extra=2, stars_before=1.0, stars_after=1.05)
    failed = FileReport("c.osu", error="c.osu: the file is empty")
    line = summary([good, mania, failed])
    assert line.startswith("TOTAL files=3 parsed=2 failed=1 file_rt_exact=2/2 objects=15 lost=1 extra=2 ")
    assert "stars osu/catch<=10%=1/1 taiko/mania<=2%=0/1" in line
    assert "\n" not in line
    assert summary([]).startswith("TOTAL files=0 parsed=0 failed=0")


def test_osu_files_finds_recursively_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for name in ("b/2.osu", "b/1.OSU", "a/x.osu", "a/readme.txt", "top.osu"):
        (tmp_path / name).write_text("x")
    explicit = tmp_path / "a" / "readme.txt"
    found = osu_files([str(tmp_path), str(explicit)])
    assert found == [str(tmp_path / "top.osu"), str(tmp_path / "a" / "x.osu"), str(tmp_path / "b" / "1.OSU"),
                     str(tmp_path / "b" / "2.osu"), str(explicit)]


# ---------------------------------------------------------------------------------------------
# Command line

def test_cli_good_and_broken(tmp_path):
    (tmp_path / "good.osu").write_text(GOOD_OSU, encoding="utf-8")
    (tmp_path / "broken.osu").write_bytes(BROKEN)
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("FAILED  ") and str(tmp_path / "broken.osu") in lines[0]
    assert lines[1].startswith("ok ") and lines[1].endswith(str(tmp_path / "good.osu"))
    assert lines[-1].startswith("TOTAL files=2 parsed=1 failed=1 ")
    assert "Traceback" not in result.stderr


def test_cli_only_good_files(tmp_path):
    (tmp_path / "good.osu").write_text(GOOD_OSU, encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mania.osu").write_text(GOOD_MANIA, encoding="utf-8")
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("ok ") for line in lines[:2])
    assert lines[-1].startswith("TOTAL files=2 parsed=2 failed=0 file_rt_exact=2/2 objects=30 lost=0 extra=0 ")


def test_cli_warnings_flag(tmp_path):
    path = tmp_path / "warn.osu"
    path.write_text(osu_text(0, [circle(1, 1, 1000), "garbage", circle(2, 2, 2000)]), encoding="utf-8")
    result = run_cli("check", "--warnings", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.strip().startswith("warning:")]
    assert len(warnings) == 1 and f"{path}:" in warnings[0]
    assert "warning:" not in run_cli("check", str(path)).stdout


def test_cli_nonexistent_path(tmp_path):
    missing = tmp_path / "nope.osu"
    result = run_cli("check", str(missing))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_folder_without_osu_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_unknown_config(tmp_path):
    (tmp_path / "good.osu").write_text(GOOD_OSU, encoding="utf-8")
    result = run_cli("check", "--config", "v0", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "v0" in result.stderr and "Traceback" not in result.stderr


def test_cli_requires_command():
    result = run_cli()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
