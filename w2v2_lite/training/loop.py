"""One training loop for pretraining and CTC fine-tuning.

    trainer = Trainer(TrainConfig(task="pretrain", train_manifest=..., output_dir="runs/tiny"))
    trainer.train()          # resumes from runs/tiny/checkpoint_last.pt when there is one

What both tasks share: AdamW, a learning-rate schedule per update (warm-up and linear
decay for pretraining, tri-stage for fine-tuning), gradient accumulation and data
parallelism normalised like fairseq, gradient clipping, bf16 autocast where the
hardware has it, JSON-lines logs and a progress bar, health monitors, checkpoints that
resume exactly, and Ctrl-C / SIGTERM handling.

**How an update is normalised.** fairseq sums the loss over every micro-batch of every
worker and divides the gradient by the total "sample size": masked steps in
pretraining, utterances in fine-tuning (`sentence_avg`). Averaging per micro-batch
would weigh a micro-batch with few masked steps as much as one with many, so `update`
does what fairseq does: backward of each micro-batch's summed loss, then, after the
gradients of all workers are added, a division by the global sample size. Accumulating
k micro-batches, or k workers, then gives the gradient of the one large batch (the
diversity and feature-penalty terms are batch statistics, weighted per micro-batch as
in fairseq).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import FineTuningConfig, ModelConfig
from ..data.audio import SAMPLE_RATE
from ..models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from ..quantizer import gumbel_temperature_at
from . import distributed
from .checkpoint import latest_checkpoint, load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from .monitors import HealthMonitor
from .precision import autocast, resolve_precision
from .schedules import gumbel_decay_for, tri_stage, warmup_linear_decay

TASKS = ("pretrain", "finetune")


@dataclass
class TrainConfig:
    """Everything about a run that is not the model. Defaults suit `tiny` on a laptop CPU.

    task: "pretrain" (contrastive, unlabelled audio) or "finetune" (CTC, transcripts).
    model: `ModelConfig` fields; for pretraining, over `model_preset`'s values. For
        fine-tuning, `init_from` names a pretrained release or checkpoint (None: start
        from scratch with the same architecture) and `recipe` the fine-tuning recipe.
    max_batch_samples: audio samples per micro-batch (padded size); `update_freq`
        micro-batches make one update.
    crop_samples: pretraining crops utterances to at most this many samples.
    warmup_fraction: pretraining warm-up share of `max_updates` (fairseq: 32k of 400k).
    gumbel_anneal_fraction: share of the run over which the Gumbel temperature falls
        from its start to its floor; None keeps the model config's per-update decay.
    clip_norm: clip the gradient's total norm to this (0: no clipping).
    tensorboard: also write every logged record to OUTPUT_DIR/tensorboard, when the
        `tensorboard` package is installed (`tensorboard --logdir runs` shows them).
    """

    task: str = "pretrain"
    train_manifest: str = "data/generated/experiment/pretrain.tsv"
    valid_manifest: str | None = "data/generated/experiment/dev.tsv"
    output_dir: str = "runs/pretrain-tiny"
    model_preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    recipe: str = "10m"
    max_updates: int = 2000
    learning_rate: float = 5e-4
    warmup_fraction: float = 0.08
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    max_batch_samples: int = 8 * 64_000
    max_batch_size: int | None = 8
    crop_samples: int | None = 64_000
    update_freq: int = 1
    clip_norm: float = 10.0
    gumbel_anneal_fraction: float | None = 0.7
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    seed: int = 1
    num_workers: int = 0
    log_every: int = 1
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 2
    max_bad_updates: int = 20
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if self.task not in TASKS:
            fail("task", f"choose one of {TASKS}")
        for name in ("max_updates", "max_batch_samples", "update_freq", "log_every", "eval_every", "save_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "must be a positive integer")
        if not self.learning_rate > 0:
            fail("learning_rate", "must be > 0")
        if not 0 <= self.warmup_fraction < 1:
            fail("warmup_fraction", "must lie in [0, 1)")
        if self.gumbel_anneal_fraction is not None and not 0 < self.gumbel_anneal_fraction <= 1:
            fail("gumbel_anneal_fraction", "must lie in (0, 1], or be None for the model's own decay")
        if self.precision not in ("auto", "fp32", "bf16"):
            fail("precision", "choose auto, fp32 or bf16")
        if self.clip_norm < 0:
            fail("clip_norm", "must be >= 0 (0 turns clipping off)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------- one update
def health_monitor(config: TrainConfig, model_config: ModelConfig) -> HealthMonitor:
    """The health monitor of a run of `config` training a model of `model_config`."""
    pretrain = config.task == "pretrain"
    return HealthMonitor(
        num_entries=model_config.num_code_groups * model_config.num_codes_per_group if pretrain else 0,
        num_negatives=model_config.num_negatives + model_config.cross_sample_negatives if pretrain else 0,
        max_bad_updates=config.max_bad_updates,
        # a tiny model sits near chance for the first fifth of a short run
        warmup=max(200, config.max_updates // 4),
        blank_updates=max(1000, model_config.freeze_finetune_updates + 500))


def summed_loss(model: nn.Module, inputs: dict[str, Any], task: str) -> tuple[Tensor, Tensor, Any]:
    """One micro-batch: (loss summed over its sample, its sample size, the model output).

    Pretraining: the sample is the masked steps (`PreTrainingOutput.loss` is per masked
    step). Fine-tuning: the utterances for the "sentence" CTC normalisation, the target
    characters for "token", and 1 otherwise (the loss as the model reduces it).
    """
    out = model(**inputs)
    if task == "pretrain":
        size = torch.tensor(float(out.num_masked))
    else:
        reduction = model.config.ctc_loss_reduction
        labels = inputs["labels"]
        size = {"sentence": torch.tensor(float(labels.shape[0])),
                "token": (labels >= 0).sum().float().cpu()}.get(reduction, torch.tensor(1.0))
    return out.loss * size.to(out.loss.device), size, out


def accumulate(model: nn.Module, micro_batches: list[dict[str, Any]], task: str,
               precision: str = "fp32", device: torch.device | str = "cpu") -> tuple[float, float, list[Any]]:
    """Backward of every micro-batch's summed loss; returns (loss sum, sample size, outputs).

    The caller divides the gradients by the (global) sample size; see the module docstring.
    """
    total_loss, total_size, outputs = 0.0, 0.0, []
    for inputs in micro_batches:
        with autocast(precision, device):
            loss, size, out = summed_loss(model, inputs, task)
        loss.backward()
        total_loss += float(loss.detach())
        total_size += float(size)
        outputs.append(out)
    return total_loss, total_size, outputs


def scale_gradients(parameters: list[nn.Parameter], factor: float) -> None:
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.mul_(factor)


# ---------------------------------------------------------------- trainer
class Trainer:
    """Build the model, data, optimiser and schedule of a `TrainConfig`; `train()` runs it."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.device = torch.device(distributed.pick_device(config.device))
        self.precision = resolve_precision(config.precision, self.device)
        self.output_dir = Path(config.output_dir)
        torch.manual_seed(config.seed)
        self.model = self._build_model().to(self.device)
        distributed.broadcast_parameters(self.model)
        if config.compile:
            self.model.wav2vec2.feature_encoder.compile()
            self.model.wav2vec2.encoder.compile()
        self.tokenizer, self.train_data, self.collator, self.sampler = self._build_data(config.train_manifest)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        weight_decay = config.weight_decay if config.task == "pretrain" else 0.0
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, betas=config.adam_betas,
                                           eps=config.adam_eps, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        torch.manual_seed(config.seed * 1000 + self.rank)  # dropout and Gumbel noise differ between workers
        cfg = self.model.config
        self.monitor = health_monitor(config, cfg)
        start, floor, decay = cfg.gumbel_temperature
        if config.gumbel_anneal_fraction is not None:
            decay = gumbel_decay_for(start, floor, int(config.gumbel_anneal_fraction * config.max_updates))
        self.temperature_schedule = (start, floor, decay)
        self.update, self.epoch, self.position, self.best = 0, 0, 0, None
        self.stop_requested = False
        self.history: list[dict[str, Any]] = []

    # --------------------------------------------------------- building
    def _build_model(self) -> nn.Module:
        cfg = self.config
        if cfg.task == "pretrain":
            preset = getattr(ModelConfig, cfg.model_preset)
            return Wav2Vec2ForPreTraining(preset(**cfg.model))
        from ..data.tokenizer import CharTokenizer

        vocab_size = len(CharTokenizer())
        overrides = dict(cfg.model)
        if cfg.init_from is None:  # from scratch: a fresh body has nothing to keep, so all of it trains
            overrides = {"freeze_finetune_updates": 0, "feature_grad_mult": 1.0} | overrides
            pretrained = Wav2Vec2ForPreTraining(getattr(ModelConfig, cfg.model_preset)(**overrides))
        else:
            pretrained = load_pretrained_body(cfg.init_from)
        recipe = FineTuningConfig.preset(cfg.recipe, pretrained.config).with_updates(cfg.max_updates)
        model = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab_size, recipe=recipe, **overrides)
        self.recipe = recipe
        return model

    def _build_data(self, manifest: str, shuffle: bool = True) -> tuple[Any, Any, Any, Any]:
        from ..data.corpora import read_manifest
        from ..data.dataset import Collator, LengthBucketSampler, SpeechDataset
        from ..data.tokenizer import CharTokenizer

        cfg = self.config
        labelled = cfg.task == "finetune"
        tokenizer = CharTokenizer() if labelled else None
        crop = cfg.crop_samples if not labelled else None
        dataset = SpeechDataset(read_manifest(manifest), tokenizer, max_samples=crop, seed=cfg.seed)
        if len(dataset) == 0:
            raise ValueError(f"{manifest} has no utterance long enough to train on")
        sampler = LengthBucketSampler(dataset.lengths, max(cfg.max_batch_samples, max(dataset.lengths)),
                                      cfg.max_batch_size, shuffle=shuffle, seed=cfg.seed)
        collator = Collator.for_model(self.model.config, labelled=labelled, seed=cfg.seed)
        return tokenizer, dataset, collator, sampler

    def lr_scale(self, update: int) -> float:
        cfg = self.config
        if cfg.task == "pretrain":
            return warmup_linear_decay(update, max(1, int(cfg.warmup_fraction * cfg.max_updates)), cfg.max_updates)
        return tri_stage(update, cfg.max_updates, self.recipe.phase_ratio, final_scale=self.recipe.final_lr_scale)

    # ------------------------------------------------------------- data
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This worker's batches of `epoch`: every worker gets the same number."""
        self.sampler.set_epoch(epoch)
        batches = self.sampler.batches()
        per_worker = len(batches) // self.world_size
        if per_worker == 0:
            raise ValueError(f"{len(batches)} batches per epoch cannot feed {self.world_size} workers; use more data "
                             "or smaller batches (max_batch_samples)")
        return batches[: per_worker * self.world_size][self.rank::self.world_size]

    def _batches(self) -> Iterator[Any]:
        """Batches from the saved position on, epoch after epoch; `self.epoch`/`position` follow."""
        from torch.utils.data import DataLoader

        while True:
            batches = self._epoch_batches(self.epoch)
            self.train_data.set_epoch(self.epoch)
            self.collator.epoch = self.epoch
            # Its own generator: a DataLoader draws a seed for its workers when it starts, and
            # from the global RNG that would shift dropout and Gumbel noise after a resume.
            loader = DataLoader(self.train_data, batch_sampler=batches[self.position:], collate_fn=self.collator,
                                num_workers=self.config.num_workers,
                                generator=torch.Generator().manual_seed(self.config.seed + self.epoch))
            for batch in loader:
                self.position += 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def _inputs(self, batch: Any) -> dict[str, Any]:
        batch = batch.to(self.device)
        inputs = batch.model_inputs()
        if self.config.task == "pretrain":
            inputs["generator"] = self.generator
            inputs.pop("labels", None)
        return inputs

    # ------------------------------------------------------------ update
    def update_step(self, micro_batches: list[Any]) -> dict[str, Any] | None:
        """One optimiser update over `micro_batches`; the logged record, or None if skipped."""
        cfg = self.config
        model = self.model
        model.train()
        if cfg.task == "pretrain":
            model.set_gumbel_temperature(gumbel_temperature_at(self.update, self.temperature_schedule))
        else:
            model.set_num_updates(self.update)
        lr = cfg.learning_rate * self.lr_scale(self.update)  # set from the update count: nothing else to resume
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        inputs = [self._inputs(batch) for batch in micro_batches]
        loss_sum, size, outputs = accumulate(model, inputs, cfg.task, self.precision, self.device)
        trainable = self._parameters_to_update()
        totals = distributed.all_reduce_sum(torch.tensor([loss_sum, size], dtype=torch.float64))
        loss_sum, size = float(totals[0]), float(totals[1])
        distributed.all_reduce_gradients(trainable)
        finite = math.isfinite(loss_sum) and size > 0
        if finite:
            scale_gradients(trainable, 1.0 / size)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_norm if cfg.clip_norm > 0
                                                             else float("inf")))
            finite = math.isfinite(grad_norm)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            for message in self.monitor.non_finite(self.update):
                self._warn(message)
            self.update += 1  # a skipped update still counts: the schedules move on
            return None
        self.optimizer.step()
        self.update += 1
        seconds = sum(float(b.lengths.sum()) for b in micro_batches) / SAMPLE_RATE
        wall = time.perf_counter() - started
        record = {"update": self.update, "loss": loss_sum / size, "lr": lr, "grad_norm": grad_norm,
                  "sample_size": size, "audio_seconds_per_second": seconds * self.world_size / max(wall, 1e-9),
                  "wall_s": wall}
        record.update(self._diagnostics(outputs, micro_batches))
        warnings = self.monitor.check(self.update, record)
        for message in warnings:
            self._warn(message)
        if warnings:  # kept in log.jsonl too, where an experiment's table reads them
            record["warnings"] = warnings
        return record

    def _parameters_to_update(self) -> list[nn.Parameter]:
        """Trainable parameters that take part in this update (the head alone while the body is frozen)."""
        if self.config.task == "finetune" and self.model.body_frozen:
            return list(self.model.lm_head.parameters())
        return [p for p in self.model.parameters() if p.requires_grad]

    def _diagnostics(self, outputs: list[Any], micro_batches: list[Any]) -> dict[str, float]:
        if self.config.task == "pretrain":
            weights = [out.num_masked for out in outputs]
            total = sum(weights)

            def mean(name: str) -> float:
                return sum(float(torch.as_tensor(getattr(out, name)).detach()) * w
                           for out, w in zip(outputs, weights)) / total

            # Continuous targets (no quantizer) leave the diversity loss, perplexities and
            # temperature None: they are left out of the record, not logged as numbers.
            names = ("contrastive_loss", "diversity_loss", "feature_penalty", "accuracy", "code_perplexity",
                     "softmax_perplexity", "temperature", "mask_fraction")
            return {name: outputs[0].temperature if name == "temperature" else mean(name)
                    for name in names if getattr(outputs[0], name) is not None}
        blank = self.model.config.blank_id
        frames = [out.logits.argmax(dim=-1) for out in outputs]
        real = [torch.arange(f.shape[1], device=f.device)[None, :] < out.output_lengths[:, None]
                for f, out in zip(frames, outputs)]
        blanks = sum(int(((f == blank) & r).sum()) for f, r in zip(frames, real))
        return {"blank_fraction": blanks / max(1, sum(int(r.sum()) for r in real)),
                "body_frozen": float(self.model.body_frozen)}

    # ---------------------------------------------------------- evaluate
    def evaluate(self, manifest: str | None = None) -> dict[str, float]:
        """Dev-set metrics of the model being trained (see `evaluate`); {} without a dev set."""
        manifest = manifest or self.config.valid_manifest
        if manifest is None:
            return {}
        return evaluate(self.model, manifest, self.config.task, self.precision, self.device,
                        self.config.crop_samples)

    # -------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "update": self.update,
                "epoch": self.epoch, "position": self.position, "best": self.best, "rng": rng_states(self.generator),
                "train_config": self.config.to_dict(), "model_config": self.model.config.to_dict(),
                "bad_updates": self.monitor.bad_total, "monitor": self.monitor.state()}

    def save(self, is_best: bool = False) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.output_dir, self.state(), self.update, self.config.keep_last, is_best)

    def resume(self, path: Path | None = None) -> bool:
        """Load the run's last checkpoint (or `path`); False when there is none."""
        path = path or latest_checkpoint(self.output_dir)
        if path is None:
            return False
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.update, self.epoch, self.position, self.best = (state["update"], state["epoch"], state["position"],
                                                             state["best"])
        self.monitor.bad_total = state["bad_updates"]
        self.monitor.load_state(state.get("monitor", {}))  # checkpoints from before it kept no monitor
        restore_rng_states(state["rng"], self.generator)
        return True

    # --------------------------------------------------------------- run
    def train(self) -> list[dict[str, Any]]:
        """Run to `max_updates` (resuming when a checkpoint exists); returns the logged records."""
        cfg = self.config
        resumed = self.resume()
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            if resumed:
                self._forget_logged_after(self.update)
        log = open(self.output_dir / "log.jsonl", "a") if self.rank == 0 else None
        board = open_tensorboard(self.output_dir / "tensorboard", self.update + 1) \
            if self.rank == 0 and cfg.tensorboard else None
        bar = self._progress_bar(resumed)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._request_stop)
        batches = self._batches()
        try:
            while self.update < cfg.max_updates and not self.stop_requested:
                record = self.update_step([next(batches) for _ in range(cfg.update_freq)])
                if record is None:
                    continue
                record |= {"task": cfg.task, "epoch": self.epoch, "precision": self.precision}
                if self.update % cfg.eval_every == 0 or self.update == cfg.max_updates:
                    began = time.perf_counter()
                    record |= {f"dev_{k}": v for k, v in self.evaluate().items()}
                    record["eval_wall_s"] = time.perf_counter() - began  # wall_s is the update's alone
                self.history.append(record)
                if log is not None and (self.update % cfg.log_every == 0 or "dev_accuracy" in record
                                        or "dev_cer" in record or "warnings" in record):
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if board is not None:
                        write_scalars(board, record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(self._postfix(record), refresh=False)
                if self.update % cfg.save_every == 0 or self.update == cfg.max_updates:
                    self.save(self._is_best(record))
            if self.stop_requested:
                self.save()
                self._warn(f"stopped at update {self.update}; the checkpoint in {self.output_dir} resumes it")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
            if board is not None:
                board.close()
        return self.history

    def _forget_logged_after(self, update: int) -> None:
        """Drop log records past the checkpoint resumed from: a run killed without its
        Ctrl-C save logged updates that it is about to make again."""
        path = self.output_dir / "log.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if json.loads(line)["update"] <= update]
        if len(kept) < len(lines):
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text("".join(kept))
            os.replace(temporary, path)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        self._warn(f"{signal.Signals(signum).name}: finishing this update, then saving a checkpoint "
                   "(press Ctrl-C again to stop at once)")

    def _is_best(self, record: dict[str, Any]) -> bool:
        score = record.get("dev_cer", None)
        score = -record["dev_accuracy"] if score is None and "dev_accuracy" in record else score
        if score is None or (self.best is not None and score >= self.best):
            return False
        self.best = score
        return True

    def _progress_bar(self, resumed: bool) -> Any:
        if self.rank != 0 or not self.config.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.max_updates, initial=self.update, unit="upd", dynamic_ncols=True,
                    desc=f"{self.config.task}{' (resumed)' if resumed else ''}")

    @staticmethod
    def _postfix(record: dict[str, Any]) -> dict[str, str]:
        keys = ("loss", "accuracy", "code_perplexity", "blank_fraction", "lr", "audio_seconds_per_second")
        short = {"code_perplexity": "ppl", "blank_fraction": "blank", "audio_seconds_per_second": "audio_x"}
        return {short.get(k, k): f"{record[k]:.3g}" for k in keys if k in record}

    def _warn(self, message: str) -> None:
        if self.rank == 0:
            print(f"w2v2-lite: {message}", file=sys.stderr, flush=True)


