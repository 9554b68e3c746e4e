"""The training loop: windows in, a run directory out.

Read top to bottom: set up (device, data, model, optimiser), then the loop (forward, backward,
step, log, evaluate, checkpoint), then the summary. Each engine feature is a few lines with a
name: precision, gradient accumulation, evaluation, early stopping, checkpoints, resume.
"""

from __future__ import annotations

import math
import random
import signal
import shutil
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bertner.config import TrainConfig, check_setting, save_config
from bertner.console import err, info, warn
from bertner.dev_predictions import write_dev_predictions
from bertner.engine.budget import TimeBudget
from bertner.engine.batching import encode_windows, iterate_batches, length_grouped_batches
from bertner.engine.checkpoint import load_checkpoint, save_checkpoint, save_weights
from bertner.engine.distributed import close_distributed, init_distributed
from bertner.engine.flops import device_peak_flops, flops_per_token, mfu
from bertner.engine.optim import build_optimizer, linear_schedule
from bertner.engine.tracking import Tracker
from bertner.errors import BertnerError, DataError, TrainingError
from bertner.fileio import write_json, write_text
from bertner.inference import char_tags, tag_windows
from bertner.models.cpu_dropout import use_cpu_dropout
from bertner.models.tagger import HeadSpec, Tagger
from bertner.runs import FINGERPRINT_FILE, RUN_FORMAT, data_fingerprint, load_fingerprint, prepare_run_dir
from bertner.spans import Window
from bertner.tags import label_set_to_tags


UNLIMITED_EPOCHS = 1_000_000  # "until the time budget ends"

# ----------------------------------------------------------------------------- set-up helpers

def pick_device(name: str) -> torch.device:
    check_setting("device", name)  # the same rule for train, evaluate and predict
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BertnerError(f"--device {name} asked for, but no CUDA GPU is visible")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        if device.type != "cuda" and name == "fp16":
            raise BertnerError("--precision fp16 needs a CUDA GPU; on CPU use fp32, or bf16 where the CPU has it")
        if device.type != "cuda" and name == "bf16" and not cpu_has_bf16():
            raise BertnerError("--precision bf16 on CPU needs AVX-512 BF16 or AMX, which this CPU lacks; use fp32")
        return name
    if device.type != "cuda":
        # bf16 autocast on a CPU with native bf16: ALBERT-tiny trains 2.3x and the bilstm 1.4x
        # faster on this project's AMD EPYC, with the same loss curve (see README).
        return "bf16" if cpu_has_bf16() else "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_for(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def default_run_name(config: TrainConfig) -> str:
    variant = config.variant.replace("+", "-")
    mult = f"-x{config.crf_lr_mult:g}" if config.crf and config.crf_lr_mult not in (None, 1) else ""
    return f"runs/{variant}{mult}-{datetime.now():%Y%m%d-%H%M%S}"


@dataclass
class Datasets:
    """Preprocessed train and dev windows, the labels to learn, and how preprocess made them."""

    train: list[Window]
    dev: list[Window]
    labels: list[str]
    info: dict[str, Any]  # how preprocess made them (discontinuous policy, max_chars), kept with the run


def load_datasets(data_dir: Path) -> Datasets:
    from bertner.data.jsonl import read_windows

    if not data_dir.is_dir():
        hint = " (run `bertner preprocess RAW_DIR` first; it writes data/processed/)" if str(data_dir) == "data/processed" else ""
        raise DataError(f"no preprocessed data folder here{hint}", path=data_dir)
    train_path, dev_path = data_dir / "train.jsonl", data_dir / "dev.jsonl"
    if not train_path.exists():
        raise DataError("no train.jsonl in this folder; point to what `bertner preprocess` wrote", path=data_dir)
    train = read_windows(train_path)
    if not train or not any(w.text.strip() for w in train):
        raise DataError("the training set is empty", path=train_path)
    dev = read_windows(dev_path) if dev_path.exists() else []
    train_labels = sorted({s.label for w in train for s in w.spans})
    if not train_labels:
        raise DataError("the training set has no entities to learn from", path=train_path)
    unseen = Counter(s.label for w in dev for s in w.spans if s.label not in train_labels)
    if unseen:
        listed = ", ".join(f"{label} ({n})" for label, n in sorted(unseen.items()))
        warn(f"{dev_path}: dev has labels that train never saw: {listed}; the model cannot learn them, "
             "so their entities count as misses in dev F1")
    return Datasets(train, dev, train_labels, data_info(data_dir))


