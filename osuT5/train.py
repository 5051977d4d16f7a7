"""Train the generator: `python osuT5/train.py -cn train_tiny data.root=PATH` (or `accelerate launch ...`).

accelerate handles the device, mixed precision, several processes and checkpoint state; the data plan
is seeded by (seed, epoch), so a resumed run sees exactly the batches the killed run would have seen.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from osuT5.audio import AudioCache
from osuT5.dataset import DatasetOptions, WindowDataset, collate, load_records, mapper_index
from osuT5.metrics import accuracies, accuracy_counts
from osuT5.model import (IGNORE_INDEX, Mapperatorinator, MapperatorinatorConfig, load_model, model_config, parameter_count,
                         save_model)
from osuT5.sources import SourceError, find_beatmaps
from tokenizer.vocabulary import Tokenizer, TokenizerConfig

log = logging.getLogger("train")
STATE_FILE = "trainer_state.json"


class TrainingError(Exception):
    """A problem with the user's configuration or data, reported as one sentence."""


def cosine_schedule(warmup_steps: int, total_steps: int, final_ratio: float):
    """LR multiplier: linear warmup, then cosine decay to `final_ratio`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def dataset_options(cfg: DictConfig, train: bool) -> DatasetOptions:
    if not train:
        return DatasetOptions(seed=cfg.seed, max_windows=cfg.data.val_windows)
    values = OmegaConf.to_container(cfg.data.augment, resolve=True)
    values["dt_range"] = tuple(values["dt_range"])
    return DatasetOptions(seed=cfg.seed, shuffle=True, batch_size=cfg.optim.batch_size // cfg.optim.grad_acc,
                          length_buckets=cfg.data.length_buckets, **values)


def find_records(cfg: DictConfig, split: str, audio: AudioCache):
    root = cfg.data.val_root if split == cfg.data.val_split and cfg.data.val_root else cfg.data.root
    entries = find_beatmaps(root, split=split, modes=list(cfg.data.gamemodes), extract_dir=cfg.data.extract_dir)
    records = load_records(entries, audio)
    if not records:
        raise TrainingError(f"no usable beatmaps for split '{split}' in {root}")
    return records


def build_tokenizer_and_model(cfg: DictConfig, train_records) -> tuple[Tokenizer, Mapperatorinator]:
    if cfg.pretrained_path:
        model, tokenizer = load_model(cfg.pretrained_path)
        return tokenizer, model.train()
    config = TokenizerConfig.from_yaml(cfg.tokenizer)
    config.mapper_idx = mapper_index(train_records)
    tokenizer = Tokenizer(config)
    m = cfg.model
    mel = OmegaConf.to_container(m.mel, resolve=True)
    backbone = OmegaConf.to_container(m.backbone, resolve=True)
    model = Mapperatorinator(model_config(backbone, mel, tokenizer, m.tgt_seq_len, m.rhythm_weight,
                                          m.project_encoder_input, m.time_token_init))
    if model.config.time_token_init == "aligned":
        model.align_time_tokens()
    return tokenizer, model


def apply_lora(cfg: DictConfig, model: Mapperatorinator):
    from peft import LoraConfig, get_peft_model

    lora = cfg.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                             target_modules=list(lora.target_modules), init_lora_weights=lora.init)
    return get_peft_model(model, peft_config)


def checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def publish_checkpoint(accelerator: Accelerator, folder: Path, state: dict, keep: int,
                       write_extras: Callable[[Path], None]) -> None:
    """accelerate state (model, optimizer, scheduler, RNG), `write_extras(folder)` and our position,
    published by an atomic rename; only the newest `keep` checkpoints stay."""
    final = folder / f"checkpoint-{state['step']}"
    partial = folder / f".partial-checkpoint-{state['step']}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_extras(partial)
        (partial / STATE_FILE).write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in checkpoints(folder)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator: Accelerator, folder: Path, state: dict, tokenizer: Tokenizer, keep: int,
                    config: MapperatorinatorConfig) -> None:
    """With config.json and tokenizer.json next to model.safetensors, a checkpoint is also a model folder
    that inference, evaluate.py and osuT5.export load directly."""
    def write_extras(partial: Path) -> None:
        tokenizer.save(partial / "tokenizer.json")
        config.save_pretrained(partial)

    publish_checkpoint(accelerator, folder, state, keep, write_extras)


@torch.no_grad()
def evaluate(accelerator: Accelerator, model, loader: DataLoader, tokenizer: Tokenizer) -> dict[str, float]:
    model.eval()
    loss_sum = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    counts = 0
    for batch in loader:
        batch.pop("slot")
        out = model(**batch, labelled_logits_only=True)
        labels = batch["labels"][batch["labels"] != IGNORE_INDEX]
        loss_sum += torch.stack([out.loss.double() * len(labels), torch.tensor(len(labels), dtype=torch.float64, device=accelerator.device)])
        counts = counts + accuracy_counts(out.logits, labels, tokenizer).to(accelerator.device)
    loss_sum, counts = accelerator.reduce(loss_sum, "sum"), accelerator.reduce(counts, "sum")
    model.train()
    return {"val_loss": float(loss_sum[0] / loss_sum[1].clamp(min=1)), **accuracies(counts.cpu())}


def make_accelerator(cfg: DictConfig) -> Accelerator:
    """The run's accelerator from the settings every trainer shares (device, precision, optim batch and
    accumulation, wandb, threads, seed), after checking them."""
    opt = cfg.optim
    if cfg.wandb.mode != "disabled" and importlib.util.find_spec("wandb") is None:
        raise TrainingError(f"wandb.mode={cfg.wandb.mode} needs wandb: pip install wandb")
    if opt.batch_size % opt.grad_acc:
        raise TrainingError(f"optim.batch_size ({opt.batch_size}) must be a multiple of optim.grad_acc ({opt.grad_acc})")
    accelerator = Accelerator(
        cpu=cfg.device == "cpu", mixed_precision=cfg.precision, gradient_accumulation_steps=opt.grad_acc,
        log_with="wandb" if cfg.wandb.mode != "disabled" else None, project_dir=str(cfg.output_dir),
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    return accelerator


def start_tracking(accelerator: Accelerator, cfg: DictConfig) -> None:
    """Weights & Biases logging of the whole config, when asked for."""
    if cfg.wandb.mode != "disabled":
        accelerator.init_trackers(cfg.wandb.project, config=OmegaConf.to_container(cfg, resolve=True),
                                  init_kwargs={"wandb": {"mode": cfg.wandb.mode, "entity": cfg.wandb.entity,
                                                         "dir": str(cfg.output_dir)}})


def run_command(train_fn: Callable[[DictConfig], Path], cfg: DictConfig, data_kind: str) -> None:
    """A trainer's command line: a missing data.root or a bad setting ends with one sentence and exit 1."""
    if OmegaConf.is_missing(cfg.data, "root"):
        sys.exit(f"error: set data.root=PATH, a folder of {data_kind} (index.csv, a Songs folder, .osz files or metadata.parquet)")
    try:
        train_fn(cfg)
    except (TrainingError, SourceError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


def train(cfg: DictConfig) -> Path:
    output_dir = Path(cfg.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    opt = cfg.optim
    accelerator = make_accelerator(cfg)
    audio = AudioCache(os.path.expanduser(cfg.data.audio_cache_dir) if cfg.data.audio_cache_dir else None)
    train_records = find_records(cfg, cfg.data.train_split, audio)
    val_records = find_records(cfg, cfg.data.val_split, audio) if cfg.data.val_split else []

    resume_from = checkpoints(checkpoint_dir)[-1] if cfg.resume and checkpoint_dir.exists() else None
    if cfg.resume and resume_from is None:
        log.info("resume=true but no checkpoint in %s: starting from scratch", checkpoint_dir)
    tokenizer, model = build_tokenizer_and_model(cfg, train_records)
    if resume_from is not None:
        tokenizer = Tokenizer.load(resume_from / "tokenizer.json")
    if cfg.get("lora") is not None:
        model = apply_lora(cfg, model)
    log.info("model: %.1f M trainable parameters, vocabulary %d in / %d out",
             parameter_count(model) / 1e6, tokenizer.vocab_size_in, tokenizer.vocab_size_out)

    tgt_seq_len = model.config.tgt_seq_len
    train_set = WindowDataset(train_records, tokenizer, dataset_options(cfg, True), audio, tgt_seq_len)
    micro_batch = opt.batch_size // opt.grad_acc
    loader_args = dict(batch_size=micro_batch, collate_fn=collate, num_workers=cfg.data.num_workers)
    train_loader = DataLoader(train_set, shuffle=False, drop_last=True, **loader_args)
    val_loader = None
    if val_records:
        val_set = WindowDataset(val_records, tokenizer, dataset_options(cfg, False), audio, tgt_seq_len)
        val_loader = DataLoader(val_set, shuffle=False, **loader_args)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opt.lr,
                                  betas=tuple(opt.betas), weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(opt.warmup_steps, opt.max_steps, opt.final_lr_ratio))
    model, optimizer, scheduler, train_loader = accelerator.prepare(model, optimizer, scheduler, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / STATE_FILE).read_text())
        log.info("resumed from %s at step %d (epoch %d, batch %d)", resume_from.name, state["step"], state["epoch"], state["batch_in_epoch"])
    start_tracking(accelerator, cfg)
    trace = (output_dir / f"batches-rank{accelerator.process_index}.jsonl").open("a", buffering=1) if cfg.trace_batches else None

    progress = tqdm(total=opt.max_steps, initial=state["step"], disable=not accelerator.is_local_main_process,
                    desc="training", dynamic_ncols=True)
    model.train()
    window_count, token_count, loss_sum, loss_n, started = 0, 0, 0.0, 0, time.perf_counter()
    while state["step"] < opt.max_steps:
        train_set.plan_epoch(state["epoch"])
        loader = accelerator.skip_first_batches(train_loader, state["batch_in_epoch"]) if state["batch_in_epoch"] else train_loader
        for batch in loader:
            state["batch_in_epoch"] += 1
            slots = batch.pop("slot")
            if trace is not None:
                trace.write(json.dumps({"step": state["step"], "slots": slots.tolist()}) + "\n")
            with accelerator.accumulate(model):
                # Right padding under a causal mask never reaches real tokens, so the padding mask can go:
                # without it SDPA takes its fast causal kernel.
                inputs = {k: v for k, v in batch.items() if k != "decoder_attention_mask"}
                loss = model(**inputs, labelled_logits_only=True).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and opt.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), opt.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window_count += len(slots)
            token_count += int(batch["decoder_attention_mask"].sum())
            loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            progress.update(1)
            step = state["step"]
            if step % cfg.log_every == 0 or step == opt.max_steps:
                elapsed = time.perf_counter() - started
                metrics = {"train_loss": loss_sum / loss_n, "lr": scheduler.get_last_lr()[0],
                           "windows_per_s": window_count * accelerator.num_processes / elapsed,
                           "tokens_per_s": token_count * accelerator.num_processes / elapsed}
                log.info("step %d | loss %.4f | lr %.2e | %.2f windows/s | %.0f tokens/s", step, metrics["train_loss"],
                         metrics["lr"], metrics["windows_per_s"], metrics["tokens_per_s"])
                progress.set_postfix(loss=f"{metrics['train_loss']:.3f}")
                accelerator.log(metrics, step=step)
                window_count, token_count, loss_sum, loss_n, started = 0, 0, 0.0, 0, time.perf_counter()
            if val_loader is not None and (step % cfg.eval_every == 0 or step == opt.max_steps):
                metrics = evaluate(accelerator, model, val_loader, tokenizer)
                log.info("eval step %d | %s", step, " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                accelerator.log(metrics, step=step)
            if step % cfg.checkpoint_every == 0 or step == opt.max_steps:
                save_checkpoint(accelerator, checkpoint_dir, state, tokenizer, cfg.keep_checkpoints,
                                accelerator.unwrap_model(model).config)
            if step >= opt.max_steps:
                break
        else:
            state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
            continue
        break
    progress.close()
    if trace is not None:
        trace.write(json.dumps({"weights_checksum": weights_checksum(accelerator.unwrap_model(model))}) + "\n")
        trace.close()

    final_dir = output_dir / "model"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final(accelerator.unwrap_model(model), tokenizer, output_dir, cfg.get("lora") is not None)
        log.info("saved the model to %s", final_dir)
    accelerator.end_training()
    return final_dir


def weights_checksum(model: torch.nn.Module) -> str:
    """Identical on every process of a healthy multi-process run."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_final(model, tokenizer: Tokenizer, output_dir: Path, is_lora: bool) -> None:
    """The self-contained folder inference loads; a LoRA run also keeps its adapter."""
    if is_lora:
        model.save_pretrained(output_dir / "lora")
        tokenizer.save(output_dir / "lora" / "tokenizer.json")
        model = model.merge_and_unload()
    save_model(model, tokenizer, output_dir / "model")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train_tiny")
def main(cfg: DictConfig) -> None:
    run_command(train, cfg, "beatmaps with audio")


if __name__ == "__main__":
    main()
