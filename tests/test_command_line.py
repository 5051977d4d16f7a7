"""The entry points' command-line check: settings that cannot apply get one sentence before Hydra runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from osuT5.cli import CONFIG_DIR, check_command_line, override_error

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inference_config() -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "inference_v29.yaml"), resolve=False)


@pytest.mark.parametrize("arg, sentence", [
    ("difficuly=5", "there is no setting difficuly (did you mean difficulty?)"),
    ("temprature=0.5", "there is no setting temprature (did you mean temperature?)"),
    ("hydra.run.dirr=x", None),  # Hydra's own settings are Hydra's to check
    ("difficulty=5,5", "difficulty takes one value, not 5,5 (decimals are written with a dot (5.5), "
                       "text with commas goes in quotes)"),
    ("descriptors=tech,jump aim", "descriptors takes one value, not tech,jump aim (a list goes in brackets: [a,b])"),
    ("temperature=hot", "temperature must be a number, not hot"),
    ("top_k=3", None),
    ("top_p=1", None),
    ("do_sample=maybe", "do_sample must be true or false, not maybe"),
    ("do_sample=false", None),
    ("onset_fill=[1,0,1,1]", None),  # given once or per mode
    ("difficulty=hard", None),  # null by default: checked where it is used (pipeline.NUMBER_SETTINGS)
    ("seed=null", None),
    ("descriptors=[tech", "cannot read the setting descriptors=[tech: no viable alternative at input '[tech'"),
    ("+extra=1", None),
    ("~tags", None),
])
def test_a_setting_that_cannot_apply_gets_one_sentence(inference_config, arg, sentence):
    assert override_error(arg, inference_config) == sentence


def test_unknown_nested_settings_are_named_with_the_way_to_add_them():
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "evaluate.yaml"), resolve=False)
    assert override_error("generation.model_pth=x", config) == \
        "there is no setting generation.model_pth (did you mean generation.model_path?)"
    assert override_error("generation.temperature=0.5", config) == \
        "there is no setting generation.temperature (new ones are added with +generation.temperature=VALUE)"
    assert override_error("output_dir=outputs/x", config) is None  # its default's ${now:...} stays unresolved


def test_with_hydra_flags_the_settings_are_left_to_hydra():
    argv = ["inference.py", "-cn", "another_config", "difficuly=5"]  # another config file: its keys are not ours to judge
    assert check_command_line(argv, "inference_v29") == argv


@pytest.mark.parametrize("script, arg, sentence", [
    ("inference.py", "difficuly=5", "error: there is no setting difficuly (did you mean difficulty?)"),
    ("mai_mod.py", "top_n=ten", "error: top_n must be a number, not ten"),
    ("evaluate.py", "gamemodes=0,3", "error: gamemodes takes one value, not 0,3 (a list goes in brackets: [a,b])"),
])
def test_each_entry_point_checks_its_command_line(script, arg, sentence):
    done = subprocess.run([sys.executable, script, arg], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == sentence
