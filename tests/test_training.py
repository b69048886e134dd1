"""The training loop: schedules, precision, fairseq-normalised accumulation and data
parallelism, exact resume, checkpoint safety, signals and health monitors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from w2v2_lite.config import ModelConfig
from w2v2_lite.data import CorpusConfig, make_corpus
from w2v2_lite.models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2v2_lite.negatives import sample_negatives
from w2v2_lite.training import checkpoint
from w2v2_lite.training.loop import TrainConfig, Trainer, accumulate
from w2v2_lite.training.monitors import HealthMonitor, TrainingDiverged, replay
from w2v2_lite.training import precision as precision_module
from w2v2_lite.training.precision import cpu_has_bf16, resolve_precision
from w2v2_lite.training.schedules import gumbel_decay_for, tri_stage, warmup_linear_decay

from tolerances import assert_close_to_scale

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0,
             layerdrop=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training-corpus")
    config = CorpusConfig.notebooks(pretrain_minutes=0.6, labelled_minutes=(0.4,), dev_minutes=0.1,
                                    test_minutes=0.05, train_speakers=4, eval_speakers=1)
    make_corpus(root, config, workers=2, progress=False)
    return root


def _pretrain_config(corpus: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(train_manifest=str(corpus / "pretrain.tsv"), valid_manifest=str(corpus / "dev.tsv"),
                  output_dir=str(out), model=dict(num_layers=1), max_updates=4, eval_every=2, save_every=2,
                  max_batch_samples=4 * 32_000, max_batch_size=4, crop_samples=32_000, precision="fp32",
                  progress=False, warmup_fraction=0.25)
    return TrainConfig(**(values | overrides))


def _finetune_config(corpus: Path, out: Path, **overrides) -> TrainConfig:
    labelled = next(p for p in corpus.glob("train-*.tsv"))
    values = dict(task="finetune", train_manifest=str(labelled), valid_manifest=str(corpus / "dev.tsv"),
                  output_dir=str(out), model=dict(num_layers=1, mask_time_prob=0.0, mask_channel_prob=0.0,
                                                  layerdrop=0.0, activation_dropout=0.0),
                  max_updates=2, eval_every=2, save_every=2, max_batch_samples=2 * 100_000, max_batch_size=2,
                  precision="fp32", progress=False, learning_rate=1e-3, recipe="100h")
    return TrainConfig(**(values | overrides))


# ------------------------------------------------------------------ schedules
def test_pretraining_lr_warms_up_then_decays_to_zero():
    scales = [warmup_linear_decay(u, 10, 100) for u in range(100)]
    assert scales[0] == pytest.approx(0.1) and scales[9] == pytest.approx(1.0)
    assert scales[10] == pytest.approx(1.0) and scales[55] == pytest.approx(0.5)
    assert warmup_linear_decay(100, 10, 100) == 0.0
    assert all(a <= b for a, b in zip(scales[:10], scales[1:10]))


def test_tri_stage_is_fairseqs():
    """Warm up from 0.01 over 10%, hold over 40%, decay exponentially to 0.05 over 50%."""
    assert tri_stage(0, 1000) == pytest.approx(0.01)
    assert tri_stage(100, 1000) == 1.0 and tri_stage(499, 1000) == 1.0
    assert tri_stage(750, 1000) == pytest.approx(math.sqrt(0.05))  # halfway through the decay
    assert tri_stage(1000, 1000) == pytest.approx(0.05) and tri_stage(1200, 1000) == 0.05


def test_gumbel_decay_reaches_the_floor_when_asked():
    decay = gumbel_decay_for(2.0, 0.5, 700)
    assert 2.0 * decay ** 700 == pytest.approx(0.5)
    assert gumbel_decay_for(2.0, 2.0, 10) == 1.0


# ------------------------------------------------------------------ precision
def test_precision_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(precision_module.PRECISION_VARIABLE, raising=False)
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    pays = cpu_has_bf16() and precision_module.cpu_bf16_speedup() >= precision_module.BF16_MIN_SPEEDUP
    assert resolve_precision("auto", "cpu") == ("bf16" if pays else "fp32")
    with pytest.raises(ValueError, match="choose one of"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("has_bf16, speedup, expected", [(True, 2.5, "bf16"), (True, 0.6, "fp32"),
                                                         (False, 2.5, "fp32")])
def test_precision_auto_takes_bf16_only_where_it_is_faster(monkeypatch, has_bf16, speedup, expected):
    # A CPU with bf16 flags whose bf16 kernels run slower than fp32 (seen on a Xeon VM) keeps fp32.
    monkeypatch.delenv(precision_module.PRECISION_VARIABLE, raising=False)
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: has_bf16)
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda: speedup)
    assert resolve_precision("auto", "cpu") == expected


def test_the_environment_decides_what_auto_becomes_and_nothing_else(monkeypatch):
    # A grid begun in fp32 on a CPU where bf16 lost goes on in fp32 on one where bf16 pays.
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda: 2.5)
    monkeypatch.setenv(precision_module.PRECISION_VARIABLE, "fp32")
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setenv(precision_module.PRECISION_VARIABLE, "bf16")
    assert resolve_precision("auto", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setenv(precision_module.PRECISION_VARIABLE, "half")
    with pytest.raises(ValueError, match="W2V2_LITE_PRECISION='half': set it to fp32 or bf16"):
        resolve_precision("auto", "cpu")


def test_bf16_speedup_is_a_timed_ratio():
    speedup = precision_module.cpu_bf16_speedup()
    assert 0.01 < speedup < 100 and precision_module.cpu_bf16_speedup() == speedup  # measured once, cached


# --------------------------------------------------- accumulation = one batch
def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _normalised_grads(model, micro_batches, task) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    _, size, _ = accumulate(model, micro_batches, task)
    return {name: grad / size for name, grad in _grads(model).items()}


def _assert_same_gradient(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Compared as one vector: some entries are zero up to rounding (a key bias's gradient
    is exactly zero in exact arithmetic), so each is judged against the whole gradient's scale."""
    assert got.keys() == expected.keys()
    assert_close_to_scale(torch.cat([got[n].flatten() for n in expected]),
                          torch.cat([expected[n].flatten() for n in expected]), 1e-5)