def data_info(data_dir: Path) -> dict[str, Any]:
    """How preprocess made the data (discontinuous policy, format, max_chars), checked; kept with the run."""
    from bertner.runs import data_info_problem

    info: dict[str, Any] = {}
    if (data_dir / "labels.json").exists():
        made = _read_data_json(data_dir / "labels.json")
        # A run's labels.json keeps these fields under `data` (older bertner could write one into a data folder).
        made = made["data"] if "tags" in made and isinstance(made.get("data"), dict) else made
        info = {k: made[k] for k in ("discontinuous", "format", "max_chars") if k in made}
    if (data_dir / "stats.json").exists() and "max_chars" not in info:
        stats = _read_data_json(data_dir / "stats.json")
        if "max_chars" in stats:
            info["max_chars"] = stats["max_chars"]
    problem = data_info_problem(info)
    if problem:
        raise DataError(f"is corrupt ({problem})", path=data_dir / "labels.json")
    return info


def _read_data_json(path: Path) -> dict[str, Any]:
    from bertner.runs import read_json

    try:
        return read_json(path)
    except BertnerError as e:
        raise DataError(str(e)) from None


def build_encoder(config: TrainConfig, train: list[Window]):
    from bertner.models.encoder import RecurrentShape, build_bilstm_encoder, build_tiny_encoder, load_encoder

    if config.model == "bilstm":
        shape = RecurrentShape(
            char_dim=config.char_dim, bigram_dim=config.bigram_dim, hidden=config.rnn_hidden,
            layers=config.rnn_layers, cell=config.rnn_cell, dropout=config.rnn_dropout,
        )
        return build_bilstm_encoder(
            (w.text for w in train), shape, config.init_embeddings, whitespace_tokens=config.whitespace_tokens,
        )
    if config.model == "tiny":
        return build_tiny_encoder(
            (w.text for w in train), layers=config.tiny_layers, hidden=config.tiny_hidden, heads=config.tiny_heads,
            whitespace_tokens=config.whitespace_tokens,
        )
    return load_encoder(
        config.model, alignment=config.alignment, from_config=config.random_init,
        trust_remote_code=config.trust_remote_code, whitespace_tokens=config.whitespace_tokens,
    )


def is_out_of_memory(error: RuntimeError) -> bool:
    """CPU allocators raise a plain RuntimeError when memory runs out."""
    message = str(error).lower()
    return "out of memory" in message or "can't allocate memory" in message


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- the loop

