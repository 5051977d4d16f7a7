"""The shipped default generator: what inference.py loads when no model_path is given."""
from __future__ import annotations

import soundfile
from hydra import compose, initialize_config_dir

from conftest import REPO_ROOT, click_track, std_map_text
from inference import generate
from osuT5.model import load_model, parameter_count
from postprocess.validate import validity_problems_file

WEIGHTS = REPO_ROOT / "weights" / "generator"


def default_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("inference_v29", overrides=list(overrides))


def test_the_default_model_path_is_the_shipped_lean_checkpoint():
    assert REPO_ROOT / default_config().model_path == WEIGHTS
    assert (WEIGHTS / "model.safetensors").stat().st_size < 60 * 2**20
    model, tokenizer = load_model(WEIGHTS)
    assert 20e6 < parameter_count(model) < 23e6
    assert set(tokenizer.config.gamemodes) == {0, 1, 2, 3}
    assert (REPO_ROOT / "weights" / "README.md").is_file()


def test_the_shipped_model_runs_end_to_end_without_a_model_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)  # model_path is relative to the repository, as in the README's command
    song = tmp_path / "song.ogg"
    soundfile.write(song, click_track(10.0, 140.0, offset_ms=300.0), 16000)
    code = generate(default_config(f"audio_path={song}", "gamemode=0", "difficulty=4", "seed=3", "threads=1",
                                   "progress=false", "precision=fp32"))
    out, err = capsys.readouterr()
    written = list(tmp_path.glob("*.osu"))
    if code == 0:  # a map: it must be valid
        assert len(written) == 1 and str(written[0]) in out
        assert validity_problems_file(written[0]) == []
    else:  # a weak model may write nothing for a click track: then one sentence and no file
        assert err.startswith("error: the model wrote no hit objects") and written == []


def test_the_shipped_refiner_is_the_default_and_dequantises_a_hand_made_map(tokenizer):
    import numpy as np

    from osu_diffusion.benchmark import measure, quantise
    from osu_diffusion.objects import object_sequence
    from osu_diffusion.refine import RefineOptions, Refiner
    from tokenizer.encode import beatmap_to_groups
    from tokenizer.events import ContextType
    from tokenizer.osu_file import parse_beatmap

    folder = REPO_ROOT / "weights" / "refiner"
    assert REPO_ROOT / default_config().diff_model_path == folder
    assert (folder / "model.safetensors").stat().st_size < 5 * 2**20
    refiner = Refiner.load(folder, RefineOptions(start_step=int(default_config().diff_start_step)))
    beatmap = parse_beatmap(std_map_text())
    seq = object_sequence(beatmap_to_groups(beatmap, tokenizer.config)[ContextType.MAP], beatmap.timing, beatmap.slider_multiplier)
    human = seq.positions.copy()
    seq.positions = np.where(seq.fixed[:, None], human, quantise(human, tokenizer))
    refined = refiner.refine(seq, refiner.classes(4.0, None, [], 4.0))
    m = measure(seq, refined, seq.positions, human)
    assert m["after"].mean() < m["before"].mean()
    assert m["spacing_after"].mean() < 0.5 * m["spacing_before"].mean()
    assert (m["slider_end"] <= 1).all()