def test_ctc_accumulation_equals_one_large_batch():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(ModelConfig.tiny(num_layers=2, vocab_size=12, mask_time_prob=0.0, **QUIET)).train()
    generator = torch.Generator().manual_seed(0)
    waveform = torch.randn(4, 16_000, generator=generator)
    labels = torch.randint(1, 12, (4, 8), generator=generator)
    labels[1, 5:] = -100
    whole = _normalised_grads(model, [dict(waveform=waveform, labels=labels)], "finetune")
    # Micro-batches of 3 and 1 utterances: fairseq's normalisation gives the large batch's gradient...
    split = [dict(waveform=waveform[:3], labels=labels[:3]), dict(waveform=waveform[3:], labels=labels[3:])]
    accumulated = _normalised_grads(model, split, "finetune")
    _assert_same_gradient(accumulated, whole)
    # ... and averaging the micro-batch means does not.
    model.zero_grad(set_to_none=True)
    for inputs in split:
        (model(**inputs).loss / len(split)).backward()
    naive = _grads(model)
    assert any((naive[n] - whole[n]).abs().max() > 1e-3 * whole[n].abs().max() for n in whole)


def test_pretraining_accumulation_equals_one_large_batch():
    """The contrastive term, with the same masks and distractors (diversity and feature
    penalty are batch statistics, weighted per micro-batch as in fairseq)."""
    torch.manual_seed(0)
    config = ModelConfig.tiny(num_layers=2, diversity_weight=0.0, feature_penalty_weight=0.0, **QUIET)
    model = Wav2Vec2ForPreTraining(config).eval()  # no dropout, no Gumbel noise: the same forward twice
    generator = torch.Generator().manual_seed(1)
    waveform = torch.randn(4, 16_000, generator=generator)
    frames = config.num_frames(16_000)
    masks = torch.zeros(4, frames, dtype=torch.bool)
    for row, (start, span) in enumerate([(3, 12), (10, 25), (0, 8), (20, 14)]):  # unequal masked counts
        masks[row, start:start + span] = True
    halves = [slice(0, 3), slice(3, 4)]
    negatives = [sample_negatives(masks[part], 10, generator=generator) for part in halves]
    # The same distractors, as indices into the whole batch's (B * T) targets.
    offsets = [0, 3 * frames]
    whole_negatives = torch.cat([n + o for n, o in zip(negatives, offsets)])
    whole = _normalised_grads(model, [dict(waveform=waveform, time_mask=masks, negative_indices=whole_negatives)],
                              "pretrain")
    split = [dict(waveform=waveform[part], time_mask=masks[part], negative_indices=n)
             for part, n in zip(halves, negatives)]
    accumulated = _normalised_grads(model, split, "pretrain")
    _assert_same_gradient(accumulated, whole)