class Trainer:
    """One training run: `setup` builds data, model and optimiser, `fit` trains and returns the summary.

    `train(config)` is the usual entry point; a Trainer is for callers that need the pieces (sweeps, tests).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, force: bool = False, show: bool = True):
        config.validate()
        self.config = config
        self.resume = resume
        self.show = show
        self.run_dir = Path(config.output or default_run_name(config))
        config.output = str(self.run_dir)
        self.force = force
        self._stop_signal: str | None = None
        self.lock = None  # bertner.lock.FolderLock on the run directory, held from setup to the end of fit
        self._created_run_dir = False

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.resume:
            self._check_resume_config()
        c = self.config
        self.dist = init_distributed(c.device)
        seed_everything(c.seed)
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        self.device = pick_device(c.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = pick_precision(c.precision, self.device)
        self.autocast = autocast_for(self.precision, self.device)

        data = load_datasets(Path(c.data))
        if self.dist.main:
            self._created_run_dir = not self.run_dir.exists()
            self.lock = prepare_run_dir(self.run_dir, force=self.force, resume=self.resume)
        self.dist.barrier()
        self.data = data
        self.tags = label_set_to_tags(data.labels, c.scheme)
        self.tag_to_id = {t: i for i, t in enumerate(self.tags)}

        if self.resume:
            # The run's own encoder folder: the same vocabulary, no download; the checkpoint
            # supplies the weights.
            from bertner.models.encoder import encoder_from_folder

            self.bundle = encoder_from_folder(self.run_dir / "encoder", trust_remote_code=c.trust_remote_code)
        else:
            self.bundle = build_encoder(c, data.train)
        self.aligner = self.bundle.aligner
        c.resolve(self.bundle.hidden_size)  # the family's recipe for what was left out; saved resolved
        max_length = min(c.max_length, self.bundle.max_positions)
        self.train_set = encode_windows(data.train, self.aligner, max_length, self.tag_to_id, c.scheme)
        # Each process evaluates its share of the dev windows; the predictions are gathered.
        self.dev_set = encode_windows(self.dist.shard(data.dev), self.aligner, max_length, self.tag_to_id, c.scheme)
        if self.train_set.inexact_entities:
            info(
                f"{self.train_set.inexact_entities} training entities have a boundary inside a token "
                "and cannot be tagged exactly with --alignment subword"
            )

        spec = HeadSpec(
            len(self.tags), c.crf, c.gru, c.gru_hidden, c.gru_layers, c.gru_bidirectional, c.dropout,
            c.constrained_decoding, tuple(self.tags), c.scheme,
        )
        self.model = Tagger(self.bundle.model, self.bundle.hidden_size, spec).to(self.device)
        if self.device.type == "cpu":
            use_cpu_dropout(self.model)  # PyTorch's CPU dropout masks cost ~10% of a step
        self.peak_flops = device_peak_flops(self.device)  # None on CPU or an unknown card: no MFU
        self.flops_per_token = self._flops_per_token() if self.peak_flops else None
        self.optimizer, self.groups = build_optimizer(
            self.model, c.lr, c.weight_decay, c.head_lr_mult, c.crf_lr_mult
        )
        self.batches_per_epoch = math.ceil(math.ceil(len(self.train_set.examples) / c.batch_size) / self.dist.world)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / c.grad_accum)
        # With a time budget the clock, not --epochs, ends training (--max-steps still caps it).
        self.epoch_limit = UNLIMITED_EPOCHS if c.time_budget else c.epochs
        self.total_steps = self.steps_per_epoch * self.epoch_limit
        if c.max_steps:
            self.total_steps = min(c.max_steps, self.total_steps)
        self.budget = TimeBudget(c.time_budget) if c.time_budget else None
        self.scheduler = linear_schedule(
            self.optimizer, self.total_steps, c.warmup_ratio, self.budget.progress if self.budget else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.forward_model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if c.compile:
            if self.device.type == "cpu":
                warn("--compile on CPU: compiling can take many minutes before the first step "
                     "(ALBERT-tiny on one thread had not started after 10); it is meant for GPUs")
            self.forward_model = torch.compile(self.forward_model, dynamic=True)

        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "batch_in_epoch": 0, "best_f1": -1.0, "best_step": 0,
            "evals_without_gain": 0, "train_seconds": 0.0, "tokens": 0, "budget_seconds": 0.0,
            "stopped_by": None,
        }
        if self.resume:
            self._load_resume_state()
        elif self.dist.main:
            save_config(c, self.run_dir / "config.yaml")
            write_json(
                self.run_dir / "labels.json",
                {"labels": data.labels, "tags": self.tags, "scheme": c.scheme, "data": data.info},
            )
            write_json(self.run_dir / FINGERPRINT_FILE, self._data_fingerprint())
            from bertner.models.encoder import save_encoder

            save_encoder(self.bundle, self.run_dir / "encoder")
            write_text(self.run_dir / "metrics.jsonl", "")

    def _data_fingerprint(self) -> dict[str, Any]:
        """The exact train and dev data of this run, so evaluate can tell when it is given documents it trained on."""
        data_dir = Path(self.config.data)
        dev = data_dir / "dev.jsonl"
        return {
            "train": data_fingerprint(data_dir / "train.jsonl", [w.doc for w in self.data.train]),
            "dev": data_fingerprint(dev, [w.doc for w in self.data.dev]) if dev.exists() else None,
        }

    def _warn_if_data_changed(self) -> None:
        """A resumed run should go on with the data it started with."""
        recorded = load_fingerprint(self.run_dir)
        if recorded is None:
            return
        now = self._data_fingerprint()
        changed = [split for split in ("train", "dev")
                   if (recorded.get(split) or {}).get("sha256") != (now[split] or {}).get("sha256")]
        if changed:
            warn(f"{' and '.join(f'{split}.jsonl' for split in changed)} in {self.config.data} changed since "
                 f"{self.run_dir} started; it goes on with the data as it is now")

    def _flops_per_token(self) -> float | None:
        """For MFU: the model's FLOPs per trained token."""
        head = nn.ModuleList([m for m in (self.model.gru, self.model.classifier) if m is not None])
        try:
            return flops_per_token(self.bundle.model.config, head, [len(e) for e in self.train_set.examples])
        except AttributeError:  # an encoder config without BERT's shape fields: no estimate
            return None

    def _mfu(self, tokens_per_second: float) -> float | None:
        """Per GPU: the tokens counted here are all processes' together."""
        if self.flops_per_token is None:
            return None
        return mfu(tokens_per_second / self.dist.world, self.flops_per_token, self.peak_flops)

    def _check_resume_config(self) -> None:
        from bertner.runs import load_config

        if not (self.run_dir / "config.yaml").exists():
            raise BertnerError(f"{self.run_dir} holds no run to resume (no config.yaml)")
        saved = load_config(self.run_dir)
        # The saved settings win: a resumed run is the same run.
        saved.output = str(self.run_dir)
        self.config = saved

    def _load_resume_state(self) -> None:
        from bertner.engine.checkpoint import restore_state

        state = load_checkpoint(self.run_dir, self.model)
        restore_state(self.run_dir, state, self.optimizer, self.scheduler, self.scaler)
        self.state = {**self.state, **state["loop"]}  # keys added since the checkpoint was written keep their start values
        if self.dist.main:
            self._warn_if_data_changed()
        info(f"resuming {self.run_dir} at step {self.state['step']} (epoch {self.state['epoch'] + 1})")

    def describe(self) -> None:
        """What is about to happen: variant, data, parameters and the optimiser groups' rates."""
        from rich.table import Table

        c = self.config
        err.print(
            f"[bold]{c.variant}[/bold] on {self.bundle.name} ({self.aligner.mode} alignment), "
            f"{count_parameters(self.model):,} parameters, device {self.device} ({self.precision})",
            highlight=False,
        )
        steps = f"{c.batch_size}x{c.grad_accum}"
        plan = (f"{c.time_budget:g} minutes of training ({self.steps_per_epoch:,} steps of {steps} an epoch)"
                if self.budget else f"{self.total_steps:,} steps of {steps}")
        err.print(
            f"train {len(self.data.train):,} windows -> {len(self.train_set.examples):,} inputs, "
            f"dev {len(self.data.dev):,} windows; {len(self.data.labels)} labels; {plan}; run directory {self.run_dir}",
            highlight=False,
        )
        table = Table(title="optimiser groups", title_justify="left")
        for column in ("group", "learning rate", "weight decay", "parameters"):
            table.add_column(column, justify="right" if column != "group" else "left")
        for g in self.groups:
            table.add_row(g.name, f"{g.lr:.2e}", f"{g.weight_decay:g}", f"{g.parameters:,}")
        err.print(table)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Scores on the whole dev set; `on_batch(k)` is told each batch's number of inputs."""
        from bertner.metrics import entity_scores

        tagged = tag_windows(
            self.model, self.dev_set, self.tags, self.aligner, self.config.batch_size * 2,
            self.device, self.autocast, with_loss=True, on_batch=on_batch,
        )
        shards = self.dist.gather((tagged.spans, tagged.loss))
        # Shard k holds windows k, k + world, ...: interleave the shards back into order.
        predicted = [None] * len(self.data.dev)
        for rank, (spans, _) in enumerate(shards):
            predicted[rank :: self.dist.world] = spans
        losses = [loss for spans, loss in shards if spans]
        texts = [w.text for w in self.data.dev]
        gold = char_tags(texts, [w.spans for w in self.data.dev])
        scores = entity_scores(gold, char_tags(texts, predicted)).to_dict()
        self.dev_predicted = predicted  # kept with the best checkpoint (dev_predictions.jsonl)
        return {"dev_loss": sum(losses) / max(1, len(losses)), **scores}

    def _evaluate_and_keep_best(self, epoch: int, tracker: Tracker) -> bool:
        """Evaluate on the whole dev set; keep the best weights; return True to stop early."""
        s = self.state
        if not self.data.dev:
            if self.dist.main:
                save_weights(self.model, self.run_dir / "model.safetensors")
            s["best_step"] = s["step"]
            return False
        started = time.perf_counter()
        with tracker.evaluating(len(self.dev_set.examples)) as on_batch:
            record = {"step": s["step"], "epoch": epoch + 1, **self.evaluate(on_batch)}
        f1 = record["micro"]["f1"]
        record["is_best"] = f1 > s["best_f1"]
        if record["is_best"]:
            s.update(best_f1=f1, best_step=s["step"], evals_without_gain=0, best_record=record)
            if self.dist.main:
                save_weights(self.model, self.run_dir / "model.safetensors")
                write_dev_predictions(self.run_dir, self.data.dev, self.dev_predicted)
        else:
            s["evals_without_gain"] += 1
        tracker.log_eval(record)
        self._save_resumable()
        if self.budget:
            self.budget.note_evaluation(time.perf_counter() - started)
            s["budget_seconds"] = self.budget.elapsed()
        stop = bool(self.config.patience) and s["evals_without_gain"] >= self.config.patience
        if stop:
            s["stopped_by"] = "patience"
        return stop

    def _plan_budget(self, tokens_per_second: float, tracker: Tracker) -> None:
        """Keep time for the final evaluation and show the step count the budget will reach."""
        if self.budget.evaluation_seconds is None and self.data.dev:
            # Before the first evaluation: a forward pass over dev costs about a third of a training step per token.
            dev_tokens = sum(len(e) for e in self.dev_set.examples) * self.dist.world
            self.budget.evaluation_estimate = dev_tokens / max(tokens_per_second, 1.0) / 3 + 1.0
        planned = self.budget.planned_steps(self.state["step"])
        if planned:
            tracker.set_total(min(planned, self.total_steps))

    def _save_resumable(self) -> None:
        if not self.dist.main:
            return
        save_checkpoint(
            self.run_dir,
            self.model,
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loop": dict(self.state),
            },
        )

    # -- the loop -----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signal.Signals(signum).name

    def fit(self) -> dict[str, Any]:
        try:
            self.setup()
        except BaseException:
            self.close(setup_failed=True)
            raise
        try:
            return self._fit()
        finally:
            self.close()

    def close(self, setup_failed: bool = False) -> None:
        """Give the run directory's lock back; a folder this trainer created and never got to train in goes too."""
        if self.lock is not None:
            self.lock.release()
            if setup_failed and self._created_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _fit(self) -> dict[str, Any]:
        if self.show and self.dist.main:
            self.describe()
        c, s = self.config, self.state
        total = None if self.budget and not c.max_steps else self.total_steps  # a budget's steps are known later
        tracker = Tracker(self.run_dir, total, enabled=self.dist.main, start_step=s["step"])
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(tracker)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as e:
            if not isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) and not is_out_of_memory(e):
                raise
            where = "GPU" if isinstance(e, torch.cuda.OutOfMemoryError) else "memory"
            raise TrainingError(
                f"out of {where} at step {s['step']}: lower --batch-size (now {c.batch_size}) or "
                f"--max-length (now {c.max_length}), and raise --grad-accum to keep the effective batch"
            ) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            tracker.close()
        return self._finish()

    def _loop(self, tracker: Tracker) -> None:
        c, s = self.config, self.state
        model, optimizer = self.forward_model, self.optimizer
        model.train()
        lengths = [len(e) for e in self.train_set.examples]
        pin = self.device.type == "cuda"
        check_every = 1 if self.device.type == "cpu" else c.log_every  # a .item() is free on CPU
        loss_sum = torch.zeros((), device=self.device)
        loss_count, window_tokens, window_seconds = 0, 0, 0.0
        # Training time runs from batch to batch, collation included; evaluations and
        # checkpoints are left out (the clock restarts after them).
        tick = time.perf_counter()

        def clock() -> None:
            nonlocal tick, window_seconds
            now = time.perf_counter()
            s["train_seconds"] += now - tick
            window_seconds += now - tick
            tick = now
        stop = s["step"] >= self.total_steps
        if self.budget:
            self.budget.start(s["budget_seconds"])
            stop = stop or self.budget.exhausted()
        start_epoch = s["epoch"]
        for epoch in range(start_epoch, self.epoch_limit):
            if stop:
                break
            s["epoch"] = epoch
            batches = length_grouped_batches(lengths, c.batch_size, c.seed, epoch)
            if self.dist.enabled:
                # Every process computes the same order and takes its share; repeating a few
                # batches gives every process the same count, so their steps stay in lockstep.
                batches += batches[: (-len(batches)) % self.dist.world]
                batches = self.dist.shard(batches)
            skip = s["batch_in_epoch"]  # resuming mid-epoch: the same order, minus what was done
            micro = 0
            for b_index, batch in enumerate(iterate_batches(self.train_set, batches[skip:], self.aligner, True, pin)):
                batch = batch.to(self.device)
                with self.autocast():
                    loss = model(batch.input_ids, batch.attention_mask, batch.labels) / c.grad_accum
                self.scaler.scale(loss).backward()
                loss_sum += loss.detach()
                loss_count += 1
                window_tokens += batch.tokens * self.dist.world
                s["tokens"] += batch.tokens * self.dist.world
                micro += 1
                s["batch_in_epoch"] = skip + b_index + 1
                last_batch = s["batch_in_epoch"] == len(batches)
                if micro % c.grad_accum and not last_batch:
                    continue
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                self.scaler.step(optimizer)
                self.scaler.update()
                optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                s["step"] += 1
                clock()
                tracker.step(s["step"], epoch + 1)
                if self.budget:
                    s["budget_seconds"] = self.budget.elapsed()

                if s["step"] % check_every == 0 and not torch.isfinite(loss_sum):
                    kept = (
                        f"the best weights so far (step {s['best_step']}) are kept in {self.run_dir}/model.safetensors"
                        if (self.run_dir / "model.safetensors").exists() else "no evaluation had run yet, so no weights were kept"
                    )
                    raise TrainingError(
                        f"the loss became {loss_sum.item()} by step {s['step']}; training stopped and {kept}. "
                        "Try a lower --lr or --crf-lr-mult"
                    )
                if s["step"] % c.log_every == 0 or s["step"] == self.total_steps:
                    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
                    speed = window_tokens / max(window_seconds, 1e-9)
                    if self.budget:
                        self._plan_budget(speed, tracker)
                    tracker.log_train(s["step"], (loss_sum / max(1, loss_count)).item() * c.grad_accum, lrs,
                                      speed, self._mfu(speed))
                    loss_sum.zero_()
                    loss_count, window_tokens, window_seconds = 0, 0, 0.0
                if c.eval_every and s["step"] % c.eval_every == 0:
                    if self._evaluate_and_keep_best(epoch, tracker):
                        info(f"early stopping: no better dev F1 in {c.patience} evaluations")
                        return
                    model.train()
                    tick = time.perf_counter()
                elif c.save_every and s["step"] % c.save_every == 0:
                    self._save_resumable()
                    tick = time.perf_counter()
                if s["step"] >= self.total_steps:
                    s["stopped_by"] = "max_steps" if c.max_steps and s["step"] >= c.max_steps else "epochs"
                    stop = True
                    break
                if self.budget and self.budget.exhausted():
                    s["stopped_by"] = "time_budget"
                    stop = True
                    break
                # Checked after this step's evaluation, so a resumed run never misses one; a
                # signal at the very last step simply lets the run finish.
                if self.dist.any(self._stop_signal is not None, self.device):
                    self._stop_signal = self._stop_signal or "a signal to another process"
                    self._save_resumable()
                    raise TrainingError(
                        f"stopped by {self._stop_signal} at step {s['step']}; checkpoint saved. "
                        f"Continue with: bertner train --output {self.run_dir} --resume"
                    )
            if s["batch_in_epoch"] >= len(batches):
                # Mark the epoch done before the evaluation saves a checkpoint, so a resume
                # from it starts the next epoch instead of repeating this one.
                s["epoch"], s["batch_in_epoch"] = epoch + 1, 0
            if not (c.eval_every and s["step"] % c.eval_every == 0):
                if self._evaluate_and_keep_best(epoch, tracker):
                    info(f"early stopping: no better dev F1 in {c.patience} evaluations")
                    return
                model.train()
                tick = time.perf_counter()

    def _finish(self) -> dict[str, Any]:
        s = self.state
        c = self.config
        best = s.get("best_record", {})
        speed = s["tokens"] / max(s["train_seconds"], 1e-9)
        run_mfu = self._mfu(speed)
        summary = {
            "format": RUN_FORMAT,
            "variant": c.variant,
            "encoder": self.bundle.name,
            "alignment": self.aligner.mode,
            "crf": c.crf,
            "gru": c.gru,
            "crf_lr_mult": c.crf_lr_mult,
            "head_lr_mult": c.head_lr_mult,
            "lr": c.lr,
            "seed": c.seed,
            "epochs": c.epochs,
            "steps": s["step"],
            "epochs_done": round(s["step"] / max(1, self.steps_per_epoch), 2),
            "time_budget_minutes": c.time_budget or None,
            "budget_seconds_used": round(s["budget_seconds"], 1) if self.budget else None,
            "stopped_by": s["stopped_by"] or "epochs",
            "best_f1": max(s["best_f1"], 0.0) if self.data.dev else None,
            "best_step": s["best_step"],
            "best_precision": best.get("micro", {}).get("precision"),
            "best_recall": best.get("micro", {}).get("recall"),
            "best_per_type": best.get("per_type", {}),
            "train_seconds": round(s["train_seconds"], 2),
            "tokens_per_second": round(speed, 1),
            "mfu": None if run_mfu is None else round(run_mfu, 4),  # None on CPU or an unknown GPU
            "parameters": count_parameters(self.model),
            "device": str(self.device),
            "precision": self.precision,
            "train_windows": len(self.data.train),
            "dev_windows": len(self.data.dev),
            "run_dir": str(self.run_dir),
        }
        if self.dist.main:
            write_json(self.run_dir / "summary.json", summary)
            shutil.rmtree(self.run_dir / "checkpoint", ignore_errors=True)
        return summary


def train(config: TrainConfig, resume: bool = False, force: bool = False, show: bool = True) -> dict[str, Any]:
    """Train one model as configured and return its summary (also written to the run directory)."""
    try:
        return Trainer(config, resume=resume, force=force, show=show).fit()
    finally:
        close_distributed()
