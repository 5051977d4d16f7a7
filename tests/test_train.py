"""Training: overfitting one window, exact resume after a kill, two processes, LoRA, and bad input."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

from osuT5.audio import AudioCache
from osuT5.dataset import DatasetOptions, WindowDataset, load_records, mapper_index
from osuT5.generate import WindowRules, decode_window
from osuT5.logits import SamplingConfig, TokenKinds
from osuT5.model import Mapperatorinator, load_model, model_config
from osuT5.sources import find_beatmaps
from tokenizer.vocabulary import EOS, SOS, Tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.backbone.d_model=64", "model.backbone.encoder_layers=1", "model.backbone.decoder_layers=1",
        "model.backbone.encoder_ffn_dim=128", "model.backbone.decoder_ffn_dim=128",
        "model.backbone.encoder_attention_heads=2", "model.backbone.decoder_attention_heads=2",
        "model.mel.n_mels=32", "data.num_workers=0", "threads=1", "precision=no"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train_command(root: Path, out: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "osuT5" / "train.py"), "-cn", "train_tiny", f"data.root={root}",
            f"hydra.run.dir={out}", f"data.audio_cache_dir={out.parent / 'audio-cache'}", *TINY, *overrides]


def run_training(root: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    run = subprocess.run(train_command(root, out, *overrides), capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def trace(out: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (out / f"batches-rank{rank}.jsonl").read_text().splitlines()]


def test_overfit_one_window_then_greedy_decode_it_exactly(synthetic_corpus, tmp_path, v29_config):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    records = load_records(find_beatmaps(synthetic_corpus, split="train"), AudioCache(tmp_path))
    tokenizer = Tokenizer(dataclasses.replace(v29_config, mapper_idx=mapper_index(records)))
    dataset = WindowDataset(records, tokenizer, DatasetOptions(), AudioCache(tmp_path), tgt_seq_len=512)
    example = dataset.example(0, 0, 1)
    inputs, labels = torch.from_numpy(example["decoder_input_ids"])[None], torch.from_numpy(example["labels"])[None]
    audio = torch.from_numpy(example["audio"])
    backbone = dict(d_model=128, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256)
    mel = dict(n_fft=1024, n_mels=64, f_min=20.0, f_max=8000.0, mel_scale="htk", mel_norm=None,
               spectrogram_log_scale=True, pad_mode="reflect")
    model = Mapperatorinator(model_config(backbone, mel, tokenizer, 512, 3.0, True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(400):  # well under a minute on 2 idle cores (see the closing note's --durations)
        loss = model(audio=audio[None], decoder_input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 1e-3:
            break
    model.eval()
    full = example["decoder_input_ids"].tolist() + [int(example["labels"][-1])]
    sos = full.index(SOS)
    rules = WindowRules(eos_ids=frozenset({EOS}), max_new_tokens=len(full))
    decoded = decode_window(model, model.encode(audio[None]), [full[:sos + 1]], TokenKinds(tokenizer), rules,
                            SamplingConfig(do_sample=False))
    assert decoded + [EOS] == full[sos + 1:], f"loss {loss.item():.4f} after {step + 1} steps"
    assert len(decoded) > 40  # a real window: timing, map and context markers


def test_resume_after_kill_continues_with_the_same_batches(synthetic_corpus, tmp_path):
    overrides = ["optim.max_steps=30", "optim.batch_size=2", "checkpoint_every=2", "keep_checkpoints=2",
                 "data.val_split=null", "trace_batches=true", "log_every=1"]
    straight = tmp_path / "straight"
    run_training(synthetic_corpus, straight, *overrides)

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(synthetic_corpus, killed, *overrides), env=ENV, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "checkpoint-6").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model").exists(), "the run finished before it could be killed"
    resumed_lines = len(trace(killed))
    run_training(synthetic_corpus, killed, *overrides, "resume=true")
    log_text = (killed / "train.log").read_text()
    assert "resumed from checkpoint-" in log_text
    step = int(log_text.split("resumed from checkpoint-")[1].split()[0])
    assert step >= 6

    after_restart = trace(killed)[resumed_lines:]
    reference = {line["step"]: line["slots"] for line in trace(straight) if "step" in line}
    assert after_restart[0]["step"] == step and after_restart[0]["slots"] == reference[step]
    assert [line["slots"] for line in after_restart if "step" in line] == [reference[s] for s in range(step, 30)]
    a, b = load_file(straight / "model" / "model.safetensors"), load_file(killed / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    last = straight / "checkpoints" / "checkpoint-30"  # a checkpoint is also a model folder
    final, _ = load_model(straight / "model")
    assert all(torch.equal(p, q) for p, q in zip(load_model(last)[0].state_dict().values(), final.state_dict().values()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_see_different_data_and_end_with_identical_weights(synthetic_corpus, tmp_path):
    out = tmp_path / "ddp"
    # accelerate 1.15 runs `--cpu --num_processes 2` as ONE process unless an MPI hostfile is given;
    # `--multi_gpu` launches through torchrun, and device=cpu makes the processes talk over gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *train_command(synthetic_corpus, out)[1:], "device=cpu",
               "optim.max_steps=4", "optim.batch_size=2", "data.val_split=null", "trace_batches=true", "checkpoint_every=100"]
    run = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [trace(out, r) for r in (0, 1)]
    slots = [[tuple(s) for line in lines if "slots" in line for s in line["slots"]] for lines in ranks]
    assert len(slots[0]) == len(slots[1]) == 8
    assert not set(slots[0]) & set(slots[1]), "both processes trained on the same windows"
    assert ranks[0][-1]["weights_checksum"] == ranks[1][-1]["weights_checksum"]
    assert (out / "model" / "model.safetensors").exists()


def test_lora_fine_tune_saves_adapter_and_merged_model(synthetic_corpus, tmp_path):
    base = tmp_path / "base"
    run_training(synthetic_corpus, base, "optim.max_steps=2", "optim.batch_size=2", "data.val_split=null")
    lora = tmp_path / "lora"
    run = subprocess.run([sys.executable, str(REPO / "osuT5" / "train.py"), "-cn", "lora", f"data.root={synthetic_corpus}",
                          f"pretrained_path={base / 'model'}", f"hydra.run.dir={lora}",
                          f"data.audio_cache_dir={tmp_path / 'audio-cache'}", "optim.max_steps=3", "optim.batch_size=2",
                          "optim.lr=1e-2", "lora.r=4", "lora.alpha=8", "data.num_workers=0", "threads=1", "precision=no"],
                         capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (lora / "lora").iterdir()}
    merged, _ = load_model(lora / "model")
    original, _ = load_model(base / "model")
    q = "transformer.model.decoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], original.state_dict()[q])
    untouched = "transformer.model.decoder.layers.0.fc1.weight"
    assert torch.equal(merged.state_dict()[untouched], original.state_dict()[untouched])


@pytest.mark.parametrize("overrides, message", [
    ([], "set data.root=PATH"),
    (["data.root=/nonexistent/maps"], "/nonexistent/maps"),
    (["data.root=.", "optim.batch_size=3", "optim.grad_acc=2"], "must be a multiple of optim.grad_acc"),
])
def test_bad_configuration_gives_one_clear_sentence(tmp_path, overrides, message):
    command = [sys.executable, str(REPO / "osuT5" / "train.py"), "-cn", "train_tiny", f"hydra.run.dir={tmp_path}", *overrides]
    run = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr


def test_gpu_recipe_trains_the_shipped_generators_shape():
    """configs/train_tiny_gpu.yaml (weights/README.md) trains the shape of weights/generator, so what it
    trains can replace the shipped model without slowing inference; only dropout differs."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train_tiny_gpu")
    shipped = json.loads((REPO / "weights" / "generator" / "config.json").read_text())["backbone_config"]
    recipe = OmegaConf.to_container(cfg.model.backbone)
    assert (recipe.pop("dropout"), shipped.pop("dropout")) == (0.1, 0.0)
    assert recipe == shipped
    assert (cfg.optim.batch_size, cfg.optim.max_steps, cfg.data.num_workers) == (64, 6400, 12)