# ----------------------------------------------------------------- the loop
def test_pretraining_runs_logs_and_saves(corpus, tmp_path):
    trainer = Trainer(_pretrain_config(corpus, tmp_path / "run"))
    history = trainer.train()
    assert [r["update"] for r in history] == [1, 2, 3, 4]
    last = history[-1]
    for key in ("loss", "contrastive_loss", "diversity_loss", "accuracy", "code_perplexity", "softmax_perplexity",
                "temperature", "lr", "grad_norm", "audio_seconds_per_second", "dev_accuracy"):
        assert key in last and math.isfinite(last[key]), key
    assert history[0]["temperature"] == 2.0 and last["temperature"] < 2.0  # annealed per update
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in logged] == [1, 2, 3, 4]
    names = sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*.pt"))
    assert names == ["checkpoint_0000002.pt", "checkpoint_0000004.pt", "checkpoint_best.pt", "checkpoint_last.pt"]


def test_interrupted_and_resumed_run_gives_the_same_losses(corpus, tmp_path):
    straight = Trainer(_pretrain_config(corpus, tmp_path / "straight")).train()

    interrupted = Trainer(_pretrain_config(corpus, tmp_path / "resumed"))
    step = interrupted.update_step

    def stop_after_two(micro_batches):
        record = step(micro_batches)
        interrupted.stop_requested = interrupted.update == 2
        return record

    interrupted.update_step = stop_after_two
    first = interrupted.train()
    assert [r["update"] for r in first] == [1, 2]
    second = Trainer(_pretrain_config(corpus, tmp_path / "resumed")).train()  # a new process would do the same
    assert [r["update"] for r in second] == [3, 4]
    # The same schedule exactly; the same numbers up to the last bits, which CPU kernels may
    # round differently for tensors at other addresses (measured: 1e-7 of the gradient norm).
    for expected, got in zip(straight, first + second):
        assert (got["temperature"], got["lr"], got["sample_size"]) == (expected["temperature"], expected["lr"],
                                                                       expected["sample_size"])
        for key in ("loss", "accuracy", "code_perplexity", "grad_norm"):
            assert got[key] == pytest.approx(expected[key], rel=1e-5), (got["update"], key)
    assert second[-1]["dev_accuracy"] == pytest.approx(straight[-1]["dev_accuracy"], rel=1e-5)