def open_tensorboard(folder: Path, first_update: int) -> Any | None:
    """A TensorBoard `SummaryWriter` into `folder`, or None when tensorboard is not installed.

    A resumed run logs again the updates after its checkpoint: events from
    `first_update` on are purged, as the JSON log's later records replace earlier ones.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=first_update)


def write_scalars(board: Any, record: dict[str, Any]) -> None:
    """Every number of a log record as a scalar at its update: train/loss, dev/accuracy, ..."""
    for key, value in record.items():
        if key in ("update", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        tag = f"dev/{key[4:]}" if key.startswith("dev_") else f"train/{key}"
        board.add_scalar(tag, value, record["update"])
    board.flush()


@torch.no_grad()
def evaluate(model: nn.Module, manifest: str, task: str, precision: str = "fp32",
             device: torch.device | str = "cpu", crop_samples: int | None = None) -> dict[str, Any]:
    """Metrics of `model` on a manifest, in eval mode (its mode is restored after).

    Pretraining: contrastive loss, accuracy and code perplexity per masked step, with
    crops of `crop_samples` and masks and distractors drawn from a fixed seed, so that
    evaluations compare. Fine-tuning: CER and WER of greedy decoding, and one example.
    """
    from ..data.corpora import read_manifest
    from ..data.dataset import Collator, SpeechDataset
    from ..data.tokenizer import CharTokenizer
    from ..decoding import greedy_decode
    from ..metrics import character_error_rate, word_error_rate

    labelled = task == "finetune"
    tokenizer = CharTokenizer() if labelled else None
    dataset = SpeechDataset(read_manifest(manifest), tokenizer, max_samples=None if labelled else crop_samples,
                            seed=0)
    if len(dataset) == 0:
        raise ValueError(f"{manifest} has no utterance long enough to evaluate on (pretraining needs 2 s)")
    was_training = model.training
    model.eval()
    collate = Collator.for_model(model.config, labelled=labelled, seed=0)
    generator = torch.Generator().manual_seed(0)  # the same masks and distractors at every evaluation
    totals: dict[str, float] = {}
    references, hypotheses = [], []
    # A group_norm encoder takes no padding mask (like fairseq's BASE): its normalisation
    # would count a padded utterance's zeros, and the decoder would read the padded frames.
    # So such a model sees one utterance at a time, and its scores do not depend on batching.
    batch_size = 8 if collate.return_attention_mask or not labelled else 1
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]).to(device)
        with autocast(precision, device):
            if labelled:
                out = model(batch.waveform, batch.attention_mask)
            else:
                out = model(batch.waveform, batch.attention_mask, generator=generator)
        if labelled:
            hypotheses += greedy_decode(out.logits, out.output_lengths, tokenizer)
            references += [dataset.utterances[int(i)].transcript for i in batch.indices]
        else:
            n = out.num_masked
            for name in ("contrastive_loss", "accuracy", "code_perplexity"):
                if getattr(out, name) is not None:  # no code perplexity with continuous targets
                    totals[name] = totals.get(name, 0.0) + float(getattr(out, name)) * n
            totals["masked"] = totals.get("masked", 0.0) + n
    model.train(was_training)
    if labelled:
        return {"cer": character_error_rate(references, hypotheses), "wer": word_error_rate(references, hypotheses),
                "example": hypotheses[0] if hypotheses else ""}
    masked = totals.pop("masked")
    return {name: value / masked for name, value in totals.items()}


def load_pretrained_body(source: str) -> Wav2Vec2ForPreTraining:
    """A pretrained model from a release folder (safetensors) or a training checkpoint."""
    path = Path(source)
    if path.is_dir():
        from ..pretrained import load_pretrained

        model = load_pretrained(path)
    else:
        state = load_checkpoint(path)
        model = Wav2Vec2ForPreTraining(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
    if not isinstance(model, Wav2Vec2ForPreTraining):
        raise ValueError(f"{source} holds a {type(model).__name__}; fine-tuning starts from a pretrained "
                         "Wav2Vec2ForPreTraining")
    return model
