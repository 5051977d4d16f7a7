"""osu_diffusion: object sequences, the DiT, the schedule, refinement constraints, training and the benchmark."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, osu_text, std_map_text
from osu_diffusion.benchmark import main as benchmark_main
from osu_diffusion.benchmark import quantise
from osu_diffusion.diffusion import Schedule, denormalise, normalise
from osu_diffusion.model import ClassLayout, DiT, DiTConfig, load_dit, save_dit
from osu_diffusion.objects import object_sequence
from osu_diffusion.refine import RefineOptions, Refiner
from tokenizer.encode import beatmap_to_groups
from tokenizer.events import ContextType, EventType, Group
from tokenizer.osu_file import parse_beatmap
from tokenizer.timing import Timing, TimingPoint

T = EventType
TINY = dict(hidden=32, depth=2, heads=2, position_dim=16, context_dim=16, attention_band=4)


@pytest.fixture
def std_sequence(v29_config):
    beatmap = parse_beatmap(std_map_text())
    return object_sequence(beatmap_to_groups(beatmap, v29_config)[ContextType.MAP], beatmap.timing, beatmap.slider_multiplier)


def tiny_dit(seed: int = 0, **changes) -> DiT:
    torch.manual_seed(seed)
    model = DiT(DiTConfig(**{**TINY, **changes}, classes=ClassLayout(mappers=["pytest"], descriptors=["tech"])))
    for p in model.parameters():  # zero-initialised heads would predict nothing; give them something
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def test_objects_have_upstream_types_times_and_required_slider_lengths(std_sequence):
    seq = std_sequence
    names = [g.type for g in seq.groups]
    assert names[:7] == [T.CIRCLE] * 6 + [T.SLIDER_HEAD]
    assert list(seq.types[:6]) == [1, 0, 0, 0, 0, 0]  # the first circle starts a combo
    head = names.index(T.SLIDER_HEAD)
    assert names[head:head + 4] == [T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END]
    assert list(seq.types[head:head + 4]) == [4, 6, 10, 12]  # an end after two spans is type 12
    # SV 1.5 × 1.4 × 100 px per 500 ms beat: a 105 px span lasts 250 ms; the anchor sits halfway in time
    assert seq.times[head + 2] - seq.times[head] == 250 and seq.times[head + 1] == 2125
    assert seq.sliders[0].required_length == pytest.approx(105, abs=0.5)
    spinner = names.index(T.SPINNER)
    assert list(seq.types[spinner:spinner + 2]) == [2, 3] and seq.fixed[spinner] and seq.fixed[spinner + 1]
    assert seq.sliders[1].anchors == [] and seq.sliders[1].required_length == pytest.approx(70, abs=0.5)
    assert seq.distances[1] == pytest.approx(math.dist((64, 100), (104, 120)), abs=0.5)


def test_overlapping_sliders_pair_their_parts_in_order():
    groups = [Group(T.SLIDER_HEAD, 0, x=0, y=0), Group(T.RED_ANCHOR, 0, x=50, y=0), Group(T.SLIDER_HEAD, 100, x=200, y=0),
              Group(T.LAST_ANCHOR, 200, x=100, y=0), Group(T.LAST_ANCHOR, 300, x=300, y=0),
              Group(T.SLIDER_END, 400, x=100, y=0), Group(T.SLIDER_END, 500, x=300, y=0)]
    seq = object_sequence(groups, Timing([TimingPoint(0, 500)]), 1.4)
    first, second = seq.sliders
    assert (first.head, first.anchors, first.last_anchor, first.end) == (0, [1], 3, 5)
    assert (second.head, second.anchors, second.last_anchor, second.end) == (2, [], 4, 6)
    assert first.anchor_types == [T.RED_ANCHOR] and first.path(seq.positions).polyline.tolist()[:2] == [[0, 0], [50, 0]]


def test_class_vector_buckets_and_unknowns():
    layout = ClassLayout(mappers=["a", "b"], descriptors=["tech", "jump aim"])
    v = layout.vector(5.3, "b", ["jump aim", "nonsense"], 4.2)
    sizes = layout.sizes
    assert sizes == (26, 3, 3, 22) and v.sum() == 4
    assert v[10] == 1  # 5.3★ -> bucket 10 (0.5★ each)
    assert v[26 + 1] == 1 and v[29 + 1] == 1 and v[32 + 8] == 1  # mapper b, "jump aim", CS 4.2 -> 8
    unknown = layout.vector(None, "nobody", [], None)
    assert unknown[25] == 1 and unknown[26 + 2] == 1 and unknown[29 + 2] == 1 and unknown[32 + 21] == 1
    assert torch.equal(layout.unknown(v, [0, 1, 2, 3]), unknown)


def test_attention_is_banded_and_padding_stays_finite():
    model = tiny_dit(attention_band=2, depth=1)
    n = 12
    x, times = torch.rand(1, n, 2) * 2 - 1, torch.arange(n, dtype=torch.float32)[None] * 100
    args = dict(steps=torch.tensor([5]), times=times, distances=torch.full((1, n), 50.0),
                types=torch.zeros(1, n, dtype=torch.long), classes=model.config.classes.vector(4, None, [], 4)[None])
    out = model(x, **args)
    moved = x.clone()
    moved[0, 8] += 0.5  # outside object 0's band of ±2 (one block)
    assert torch.allclose(model(moved, **args)[0, :6], out[0, :6], atol=1e-6)
    assert not torch.allclose(model(moved, **args)[0, 7], out[0, 7])
    padding = torch.arange(n)[None] >= 5
    padded = model(x, padding=padding, **args)
    assert torch.isfinite(padded).all()
    assert torch.allclose(padded[0, :2], model(x[:, :5], **{**args, "times": times[:, :5], "distances": args["distances"][:, :5],
                                                         "types": args["types"][:, :5]})[0, :2], atol=1e-5)


def test_saved_refiner_loads_identically(tmp_path):
    model = tiny_dit()
    save_dit(model, tmp_path / "refiner")
    loaded = load_dit(tmp_path / "refiner")
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_cosine_schedule_levels_and_a_perfect_predictor_recovers_the_clean_positions():
    s = Schedule()
    assert s.noise_std(0) * 256 == pytest.approx(1.6, abs=0.1)
    assert s.noise_std(99) * 256 == pytest.approx(42.8, abs=0.2)
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()
    x0 = torch.rand(1, 10, 2) * 2 - 1
    eps = torch.randn(1, 10, 2)
    xt = s.noise(x0, torch.tensor([30]), eps)
    a = s.alphas_cumprod.float()
    perfect = lambda x, t: (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()
    assert torch.allclose(s.sample(perfect, xt, 31), x0, atol=1e-5)
    px = torch.tensor([[[0.0, 0.0], [512.0, 384.0], [256.0, 192.0]]])
    assert torch.allclose(normalise(px), torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]]))
    assert torch.allclose(denormalise(normalise(px)), px)


def test_refining_keeps_cells_spinners_and_puts_slider_ends_at_their_required_length(std_sequence, tokenizer):
    seq = std_sequence
    human = seq.positions.copy()
    seq.positions = np.where(seq.fixed[:, None], human, quantise(human, tokenizer))
    refiner = Refiner(tiny_dit(), RefineOptions(start_step=16))
    refined = refiner.refine(seq, refiner.classes(4.0, "pytest", [], 4.0))
    assert not np.allclose(refined, seq.positions)  # the model moved things
    assert np.array_equal(refined[seq.fixed], human[seq.fixed])
    ends = {s.end for s in seq.sliders}
    for i in set(range(len(seq))) - ends:
        cell = np.floor(seq.positions[i] / 32) * 32
        assert (refined[i] >= cell).all() and (refined[i] <= cell + 32).all()
    for s in seq.sliders:
        assert np.allclose(s.path(refined).position_at(1.0), refined[s.end], atol=1e-6)


def test_distance_passes_pull_objects_toward_the_written_distances(std_sequence, tokenizer):
    seq = std_sequence
    human = seq.positions.copy()
    seq.positions = np.where(seq.fixed[:, None], human, quantise(human, tokenizer))
    circles = slice(0, 6)
    spacing = lambda p: np.abs(np.hypot(*np.diff(p[circles], axis=0).T) - seq.distances[1:6]).mean()
    zero = DiT(DiTConfig(**TINY))  # zero-initialised output: the model itself moves nothing
    plain = Refiner(zero, RefineOptions(start_step=1, distance_passes=0)).refine(seq, torch.zeros(zero.config.classes.size))
    pulled = Refiner(zero, RefineOptions(start_step=1, distance_passes=3)).refine(seq, torch.zeros(zero.config.classes.size))
    assert spacing(pulled) < 0.5 * spacing(plain)


def test_long_maps_refine_in_overlapping_chunks_and_frozen_objects_stay(tokenizer):
    rng = np.random.default_rng(0)
    groups = [Group(T.CIRCLE, 100 * k, x=float(rng.uniform(0, 512)), y=float(rng.uniform(0, 384))) for k in range(40)]
    seq = object_sequence(groups, Timing([TimingPoint(0, 500)]), 1.4)
    seq.positions = quantise(seq.positions, tokenizer)
    model = tiny_dit()
    classes = model.config.classes.vector(None, None, [], None)
    whole = Refiner(model, RefineOptions(chunk=64)).refine(seq, classes)
    frozen = np.zeros(40, dtype=bool)
    frozen[:5] = True
    chunked = Refiner(model, RefineOptions(chunk=12, overlap=3)).refine(seq, classes, frozen=frozen)
    assert np.array_equal(chunked[:5], seq.positions[:5])
    assert not np.allclose(chunked[5:], seq.positions[5:])
    assert np.abs(chunked[10:] - whole[10:]).max() < 32  # every object refined, all inside their cells


def test_guidance_scale_changes_the_result_only_when_not_one(std_sequence):
    model = tiny_dit()
    classes = model.config.classes.vector(4.0, "pytest", [], 4.0)
    base = Refiner(model, RefineOptions(cfg_scale=1.0)).refine(std_sequence, classes)
    guided = Refiner(model, RefineOptions(cfg_scale=3.0)).refine(std_sequence, classes)
    assert not np.allclose(base, guided)
    unknown_mapper = model.config.classes.vector(4.0, None, [], 4.0)
    same = Refiner(model, RefineOptions(cfg_scale=3.0)).refine(std_sequence, unknown_mapper)
    assert np.allclose(same, Refiner(model, RefineOptions(cfg_scale=1.0)).refine(std_sequence, unknown_mapper), atol=1e-5)


def test_benchmark_prints_one_line_per_map_and_the_totals(tmp_path, capsys):
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "a.osu").write_text(std_map_text(), encoding="utf-8")
    (folder / "mania.osu").write_text(osu_text(3), encoding="utf-8")  # not std or catch: ignored
    save_dit(tiny_dit(), tmp_path / "refiner")
    assert benchmark_main([str(folder), "--model", str(tmp_path / "refiner")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("a.osu: 13 objects, distance 12.11 -> ")
    assert lines[-1].startswith("total (1 maps): 13 objects") and "100.0% within 1 px" in lines[-1]


def test_benchmark_refuses_a_missing_refiner_in_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-m", "osu_diffusion.benchmark", str(tmp_path), "--model", str(tmp_path / "none")],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: diff_model_path") and done.stderr.count("\n") == 1


def train_refiner(root, out, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "osu_diffusion" / "train.py"), f"data.root={root}", f"hydra.run.dir={out}",
               "model.hidden=16", "model.depth=1", "model.heads=2", "model.position_dim=8", "model.context_dim=8",
               "model.attention_band=4", "data.seq_len=16", "data.stride=8", "optim.batch_size=4", "optim.warmup_steps=2",
               "optim.max_steps=6", "checkpoint_every=2", "keep_checkpoints=3", "eval_every=3", "log_every=1", "threads=1",
               *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_training_checkpoints_resume_exactly_and_the_final_folder_is_a_refiner(synthetic_corpus, tmp_path):
    straight = train_refiner(synthetic_corpus, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "val_loss (EMA)" in straight.stderr + straight.stdout
    checkpoints = tmp_path / "straight" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert load_dit(checkpoints / "checkpoint-4" / "ema").config.hidden == 16
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoints / "checkpoint-4", resumed_dir / "checkpoints" / "checkpoint-4")  # as if killed after step 4
    resumed = train_refiner(synthetic_corpus, resumed_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from checkpoint-4 at step 4" in resumed.stderr + resumed.stdout
    a, b = load_dit(tmp_path / "straight" / "model"), load_dit(resumed_dir / "model")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_training_without_a_data_root_says_so(tmp_path):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "osu_diffusion" / "train.py"), f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: set data.root=PATH, a folder of beatmaps (index.csv, a Songs folder, "
                                   ".osz files or metadata.parquet)")