def test_a_run_killed_after_its_last_checkpoint_logs_each_update_once(corpus, tmp_path):
    import shutil

    folder = tmp_path / "killed"
    Trainer(_pretrain_config(corpus, folder, max_updates=3, save_every=2)).train()
    # As if the process had been killed after update 3 and before its checkpoint: the last
    # checkpoint is update 2's, and the log already holds update 3.
    shutil.copyfile(folder / "checkpoint_0000002.pt", folder / "checkpoint_last.pt")
    for path in folder.glob("checkpoint_0000003.pt"):
        path.unlink()
    Trainer(_pretrain_config(corpus, folder, max_updates=3, save_every=2)).train()
    updates = [json.loads(line)["update"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert updates == [1, 2, 3]


def test_finetuning_from_a_pretrained_checkpoint(corpus, tmp_path):
    Trainer(_pretrain_config(corpus, tmp_path / "pre", max_updates=2)).train()
    trainer = Trainer(_finetune_config(corpus, tmp_path / "ft", init_from=str(tmp_path / "pre" / "checkpoint_last.pt")))
    pretrained = checkpoint.load_checkpoint(tmp_path / "pre" / "checkpoint_last.pt")["model"]
    for name, value in trainer.model.wav2vec2.state_dict().items():
        assert torch.equal(value, pretrained[f"wav2vec2.{name}"]), name
    history = trainer.train()
    assert "dev_cer" in history[-1] and "blank_fraction" in history[-1]
    assert trainer.model.config.feature_grad_mult == 0.0  # the recipe's frozen feature encoder


def test_evaluation_of_a_group_norm_model_does_not_depend_on_batching(corpus):
    """No padding mask reaches a group_norm encoder, so evaluate() scores it one utterance at a
    time: its CER is the CER of decoding each utterance alone (it was not, with padded batches)."""
    from w2v2_lite.data.corpora import read_manifest
    from w2v2_lite.data.dataset import SpeechDataset
    from w2v2_lite.data.tokenizer import CharTokenizer
    from w2v2_lite.decoding import greedy_decode
    from w2v2_lite.metrics import character_error_rate
    from w2v2_lite.training.loop import evaluate

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(ModelConfig.tiny(num_layers=1, vocab_size=len(CharTokenizer())))
    assert model.config.extractor_mode == "group_norm"
    utterances = read_manifest(corpus / "dev.tsv")
    assert len({u.num_samples for u in utterances}) > 1, "the test needs utterances of different lengths"
    alone = []
    with torch.no_grad():
        model.eval()
        for item in SpeechDataset(utterances, CharTokenizer()):
            out = model(item.waveform[None])
            alone += greedy_decode(out.logits, out.output_lengths, CharTokenizer())
    expected = character_error_rate([u.transcript for u in utterances], alone)
    assert evaluate(model, str(corpus / "dev.tsv"), "finetune")["cer"] == pytest.approx(expected, rel=1e-6)


def test_health_warnings_are_kept_in_the_log(corpus, tmp_path, monkeypatch):
    def warn_at_update_two(self, update, record):
        return [f"update {update}: codebook collapse: a planted warning."] if update == 2 else []

    monkeypatch.setattr(HealthMonitor, "check", warn_at_update_two)
    Trainer(_pretrain_config(corpus, tmp_path / "run", max_updates=3, log_every=10, eval_every=10)).train()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    warned = [r for r in records if "warnings" in r]
    assert [r["update"] for r in warned] == [2]  # logged although log_every would skip update 2
    assert warned[0]["warnings"] == ["update 2: codebook collapse: a planted warning."]


# ------------------------------------------------------------- checkpoints
def test_a_failed_write_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    checkpoint.save_checkpoint(tmp_path, {"update": 1, "weights": torch.ones(3)}, 1, keep_last=2)

    def crash(payload, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(tmp_path, {"update": 2}, 2, keep_last=2)
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["update"] == 1
    assert not (tmp_path / "checkpoint_0000002.pt").exists()


def test_only_the_last_checkpoints_are_kept_and_loading_runs_no_code(tmp_path):
    for update in range(1, 5):
        checkpoint.save_checkpoint(tmp_path, {"update": update}, update, keep_last=2, is_best=update == 2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_0*.pt")) == ["checkpoint_0000003.pt",
                                                                         "checkpoint_0000004.pt"]
    assert checkpoint.load_checkpoint(tmp_path / "checkpoint_best.pt")["update"] == 2
    torch.save({"object": Path("pickled")}, tmp_path / "foreign.pt")  # an arbitrary Python object
    with pytest.raises(ValueError, match="not a readable w2v2_lite checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "foreign.pt")
    assert checkpoint.load_checkpoint(tmp_path / "foreign.pt", trust_checkpoint=True)["object"] == Path("pickled")


SIGTERM_RUN = """
import json, sys
from w2v2_lite.training.loop import TrainConfig, Trainer
Trainer(TrainConfig(**json.loads(sys.argv[1]))).train()
"""


def test_sigterm_saves_a_checkpoint_that_resumes(corpus, tmp_path):
    config = _pretrain_config(corpus, tmp_path / "run", max_updates=10_000, eval_every=10_000, save_every=10_000)
    process = subprocess.Popen([sys.executable, "-c", SIGTERM_RUN, json.dumps(config.to_dict())],
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "SIGTERM" in stderr and "resumes it" in stderr
    saved = checkpoint.load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert 2 <= saved["update"] < 10_000
    trainer = Trainer(config)
    assert trainer.resume() and trainer.update == saved["update"]


# ----------------------------------------------------------------- monitors
def test_non_finite_updates_are_skipped_then_training_stops(corpus, tmp_path, capsys):
    trainer = Trainer(_pretrain_config(corpus, tmp_path / "run", max_bad_updates=3, max_updates=10))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    original = Wav2Vec2ForPreTraining.forward

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    Wav2Vec2ForPreTraining.forward = poisoned
    try:
        with pytest.raises(TrainingDiverged, match="3 updates in a row"):
            trainer.train()
    finally:
        Wav2Vec2ForPreTraining.forward = original
    assert trainer.monitor.bad_total == 3
    assert "the update was skipped" in capsys.readouterr().err
    for name, parameter in trainer.model.named_parameters():
        assert torch.equal(parameter, before[name]), name  # no update touched the weights


def _records(**values):
    return {"code_perplexity": 100.0, "accuracy": 0.3} | values


def test_collapse_and_stuck_accuracy_are_named():
    monitor = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=5)
    warnings = []
    for update in range(10):
        warnings += monitor.check(update, _records(code_perplexity=4.0))
    assert len(warnings) == 1 and "codebook collapse" in warnings[0] and "diversity_weight" in warnings[0]
    chance = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=5)
    said = sum((chance.check(u, _records(accuracy=0.02)) for u in range(10)), [])
    assert len(said) == 1 and "chance" in said[0]
    trivial = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=5)
    assert "trivial" in sum((trivial.check(u, _records(accuracy=1.0)) for u in range(10)), [])[0]
    healthy = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=5)
    assert not sum((healthy.check(u, _records()) for u in range(10)), [])


def test_collapse_from_the_runs_own_peak_is_named_even_above_the_floor():
    # the no-diversity ablation: ~100 codes of 128 early, then ~15, above the 10% floor (12.8)
    def run(level):
        monitor = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=20)
        early = sum((monitor.check(u, _records(code_perplexity=100.0)) for u in range(10)), [])
        return early + sum((monitor.check(u, _records(code_perplexity=level)) for u in range(10, 40)), [])
    warned = run(15.0)
    assert len(warned) == 1 and warned[0].startswith("update 20: codebook collapse")
    assert "about 15.0 of its 128 codes" in warned[0] and "had used 100.0" in warned[0]
    assert run(30.0) == []  # a fall to 30%: a run that settles, not a collapse


