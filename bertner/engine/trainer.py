"""The training loop: windows in, a run directory out.

Read top to bottom: set up (device, data, model, optimiser), then the loop (forward, backward,
step, log, evaluate, checkpoint), then the summary. Each engine feature is a few lines with a
name: precision, gradient accumulation, evaluation, early stopping, checkpoints, resume.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import signal
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertner.config import TrainConfig
from bertner.data.jsonl import read_windows
from bertner.engine.batching import (
    encode_windows,
    iterate_batches,
    length_grouped_batches,
)
from bertner.engine.averaging import WeightAverage
from bertner.engine.budget import TimeBudget
from bertner.engine.device import autocast_for, pick_device, pick_precision, training_threads
from bertner.engine.distributed import close_distributed, init_distributed
from bertner.engine.flops import device_peak_flops, flops_per_token, mfu
from bertner.engine.optim import build_optimizer, clip_gradients, linear_schedule
from bertner.engine.tracking import Tracker, TrainView
from bertner.errors import BertnerError, DataError, OutputError, RunError, TrainingError
from bertner.fileio import check_writable, write_failure
from bertner.metrics import entity_scores
from bertner.models.cpu_dropout import use_cpu_dropout
from bertner.models.encoder import (
    RecurrentShape,
    build_bilstm_encoder,
    build_tiny_encoder,
    load_encoder,
    pretrained_embeddings,
)
from bertner.embeddings import PretrainedVectors
from bertner.lexicon import LexiconMatcher, read_lexicon
from bertner.lock import FolderLock
from bertner.models.lexicon import WORD_DIM, LexiconEmbedding
from bertner.models.softword import SOFTWORD_DIM, SoftwordEmbedding
from bertner.softword import Segmenter
from bertner.models.tagger import Tagger, head_spec
from bertner.predict import char_tags, tag_windows
from bertner.runs import FINGERPRINT_FILE, RunDir, Summary, check_output_place, data_fingerprint, data_info_problem, read_json
from bertner.spans import Window
from bertner.tags import label_set_to_tags

log = logging.getLogger(__name__)

UNLIMITED_EPOCHS = 1_000_000  # "until the time budget ends"


@dataclass
class Step:
    """What happened at one optimiser step, or at an epoch's end: what the loop's consumers read and mark."""

    step: int
    epoch: int  # counted from 1, as shown
    epoch_end: bool = False  # the epoch's batches are done (or training stops inside it)
    evaluation: dict[str, Any] | None = None  # the dev record, when this step was evaluated
    is_best: bool = False
    untimed: bool = False  # a consumer did slow work here (evaluation, checkpoint): not training time
    stop: str | None = None  # why training ends here: patience, pruned, max_steps, epochs, time_budget


@dataclass
class LogWindow:
    """Train loss, tokens and seconds since the last log line."""

    loss_sum: torch.Tensor
    batches: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, loss: torch.Tensor, tokens: int) -> None:
        self.loss_sum += loss
        self.batches += 1
        self.tokens += tokens

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.batches, self.tokens, self.seconds = 0, 0, 0.0

# ----------------------------------------------------------------------------- set-up helpers

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
        log.warning(f"{dev_path}: dev has labels that train never saw: {listed}; the model cannot learn them, "
             "so their entities count as misses in dev F1")
    return Datasets(train, dev, train_labels, data_info(data_dir))


def data_info(data_dir: Path) -> dict[str, Any]:
    """How preprocess made the data (discontinuous policy, format, max_chars), checked; kept with the run."""
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
    try:
        return read_json(path)
    except BertnerError as e:
        raise DataError(str(e)) from None


def build_encoder(config: TrainConfig, train: list[Window], extra_dim: int = 0, pretrained: PretrainedVectors | None = None):
    """The encoder `config.model` names; `extra_dim`: features the bilstm reads beside each character (the lexicon's
    and softword's); `pretrained`: the bilstm's starting vectors (`--init-embeddings`, read by `pretrained_embeddings`)."""
    if config.model == "bilstm":
        shape = RecurrentShape(
            char_dim=config.char_dim, bigram_dim=config.bigram_dim, hidden=config.rnn_hidden,
            layers=config.rnn_layers, cell=config.rnn_cell, dropout=config.rnn_dropout,
        )
        return build_bilstm_encoder(
            (w.text for w in train), shape, pretrained, whitespace_tokens=config.whitespace_tokens,
            extra_dim=extra_dim,
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
    def __init__(self, config: TrainConfig, resume: bool = False, force: bool = False,
                 on_start: Callable[[Trainer], None] | None = None, view: TrainView | None = None,
                 on_evaluation: Callable[[int, float], bool] | None = None, lock: FolderLock | None = None):
        """`on_start(trainer)`: told once set-up is done, before the first step (the CLI shows the plan);
        `view`: shows progress (the CLI's bar or log lines); without one, training shows nothing;
        `on_evaluation(step, dev_f1)`: told after each dev evaluation (in the main process); True stops the run
        there as pruned (a search's pruner: `bertner.search.pruning_callback`): the best checkpoint is kept and
        the run is finished, with `pruned: true` in its summary.
        `lock`: the run directory's lock when the caller already holds it (a sweep worker); the trainer
        releases it when it is done, as its own."""
        config.validate()
        self.config = config
        self.resume = resume
        self.on_start = on_start
        self.view = view
        self.on_evaluation = on_evaluation
        self.run_dir = Path(config.output or default_run_name(config))
        config.output = str(self.run_dir)
        self.run = RunDir(self.run_dir)
        self.force = force
        self.stop_signal: str | None = None  # the name of the signal that stopped training, once one did
        self.lock = lock  # bertner.lock.FolderLock on the run directory, held from setup to the end of fit
        self._created_run_dir = False
        self._threads_before: int | None = None  # torch's thread count, given back when the trainer closes

    # -- set-up: device, data, model, optimiser ------------------------------------------------
    def setup(self) -> None:
        check_writable(self.run_dir, folder=True)  # before the data is read: a bad --output fails at once
        if self.resume:
            self._check_resume_config()
        self._check_output_place()
        self._setup_device()
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "batch_in_epoch": 0, "best_f1": -1.0, "best_step": 0,
            "evals_without_gain": 0, "train_seconds": 0.0, "tokens": 0, "budget_seconds": 0.0,
            "stopped_by": None,
        }
        if self.resume:
            self._load_resume_state()
        elif self.dist.main:
            self._write_run_start()

    def _setup_device(self) -> None:
        c = self.config
        self.dist = init_distributed(c.device)
        seed_everything(c.seed)
        self.device = pick_device(c.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        threads = training_threads(c.num_threads, c.model, self.device)
        if threads:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(threads)
        self.precision = pick_precision(c.precision, self.device)
        self.autocast = autocast_for(self.precision, self.device)

    def _setup_data(self) -> None:
        """Windows in, the run directory locked, the encoder (its tokenizer), then the encoded inputs."""
        c = self.config
        data = load_datasets(Path(c.data))
        # Read before the run folder exists, so that a bad lexicon file (or no jieba) leaves nothing behind.
        lexicon = read_lexicon(c.lexicon) if c.lexicon and not self.resume else None
        # Only the vectors of the lexicon's terms are kept: a general word2vec file can hold millions of words.
        self.pretrained = (pretrained_embeddings(c.init_embeddings, set(lexicon.terms) if lexicon else set())
                           if c.init_embeddings and not self.resume else None)
        self.segmenter = Segmenter() if c.softword else None
        if self.dist.main:
            self._created_run_dir = not self.run_dir.exists()
            self.lock = self.run.prepare(force=self.force, resume=self.resume, lock=self.lock)
        self.dist.barrier()
        self.data = data
        self.tags = label_set_to_tags(data.labels, c.scheme)
        self.tag_to_id = {t: i for i, t in enumerate(self.tags)}
        self.lexicon = self.run.load_lexicon(c) if self.resume else lexicon
        self.matcher = LexiconMatcher(self.lexicon) if self.lexicon is not None else None
        # Matched once: the counts fit the lexicon, then the same matches give the features.
        train_matches = self.matcher.match([w.text for w in data.train]) if self.matcher is not None else None
        if self.resume:
            # The run's own encoder folder: the same vocabulary, no download; the checkpoint
            # supplies the weights. Never with the folder's own code, whatever config.yaml says.
            self.bundle = self.run.load_encoder()
            if self.segmenter is not None:
                self.run.check_softword(self.segmenter)
        else:
            if self.lexicon is not None:
                words = self.pretrained.words if self.pretrained else None
                pretrained_words = words.index if words is not None and words.vectors.shape[1] >= WORD_DIM else ()
                self.lexicon.fit(self.matcher.entry_counts(train_matches), pretrained_words)
            extra_dim = (c.lexicon_dim if self.lexicon else 0) + (SOFTWORD_DIM if self.segmenter else 0)
            self.bundle = build_encoder(c, data.train, extra_dim, self.pretrained)
        self.aligner = self.bundle.aligner
        for flag, used in (("--lexicon", self.lexicon is not None), ("--softword", c.softword)):
            if used and self.aligner.mode != "char":
                raise BertnerError(f"{flag} needs char alignment (one character, one token); {self.bundle.name} "
                                   "has a vocabulary that is not Chinese, so it aligns by subwords")
        c.resolve(self.bundle.hidden_size)  # the family's recipe for what was left out; saved resolved
        max_length = min(c.max_length, self.bundle.max_positions)
        train_lexicon = self.matcher.features(train_matches) if self.matcher is not None else None
        train_softword = self.segmenter.tags([w.text for w in data.train]) if self.segmenter is not None else None
        self.train_set = encode_windows(data.train, self.aligner, max_length, self.tag_to_id, c.scheme,
                                        lexicon=train_lexicon, softword=train_softword)
        # Each process evaluates its share of the dev windows; the predictions are gathered.
        dev = self.dist.shard(data.dev)
        dev_texts = [w.text for w in dev]
        dev_lexicon = self.matcher.text_features(dev_texts) if self.matcher is not None else None
        dev_softword = self.segmenter.tags(dev_texts) if self.segmenter is not None else None
        self.dev_set = encode_windows(dev, self.aligner, max_length, self.tag_to_id, c.scheme,
                                      lexicon=dev_lexicon, softword=dev_softword)
        if self.train_set.inexact_entities:
            log.info(
                f"{self.train_set.inexact_entities} training entities have a boundary inside a token "
                "and cannot be tagged exactly with --alignment subword"
            )

    def _setup_model(self) -> None:
        c = self.config
        lexicon = LexiconEmbedding(self.lexicon, c.lexicon_dim) if self.lexicon is not None else None
        if lexicon is not None and self.pretrained is not None and len(self.pretrained.words):
            self._init_lexicon_words(lexicon)
        softword = SoftwordEmbedding() if self.segmenter is not None else None
        self.model = Tagger(self.bundle.model, self.bundle.hidden_size, head_spec(c, self.tags, c.scheme), lexicon,
                            softword).to(self.device)
        if self.device.type == "cpu":
            use_cpu_dropout(self.model)  # PyTorch's CPU dropout masks cost ~10% of a step
        self.peak_flops = device_peak_flops(self.device)  # None on CPU or an unknown card: no MFU
        self.flops_per_token = self._flops_per_token() if self.peak_flops else None
        self.forward_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if c.compile:
            if self.device.type == "cpu":
                log.warning("--compile on CPU: compiling can take many minutes before the first step "
                     "(ALBERT-tiny on one thread had not started after 10); it is meant for GPUs")
            # The encoder only, in place (state-dict names unchanged): the CRF's Python loop over
            # positions would most likely be unrolled and recompiled for every batch length (BERT-base + CRF
            # logged no step in 150 s on an H200 with the whole tagger compiled).
            self.model.encoder.compile(dynamic=True)

    def _init_lexicon_words(self, lexicon: LexiconEmbedding) -> None:
        words = self.pretrained.words
        copied = lexicon.init_words(self.lexicon, words)
        if not copied and words.vectors.shape[1] < WORD_DIM:
            log.warning(f"--init-embeddings {self.pretrained.source}: its word vectors are {words.vectors.shape[1]} wide, "
                        f"narrower than the lexicon's {WORD_DIM}; the word vectors start at random")
            return
        log.info(f"--init-embeddings {self.pretrained.source}: {copied:,} of the lexicon's {self.lexicon.word_count - 1:,} "
                 f"word vectors start from it ({len(words):,} of its terms have vectors there)")

    def _setup_optimizer(self) -> None:
        """Optimiser groups, the step plan (epochs, --max-steps or a time budget), the schedule and the scaler."""
        c = self.config
        self.optimizer, self.groups = build_optimizer(self.model, c.lr, c.weight_decay, c.head_lr_mult, c.crf_lr_mult)
        self.batches_per_epoch = math.ceil(math.ceil(len(self.train_set.examples) / c.batch_size) / self.dist.world)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / c.grad_accum)
        # With a time budget the clock, not --epochs, ends training (--max-steps still caps it).
        self.epoch_limit = UNLIMITED_EPOCHS if c.time_budget else c.epochs
        self.total_steps = self.steps_per_epoch * self.epoch_limit
        if c.max_steps:
            self.total_steps = min(c.max_steps, self.total_steps)
        self.budget = TimeBudget(c.time_budget, final_evaluations=2 if c.swa else 1) if c.time_budget else None
        self.average = WeightAverage(self.model) if c.swa else None
        self.scheduler = linear_schedule(
            self.optimizer, self.total_steps, c.warmup_ratio, self.budget.progress if self.budget else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")

    def _write_run_start(self) -> None:
        """What a run directory holds from its first step: settings, labels, data fingerprint, encoder."""
        self.run.write_config(self.config)
        self.run.write_labels(self.data.labels, self.tags, self.config.scheme, self.data.info)
        self.run.write_fingerprint(self._data_fingerprint())
        self.run.save_encoder(self.bundle)
        if self.lexicon is not None:
            self.run.save_lexicon(self.lexicon)
        if self.segmenter is not None:
            self.run.save_softword(self.segmenter)
        self.run.start_metrics()

    def _data_fingerprint(self) -> dict[str, Any]:
        """The exact train and dev data of this run, so evaluate can tell when it is given documents it trained on."""
        data_dir = Path(self.config.data)
        dev = data_dir / "dev.jsonl"
        return {
            "train": data_fingerprint(data_dir / "train.jsonl", [w.doc for w in self.data.train]),
            "dev": data_fingerprint(dev, [w.doc for w in self.data.dev]) if dev.exists() else None,
        }

    def _refuse_changed_data(self) -> None:
        """A resumed run goes on with the data it started with, or not at all.

        On other data its data_fingerprint.json would stay the old one (so later leakage checks pass while
        dev may hold documents it trained on) and its best F1 would mix two dev sets.
        """
        recorded = self.run.load_fingerprint()
        if recorded is None:
            return  # a run from before fingerprints: nothing to compare with
        now = self._data_fingerprint()
        changed = [split for split in ("train", "dev")
                   if (recorded.get(split) or {}).get("sha256") != (now[split] or {}).get("sha256")]
        if changed:
            raise RunError(
                f"{' and '.join(f'{split}.jsonl' for split in changed)} in {self.config.data} changed since {self.run_dir} "
                f"started ({FINGERPRINT_FILE}); a resumed run must go on with its own data: restore it, or train a new "
                "run (another --output, or --force without --resume)")

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

    def _check_output_place(self) -> None:
        """The run directory may be a run (this one) but never one of training's inputs, inside one, or inside another run."""
        c = self.config
        inputs = [c.data, c.init_embeddings, None if c.model in ("tiny", "bilstm") else c.model]
        check_output_place(self.run_dir, [i for i in inputs if i], may_be_run=True)

    def _check_resume_config(self) -> None:
        if not self.run.config_file.exists():
            raise BertnerError(f"{self.run_dir} holds no run to resume (no config.yaml)")
        saved = self.run.load_config()
        # The saved settings win: a resumed run is the same run.
        saved.output = str(self.run_dir)
        self.config = saved

    def _load_resume_state(self) -> None:
        self._refuse_changed_data()  # every process: they all stop, or none
        state = self.run.load_checkpoint(self.model)
        self.run.restore_checkpoint(state, self.optimizer, self.scheduler, self.scaler)
        self.state = {**self.state, **state["loop"]}  # keys added since the checkpoint was written keep their start values
        if self.average is not None and "weight_average" in state:
            self.average.load_state(state["weight_average"])
        log.info(f"resuming {self.run_dir} at step {self.state['step']} (epoch {self.state['epoch'] + 1})")

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Scores on the whole dev set; `on_batch(k)` is told each batch's number of inputs."""
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

    def _plan_budget(self, tokens_per_second: float) -> None:
        """Keep time for the final evaluation (estimated until the first one has run)."""
        if self.budget.evaluation_seconds is None and self.data.dev:
            # Before the first evaluation: a forward pass over dev costs about a third of a training step per token.
            dev_tokens = sum(len(e) for e in self.dev_set.examples) * self.dist.world
            self.budget.evaluation_estimate = dev_tokens / max(tokens_per_second, 1.0) / 3 + 1.0

    def _save_resumable(self) -> None:
        if not self.dist.main:
            return
        self.run.save_checkpoint(
            self.model,
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loop": dict(self.state),
                **({"weight_average": self.average.state()} if self.average is not None else {}),
            },
        )

    # -- a whole run ---------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        """The first signal stops after the step in flight; a second stops at once.

        A step can take minutes (the first one compiles with --compile), and a stop that waits for
        it must not look like a stop that was ignored.
        """
        name = signal.Signals(signum).name
        if self.stop_signal is not None:
            raise TrainingError(
                f"stopped at once by a second {name} after {self.state['step']} steps, without a checkpoint "
                f"(what earlier evaluations and checkpoints saved in {self.run_dir} stays)"
            )
        self.stop_signal = name
        log.warning("%s: stopping after the step in flight and saving a checkpoint (send it again to stop at once)",
                    name)

    def fit(self) -> Summary:
        try:
            with self._write_errors(started=False):
                self.setup()
        except BaseException:
            self.close(setup_failed=True)
            raise
        try:
            with self._write_errors(started=True):
                return self._fit()
        finally:
            self.close()

    @contextmanager
    def _write_errors(self, started: bool) -> Iterator[None]:
        """A failed write into the run directory (a full disk), wherever it happens (TensorBoard, metrics,
        the encoder's files), as one line; one from an atomic write already names its file."""
        try:
            yield
        except Exception as error:
            reason = write_failure(error)
            if reason is None:
                raise
            resume = (f"; free space and continue with: bertner train --output {self.run_dir} --resume"
                      if self.run.checkpoint_dir.exists() else "")
            outcome = f"the run is unfinished{resume}" if started else "training did not start"
            raise OutputError(f"cannot write into {self.run_dir}: {reason}; {outcome}") from None

    def close(self, setup_failed: bool = False) -> None:
        """Give the run directory's lock back, and torch its thread count; a folder this trainer created and
        never got to train in goes too."""
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)  # a notebook or sweep process goes on as it was
            self._threads_before = None
        if self.lock is not None:
            self.lock.release()
            if setup_failed and self._created_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _fit(self) -> Summary:
        if self.on_start is not None and self.dist.main:
            self.on_start(self)
        c, s = self.config, self.state
        total = None if self.budget and not c.max_steps else self.total_steps  # a budget's steps are not known
        tracker = Tracker(self.run, total, enabled=self.dist.main, start_step=s["step"], view=self.view,
                          budget=self.budget)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.train_loop(tracker)
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

    # -- the loop: steps, and the consumers that act on each ----------------------------------
    def steps(self) -> Iterator[Step]:
        """The training arithmetic: forward, backward, optimiser step. Yields after each step and at each epoch's end.

        What happens around a step (logging, evaluation, checkpoints, stopping rules, signals) is
        done by consumers of what is yielded (`train_loop`); a consumer that sets `stop` ends training.
        Training time runs from batch to batch; what consumers spend on evaluations and checkpoints
        (`untimed`) is left out.
        """
        s = self.state
        self.forward_model.train()
        self.window = LogWindow(torch.zeros((), device=self.device))
        if self.budget:
            self.budget.start(s["budget_seconds"])
        # A budget too small for one step (--time-budget 1e-9) still trains one: a run of 0 steps
        # would be marked finished with nothing learnt. A resumed run whose budget is spent trains none.
        if s["step"] >= self.total_steps or (self.budget and s["step"] and self.budget.exhausted()):
            return
        for epoch in range(s["epoch"], self.epoch_limit):
            s["epoch"] = epoch
            batches = self._epoch_batches(epoch)
            stop = None
            for step in self._epoch_steps(epoch, batches):
                yield step
                stop = step.stop
                if stop:
                    break
            if stop in ("patience", "pruned"):  # stopped by an evaluation: no further one at the epoch's end
                return
            if s["batch_in_epoch"] >= len(batches):
                # Mark the epoch done before its evaluation saves a checkpoint, so a resume from it
                # starts the next epoch instead of repeating this one.
                s["epoch"], s["batch_in_epoch"] = epoch + 1, 0
            end = Step(s["step"], epoch + 1, epoch_end=True)
            yield end
            if stop or end.stop:
                return

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        batches = length_grouped_batches([len(e) for e in self.train_set.examples], self.config.batch_size,
                                         self.config.seed, epoch)
        if self.dist.enabled:
            # Every process computes the same order and takes its share; repeating a few
            # batches gives every process the same count, so their steps stay in lockstep.
            batches += batches[: (-len(batches)) % self.dist.world]
            batches = self.dist.shard(batches)
        return batches

    def _epoch_steps(self, epoch: int, batches: list[list[int]]) -> Iterator[Step]:
        c, s = self.config, self.state
        skip = s["batch_in_epoch"]  # resuming mid-epoch: the same order, minus what was done
        pin = self.device.type == "cuda"
        tick = time.perf_counter()
        for index, batch in enumerate(iterate_batches(self.train_set, batches[skip:], self.aligner, True, pin)):
            self._forward_backward(batch)
            s["batch_in_epoch"] = skip + index + 1
            if (index + 1) % c.grad_accum and s["batch_in_epoch"] != len(batches):
                continue
            self._optimizer_step()
            now = time.perf_counter()
            s["train_seconds"] += now - tick
            self.window.seconds += now - tick
            if self.budget:
                s["budget_seconds"] = self.budget.elapsed()
            step = Step(s["step"], epoch + 1)
            yield step
            tick = time.perf_counter() if step.untimed else now

    def _forward_backward(self, batch: Any) -> None:
        batch = batch.to(self.device)
        with self.autocast():
            loss = self.forward_model(batch.input_ids, batch.attention_mask, batch.labels, batch.lexicon,
                                      batch.softword) / self.config.grad_accum
        self.scaler.scale(loss).backward()
        tokens = batch.tokens * self.dist.world
        self.window.add(loss.detach(), tokens)
        self.state["tokens"] += tokens

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.model.parameters(), self.config.max_grad_norm, read_norm_free=self.device.type == "cpu")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state["step"] += 1

    def train_loop(self, tracker: Tracker, evaluate: bool = True) -> None:
        """Train until a consumer stops it. `evaluate=False` (benchmarks): no dev evaluation, no weights kept."""
        self.tracker = tracker
        consumers: list[Callable[[Step], None]] = [self.show_progress, self.check_finite, self.log_train]
        if self.average is not None:
            consumers.append(self.average_weights)
        if evaluate:
            consumers.append(self.evaluate_if_due)
        consumers += [self.checkpoint_if_due, self.stop_at_limits, self.stop_on_signal]
        for step in self.steps():
            for consume in consumers:
                consume(step)
                if step.stop:
                    break
        if evaluate and self.average is not None and self.state["stopped_by"] != "pruned":  # a pruned run is given up
            self._evaluate_average()

    def show_progress(self, step: Step) -> None:
        if not step.epoch_end:
            self.tracker.step(step.step, step.epoch)

    def check_finite(self, step: Step) -> None:
        """A loss that became NaN or infinite ends the run (checked each step on CPU, where a .item() is free)."""
        check_every = 1 if self.device.type == "cpu" else self.config.log_every
        if step.epoch_end or step.step % check_every or torch.isfinite(self.window.loss_sum):
            return
        kept = (
            f"the best weights so far (step {self.state['best_step']}) are kept in {self.run_dir}/model.safetensors"
            if self.run.has_weights() else "no evaluation had run yet, so no weights were kept"
        )
        raise TrainingError(
            f"the loss became {self.window.loss_sum.item()} by step {step.step}; training stopped and {kept}. "
            "Try a lower --lr or --crf-lr-mult"
        )

    def log_train(self, step: Step) -> None:
        """Every --log-every steps (and the last): mean loss, learning rates, speed and MFU since the last log."""
        if step.epoch_end or (step.step % self.config.log_every and step.step != self.total_steps):
            return
        w = self.window
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        speed = w.tokens / max(w.seconds, 1e-9)
        if self.budget:
            self._plan_budget(speed)
        self.tracker.log_train(step.step, (w.loss_sum / max(1, w.batches)).item() * self.config.grad_accum, lrs,
                          speed, self._mfu(speed))
        w.reset()

    def average_weights(self, step: Step) -> None:
        """--swa: after each step in the last SHARE of training, add the weights to the running mean."""
        if step.epoch_end:
            return
        done = self.budget.progress() if self.budget else step.step / max(1, self.total_steps)
        if done > 1.0 - self.config.swa:
            self.average.update()

    def _evaluate_average(self) -> None:
        """Score the averaged weights on dev; keep them as the run's weights where they beat the best checkpoint."""
        s, count = self.state, self.average.count
        if count < 2 or not self.data.dev:
            log.info(f"--swa: {count} step(s) averaged{'' if self.data.dev else ' and no dev set'}; the average is not used")
            return
        started = time.perf_counter()
        with self.average.swapped_in():
            with self.tracker.evaluating(len(self.dev_set.examples)) as on_batch:
                record = self.evaluate(on_batch)
            f1 = record["micro"]["f1"]
            kept = f1 > s["best_f1"]
            if kept and self.dist.main:
                self.run.save_best_weights(self.model)
                self.run.write_dev_predictions(self.data.dev, self.dev_predicted)
        s["averaged"] = {"steps": count, "f1": f1, "kept": kept, "best_checkpoint_f1": s["best_f1"]}
        if kept:
            s.update(best_f1=f1, best_step=s["step"],
                     best_record={"step": s["step"], "epoch": self.epochs_done(), **record})
        if self.budget:
            s["budget_seconds"] = self.budget.elapsed()
        log.info(f"--swa: the mean of the last {count} steps' weights scores dev F1 {f1:.4f} against the best "
                 f"checkpoint's {s['averaged']['best_checkpoint_f1']:.4f}: " + ("kept" if kept else "not kept")
                 + f" ({time.perf_counter() - started:.0f} s)")

    def evaluate_if_due(self, step: Step) -> None:
        """Every --eval-every steps and at each epoch's end (unless that step just had one): keep the best, stop early."""
        eval_every = self.config.eval_every
        on_schedule = bool(eval_every) and self.state["step"] % eval_every == 0
        if on_schedule == step.epoch_end:
            return
        step.untimed = True
        self._evaluate_and_keep_best(step)
        self.forward_model.train()

    def _evaluate_and_keep_best(self, step: Step) -> None:
        s = self.state
        if not self.data.dev:
            if self.dist.main:
                self.run.save_best_weights(self.model)
            s["best_step"] = s["step"]
            return
        started = time.perf_counter()
        with self.tracker.evaluating(len(self.dev_set.examples)) as on_batch:
            record = {"step": s["step"], "epoch": self.epochs_done(), **self.evaluate(on_batch)}
        f1 = record["micro"]["f1"]
        record["is_best"] = step.is_best = f1 > s["best_f1"]
        step.evaluation = record
        if step.is_best:
            s.update(best_f1=f1, best_step=s["step"], evals_without_gain=0, best_record=record)
            if self.dist.main:
                self.run.save_best_weights(self.model)
                self.run.write_dev_predictions(self.data.dev, self.dev_predicted)
        else:
            s["evals_without_gain"] += 1
        self.tracker.log_eval(record)
        self._save_resumable()
        if self.budget:
            self.budget.note_evaluation(time.perf_counter() - started)
            s["budget_seconds"] = self.budget.elapsed()
        if self.config.patience and s["evals_without_gain"] >= self.config.patience:
            s["stopped_by"] = step.stop = "patience"
            log.info(f"early stopping: no better dev F1 in {self.config.patience} evaluations")
        elif self._pruned(s["step"], f1):
            s["stopped_by"] = step.stop = "pruned"
            log.info(f"pruned at step {s['step']} (dev F1 {f1:.4f}): stopped early, the best checkpoint is kept")

    def _pruned(self, step: int, f1: float) -> bool:
        """Whether `on_evaluation` stops the run here; asked in the main process and told to all, so they stop together."""
        if self.on_evaluation is None:
            return False
        return self.dist.any(self.dist.main and bool(self.on_evaluation(step, f1)), self.device)

    def epochs_done(self) -> float:
        """Epochs trained so far, fractional: what an evaluation and the summary report (a budget stops mid-epoch)."""
        return round(self.state["step"] / max(1, self.steps_per_epoch), 2)

    def checkpoint_if_due(self, step: Step) -> None:
        """Every --save-every steps that did not just save one with an evaluation."""
        save_every = self.config.save_every
        if step.epoch_end or step.untimed or not save_every or step.step % save_every:
            return
        self._save_resumable()
        step.untimed = True

    def stop_at_limits(self, step: Step) -> None:
        """The last planned step (--epochs or --max-steps), or the end of the time budget."""
        c, s = self.config, self.state
        if step.epoch_end:
            return
        if s["step"] >= self.total_steps:
            s["stopped_by"] = step.stop = "max_steps" if c.max_steps and s["step"] >= c.max_steps else "epochs"
        elif self.budget and self.budget.exhausted():
            s["stopped_by"] = step.stop = "time_budget"

    def stop_on_signal(self, step: Step) -> None:
        """Ctrl-C or SIGTERM (to any process): save a checkpoint and stop with the command that resumes.

        Consumed after the step's evaluation and the limits, so a resumed run never misses an
        evaluation and a signal at the very last step simply lets the run finish.
        """
        if step.epoch_end or not self.dist.any(self.stop_signal is not None, self.device):
            return
        self.stop_signal = self.stop_signal or "a signal to another process"
        self._save_resumable()
        raise TrainingError(
            f"stopped by {self.stop_signal} at step {step.step}; checkpoint saved. "
            f"Continue with: bertner train --output {self.run_dir} --resume"
        )

    def _finish(self) -> Summary:
        s = self.state
        c = self.config
        best = s.get("best_record", {})
        speed = s["tokens"] / max(s["train_seconds"], 1e-9)
        run_mfu = self._mfu(speed)
        summary = Summary(
            variant=c.variant,
            encoder=self.bundle.name,
            alignment=self.aligner.mode,
            crf=c.crf,
            gru=c.gru,
            crf_lr_mult=c.crf_lr_mult,
            head_lr_mult=c.head_lr_mult,
            lr=c.lr,
            seed=c.seed,
            epochs=None if self.budget else c.epochs,  # a budget's run has no planned number of epochs
            steps=s["step"],
            epochs_done=self.epochs_done(),
            time_budget_minutes=c.time_budget or None,
            budget_seconds_used=round(s["budget_seconds"], 1) if self.budget else None,
            stopped_by=s["stopped_by"] or "epochs",
            pruned=s["stopped_by"] == "pruned",
            best_f1=max(s["best_f1"], 0.0) if self.data.dev else None,
            averaged_steps=s.get("averaged", {}).get("steps"),
            averaged_f1=s.get("averaged", {}).get("f1"),
            averaged_kept=s.get("averaged", {}).get("kept"),
            best_step=s["best_step"],
            best_precision=best.get("micro", {}).get("precision"),
            best_recall=best.get("micro", {}).get("recall"),
            best_per_type=best.get("per_type", {}),
            train_seconds=round(s["train_seconds"], 2),
            tokens_per_second=round(speed, 1),
            mfu=None if run_mfu is None else round(run_mfu, 4),  # None on CPU or an unknown GPU
            parameters=count_parameters(self.model),
            device=str(self.device),
            precision=self.precision,
            train_windows=len(self.data.train),
            dev_windows=len(self.data.dev),
            run_dir=str(self.run_dir),
        )
        if self.dist.main:
            self.run.write_summary(summary)
            self.run.remove_checkpoint()
        return summary


def train(config: TrainConfig, resume: bool = False, force: bool = False,
          on_start: Callable[[Trainer], None] | None = None, view: TrainView | None = None) -> Summary:
    """Train one model as configured and return its summary (also written to the run directory)."""
    try:
        return Trainer(config, resume=resume, force=force, on_start=on_start, view=view).fit()
    finally:
        close_distributed()