def test_monitor_state_survives_a_checkpoint_and_a_replay_judges_as_the_run_did():
    records = [_records(code_perplexity=100.0 if u < 10 else 15.0) | {"update": u, "loss": 3.0}
               for u in range(40)]
    whole = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=20)
    said = sum((whole.check(r["update"], r) for r in records), [])
    first = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=20)
    said_first = sum((first.check(r["update"], r) for r in records[:15]), [])
    resumed = HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=20)
    resumed.load_state(torch.load(_saved(first.state()), weights_only=True))
    said_resumed = sum((resumed.check(r["update"], r) for r in records[15:]), [])
    assert said == said_first + said_resumed and len(said) == 1
    logged = records[:3] + [records[3] | {"warnings": ["update 3: the loss is NaN or infinite; skipped"]}] + records[4:]
    replayed = replay(HealthMonitor(num_entries=128, num_negatives=50, window=5, warmup=20), logged)
    assert replayed == ["update 3: the loss is NaN or infinite; skipped"] + said


def _saved(state):
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_blank_only_ctc_is_named_after_its_grace_period():
    monitor = HealthMonitor(window=5, warmup=0, blank_updates=20)
    early = sum((monitor.check(u, {"blank_fraction": 1.0}) for u in range(19)), [])
    late = sum((monitor.check(u, {"blank_fraction": 1.0}) for u in range(19, 30)), [])
    assert not early and len(late) == 1 and "only blanks" in late[0] and "freeze_finetune_updates" in late[0]


# ---------------------------------------------------------- data parallelism
DDP_RUN = """
import json, os, sys
import torch
from w2v2_lite.training import distributed
from w2v2_lite.training.loop import TrainConfig, Trainer
distributed.init_from_environment()
trainer = Trainer(TrainConfig(**json.loads(sys.argv[1])))
history = trainer.train()
if distributed.rank() == 0:
    torch.save({"losses": [r["loss"] for r in history], "model": trainer.model.state_dict()}, sys.argv[2])
"""


def test_two_processes_equal_one_process_on_the_same_global_batch(corpus, tmp_path):
    """torchrun with 2 CPU workers (gloo), one micro-batch each, against one process
    accumulating the same 2 micro-batches: the same losses and the same weights.

    One utterance per micro-batch, so that the 4 micro-batches of the 2 updates lie in
    the first epoch for both (the workers share an epoch's batches alternately)."""
    # Adam's first steps are about lr * sign(gradient): an entry whose gradient is rounding
    # noise would step +-lr either way. A larger eps makes such entries step by ~0 instead.
    common = dict(max_updates=2, save_every=100, eval_every=100, valid_manifest=None, max_batch_size=1,
                  adam_eps=1e-3)
    single = Trainer(_finetune_config(corpus, tmp_path / "single", update_freq=2, **common))
    single_losses = [r["loss"] for r in single.train()]

    config = _finetune_config(corpus, tmp_path / "ddp", update_freq=1, **common)
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_RUN))
    result = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A session of its own, so that a hang takes the workers down with torchrun.
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                "--standalone", str(script), json.dumps(config.to_dict()), str(result)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, stderr[-3000:]
    parallel = torch.load(result, weights_only=True)
    assert parallel["losses"] == pytest.approx(single_losses, rel=1e-5)
    # The weights as one vector: a bias that starts at 0 has only its updates for a scale.
    expected = single.model.state_dict()
    assert parallel["model"].keys() == expected.keys()
    assert_close_to_scale(torch.cat([parallel["model"][n].flatten().float() for n in expected]),
                          torch.cat([expected[n].flatten().float() for n in expected]), 1e-5)


def test_finetuning_from_scratch_trains_every_part_from_the_start(corpus, tmp_path):
    trainer = Trainer(_finetune_config(corpus, tmp_path / "scratch", max_updates=1, valid_manifest=None))
    assert trainer.model.config.freeze_finetune_updates == 0 and not trainer.model.body_frozen
    conv = trainer.model.wav2vec2.feature_encoder.conv_layers[0].conv.weight
    before = conv.detach().clone()
    trainer.train()
    assert conv.requires_grad and not torch.equal(conv, before)
