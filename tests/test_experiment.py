"""`w2v2-lite experiment`: a grid of runs, cached by config hash, resumable, with results files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import SMALL_MODEL
from w2v2_lite.cli import main
from w2v2_lite.experiment import ExperimentError, load_experiment, plan



def write_experiment(folder: Path, corpus: Path, **changes) -> Path:
    common = {"valid_manifest": str(corpus / "dev.tsv"), "max_updates": 2, "max_batch_samples": 64_000,
              "max_batch_size": 2, "precision": "fp32", "device": "cpu", "eval_every": 2, "save_every": 2}
    (folder / "pt.json").write_text(json.dumps(common | {
        "task": "pretrain", "train_manifest": str(corpus / "pretrain.tsv"), "model": SMALL_MODEL,
        "crop_samples": 32_000}))
    (folder / "ft.json").write_text(json.dumps(common | {
        "task": "finetune", "train_manifest": str(corpus / "train-0.2min.tsv"), "learning_rate": 5e-5,
        "init_from": None}))
    spec = {"name": "mini", "description": "a test grid",
            "runs_dir": str(folder / "runs"), "results_dir": str(folder / "results"),
            "pretrain": {"small": {"config": str(folder / "pt.json")}},
            "finetune": {"config": str(folder / "ft.json"),
                         "grid": {"init": {"pretrained": {"init_from": "pretrain:small"},
                                           "scratch": {"init_from": None, "model": SMALL_MODEL}},
                                  "seed": [1, 2]}},
            "evaluate": {"test": str(corpus / "test.tsv")},
            "table": {"rows": "init", "columns": "seed", "metrics": ["test_cer", "test_wer"],
                      "ratio": {"baseline": "scratch", "metric": "test_cer"}},
            "scales": {"large": {"finetune": {"max_updates": 3}}}} | changes
    path = folder / "mini.json"
    path.write_text(json.dumps(spec))
    return path


def test_the_plan_is_the_product_of_the_axes_and_hashes_what_decides_the_numbers(tmp_path, corpus):
    runs = plan(load_experiment(write_experiment(tmp_path, corpus)))
    assert [run.key for run in runs] == [
        "pretrain/small", "finetune/init=pretrained/seed=1", "finetune/init=pretrained/seed=2",
        "finetune/init=scratch/seed=1", "finetune/init=scratch/seed=2"]
    assert len({run.hash for run in runs}) == 5
    assert runs[1].values["init_from"] == "pretrain:small" and runs[2].values["seed"] == 2

    # A change to the pretraining run changes the hash of every run that starts from it, only those.
    spec = json.loads((tmp_path / "mini.json").read_text())
    spec["pretrain"]["small"]["set"] = {"learning_rate": 1e-3}
    (tmp_path / "mini.json").write_text(json.dumps(spec))
    changed = plan(load_experiment(tmp_path / "mini.json"))
    same = [a.key for a, b in zip(runs, changed) if a.hash == b.hash]
    assert same == ["finetune/init=scratch/seed=1", "finetune/init=scratch/seed=2"]
    # The folder for runs and results does not enter the hash; a scale does.
    spec["runs_dir"] = str(tmp_path / "elsewhere")
    (tmp_path / "mini.json").write_text(json.dumps(spec))
    assert [r.hash for r in plan(load_experiment(tmp_path / "mini.json"))] == [r.hash for r in changed]
    scaled = plan(load_experiment(tmp_path / "mini.json", scale="large"))
    assert scaled[0].hash == changed[0].hash and scaled[1].hash != changed[1].hash
    assert scaled[1].folder.parent.name == "mini-large"


def test_parallel_jobs_start_interrupted_runs_then_dependents_then_plan_order(tmp_path, corpus):
    from w2v2_lite.experiment import next_to_start

    runs = plan(load_experiment(write_experiment(tmp_path, corpus)))
    pretrain, pretrained_1, pretrained_2, scratch_1, scratch_2 = runs
    # nothing finished: the fine-tuning runs from the pretrained model wait; plan order
    assert next_to_start(runs, runs, set()) is pretrain
    assert next_to_start([pretrained_1, pretrained_2], runs, set()) is None
    # the pretraining run finished: its fine-tuning runs go before the scratch runs
    rest = [scratch_1, scratch_2, pretrained_1, pretrained_2]
    assert next_to_start(rest, runs, {pretrain.key}) is pretrained_1
    # a run whose training another experiment did (only its scoring is left) goes first
    assert next_to_start(rest, runs, {pretrain.key}, frozenset({scratch_2.key})) is scratch_2
    # a run stopped with a checkpoint resumes before anything else
    assert next_to_start(rest, runs, {pretrain.key}, frozenset({scratch_1.key})) is scratch_1
    scratch_2.folder.mkdir(parents=True)
    (scratch_2.folder / "checkpoint_last.pt").write_bytes(b"")
    assert next_to_start(rest, runs, {pretrain.key}) is scratch_2
    assert next_to_start(rest, runs, {pretrain.key}, frozenset({scratch_1.key})) is scratch_2


def test_a_grid_runs_writes_results_and_is_not_run_twice(tmp_path, corpus, capsys, monkeypatch):
    from w2v2_lite.training import loop

    path = write_experiment(tmp_path, corpus)
    real_train, calls = loop.Trainer.train, []

    def train_and_stop_at_the_third_run(self):
        calls.append(self.config.output_dir)
        history = real_train(self)
        if len(calls) == 3:
            self.stop_requested = True  # as Ctrl-C would: the run keeps its checkpoint
        return history

    monkeypatch.setattr(loop.Trainer, "train", train_and_stop_at_the_third_run)
    assert main(["experiment", str(path), "--quiet"]) == 130
    assert "interrupted; the same command resumes it" in capsys.readouterr().out
    assert len(calls) == 3
    # the two finished runs are written, marked partial; --results writes them again, training nothing
    results = tmp_path / "results" / "mini"
    for _ in range(2):
        partial = json.loads((results / "summary.json").read_text())
        assert (partial["finished"], partial["planned"], len(partial["missing"])) == (2, 5, 3)
        assert "Partial results: 2 of 5 runs are finished" in (results / "table.md").read_text()
        (results / "summary.json").unlink()
        assert main(["experiment", str(path), "--results"]) == 0 and len(calls) == 3
    assert "Partial results" in capsys.readouterr().out

    assert main(["experiment", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 2 and len(calls) == 3 + 3  # the stopped run resumed, then two more
    results = tmp_path / "results" / "mini"
    records = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == sorted(r.key for r in plan(load_experiment(path)))
    for record in records:
        assert record["wall_s"] > 0 and record["audio_seconds_per_second"] > 0 and record["updates"] == 2
        # the run resumed after the stop is timed from its whole log, not from the resume on
        logged = [json.loads(line) for line in (Path(record["config"]["output_dir"]) / "log.jsonl").open()]
        assert all("eval_wall_s" in r for r in logged if any(k.startswith("dev_") for k in r))
        assert record["wall_s"] >= sum(r["wall_s"] + r.get("eval_wall_s", 0) for r in logged)
        assert record["seed"] == record["config"]["seed"] and record["config"]["output_dir"].endswith(record["hash"][:10])
        if record["stage"] == "finetune":
            assert {"test_cer", "test_wer", "dev_cer"} <= set(record["metrics"])
            assert 0 <= record["metrics"]["test_cer"]
    assert "finished" not in json.loads((results / "summary.json").read_text())
    assert "Partial" not in (results / "table.md").read_text()
    summary = json.loads((results / "summary.json").read_text())["cells"]
    assert {(cell["row"], cell["column"], cell["runs"]) for cell in summary} == {
        ("pretrained", 1, 1), ("pretrained", 2, 1), ("scratch", 1, 1), ("scratch", 2, 1)}
    table = (results / "table.md").read_text()
    assert "| init | 1: test_cer |" in table and "| scratch |" in table
    assert (results / "table.png").stat().st_size > 1000
    # The ratio to the scratch row, per column, beside the pretraining run it starts from.
    ratios = json.loads((results / "summary.json").read_text())["ratios"]
    by_key = {r["key"]: r for r in records}
    for entry in ratios:
        assert entry["row"] == "pretrained" and entry["pretrain_updates"] == 2
        seed = entry["column"]
        expected = (by_key[f"finetune/init=pretrained/seed={seed}"]["metrics"]["test_cer"]
                    / by_key[f"finetune/init=scratch/seed={seed}"]["metrics"]["test_cer"])
        assert entry["ratio"] == pytest.approx(expected)
        assert entry["pretrain_minutes"] == round(by_key["pretrain/small"]["wall_s"] / 60, 1)
    assert len(ratios) == 2 and "test_cer relative to scratch" in table
    for cell in summary:  # each row's pretraining run, shown beside it in the table
        facts = cell["pretraining"]
        assert (facts is None) == (cell["row"] == "scratch")
        if facts:
            assert facts["key"] == "pretrain/small" and facts["updates"] == 2 and facts["warnings"] == []
            assert facts["dev_accuracy"] == by_key["pretrain/small"]["metrics"]["dev_accuracy"]
    assert "| pretraining: updates |" in table and "| scratch |" in table
    assert (results / "ratio.png").stat().st_size > 1000
    # what a figure needs of the pretraining run's log (which stays in runs/) is committed beside
    curves = json.loads((results / "curves.json").read_text())
    assert curves["rows"] == {"pretrained": "pretrain/small"} and list(curves["runs"]) == ["pretrain/small"]
    curve = curves["runs"]["pretrain/small"]
    assert [p["update"] for p in curve["points"]] == [1, 2] and curve["points"][-1]["dev_accuracy"] == by_key[
        "pretrain/small"]["metrics"]["dev_accuracy"]
    assert curve["codebook_size"] > 0 and 0 < curve["chance_accuracy"] < 1

    assert main(["experiment", str(path), "--quiet"]) == 0  # everything cached: no training at all
    assert capsys.readouterr().out.count("done before") == 5 and len(calls) == 6
    assert main(["experiment", str(path), "--plan"]) == 0
    assert capsys.readouterr().out.count("done ") == 5


def test_reuse_results_trains_only_what_the_committed_results_lack(tmp_path, corpus, capsys, monkeypatch):
    import shutil

    from w2v2_lite.training import loop

    path = write_experiment(tmp_path, corpus)
    real_train, calls = loop.Trainer.train, []
    monkeypatch.setattr(loop.Trainer, "train", lambda self: (calls.append(Path(self.config.output_dir).name),
                                                             real_train(self))[1])
    assert main(["experiment", str(path), "--quiet"]) == 0 and len(calls) == 5
    results = tmp_path / "results" / "mini"
    first = {json.loads(line)["key"]: json.loads(line) for line in (results / "runs.jsonl").open()}
    curves = (results / "curves.json").read_text()
    # Each fine-tuning record names the weights it started from by their digest.
    started = Path(first["finetune/init=pretrained/seed=1"]["config"]["init_from"])
    assert started.name == "checkpoint_last.pt"
    assert first["finetune/init=pretrained/seed=1"]["init_sha256"] == hashlib.sha256(started.read_bytes()).hexdigest()
    assert first["finetune/init=scratch/seed=1"]["init_sha256"] is None and "init_sha256" not in first["pretrain/small"]

    # A new machine: runs/ is gone, results/ is committed, and the grid gained a seed.
    shutil.rmtree(tmp_path / "runs")
    spec = json.loads(path.read_text())
    spec["finetune"]["grid"]["seed"] = [1, 2, 3]
    path.write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["experiment", str(path), "--plan"]) == 0  # without the flag a clone trains every run again
    assert capsys.readouterr().out.count("to run") == 7
    assert main(["experiment", str(path), "--plan", "--reuse-results"]) == 0
    states = {parts[-2]: parts[-3] for parts in map(str.split, capsys.readouterr().out.splitlines())}
    # the new pretrained seed needs the pretraining run's checkpoint: that run trains again
    assert states == {"pretrain/small": "run", **{f"finetune/init={init}/seed={seed}": "results"
                      for init in ("pretrained", "scratch") for seed in (1, 2)},
                      "finetune/init=pretrained/seed=3": "run", "finetune/init=scratch/seed=3": "run"}
    calls.clear()
    assert main(["experiment", str(path), "--quiet", "--reuse-results"]) == 0
    assert sorted(name.split("-")[0] for name in calls) == ["finetune", "finetune", "pretrain"]
    assert capsys.readouterr().out.count("taken from") == 4
    records = {json.loads(line)["key"]: json.loads(line) for line in (results / "runs.jsonl").open()}
    assert len(records) == 7 and all(records[key] == first[key] for key in first if key.startswith("finetune"))
    assert records["pretrain/small"]["metrics"] == first["pretrain/small"]["metrics"]  # the same seed, same numbers

    # Again on a bare machine: every run is in the results, nothing trains, the curves stay.
    shutil.rmtree(tmp_path / "runs")
    calls.clear()
    assert main(["experiment", str(path), "--quiet", "--reuse-results"]) == 0 and calls == []
    assert json.loads((results / "curves.json").read_text()) == json.loads(curves)
    assert main(["experiment", str(path), "--results", "--reuse-results"]) == 0 and calls == []
    assert {json.loads(line)["key"] for line in (results / "runs.jsonl").open()} == set(records)

    # Another experiment beside it that shares runs (same hashes) and scores them alike takes
    # mini's records, retitled as its own; one that scores on other audio takes none.
    copy = json.loads(path.read_text()) | {"name": "copy"}
    copy["finetune"]["grid"] = {"init": {"scratch": copy["finetune"]["grid"]["init"]["scratch"]}, "seed": [1, 2, 4]}
    (tmp_path / "copy.json").write_text(json.dumps(copy))
    (tmp_path / "elsewhere.json").write_text(json.dumps(copy | {"name": "elsewhere",
                                                                "evaluate": {"test": str(corpus / "dev.tsv")}}))
    capsys.readouterr()
    assert main(["experiment", str(tmp_path / "elsewhere.json"), "--plan", "--reuse-results"]) == 0
    assert capsys.readouterr().out.count("to run") == 4
    calls.clear()
    assert main(["experiment", str(tmp_path / "copy.json"), "--quiet", "--reuse-results"]) == 0
    assert calls == ["finetune-init=scratch-seed=4-" + calls[0][-10:]]  # the one run mini has not made
    assert capsys.readouterr().out.count(f"taken from {results / 'runs.jsonl'}") == 3  # 2 seeds, the pretraining
    copied = {json.loads(line)["key"]: json.loads(line) for line in (tmp_path / "results/copy/runs.jsonl").open()}
    key = "finetune/init=scratch/seed=1"
    assert copied[key] == records[key] | {"experiment": "copy", "trained_in": f"mini: {key}",
                                          "taken_from": (results / "runs.jsonl").as_posix()}
    assert {json.loads(line)["key"] for line in (results / "runs.jsonl").open()} == set(records)  # mini's as it was

    # A damaged results file is named, with the fix, and nothing is written over it.
    (results / "runs.jsonl").write_text((results / "runs.jsonl").read_text()[:-40])
    damaged = (results / "runs.jsonl").read_text()
    assert main(["experiment", str(path), "--results", "--reuse-results"]) == 2
    error = capsys.readouterr().err
    assert str(results / "runs.jsonl") in error and "line 7" in error and "git checkout" in error
    assert (results / "runs.jsonl").read_text() == damaged


@pytest.mark.parametrize("change, message", [
    ({"nme": "x"}, "unknown key(s) ['nme']"),
    ({"name": "a b"}, "plain name"),
    ({"finetune": {"config": "no-such-config"}}, "no config 'no-such-config'"),
    ({"finetune": {"config": "finetune-quick", "grid": {"init": {"x": {"init_from": "pretrain:big"}}}}},
     "names no pretraining run"),
    ({"finetune": {"config": "finetune-quick", "set": {"learning_rat": 1}}}, "learning_rat"),
    ({"finetune": {"config": "finetune-quick", "grid": {"seed": 3}}}, "must be a list"),
    ({"pretrain": {"r": {"release": "no/such/release"}}}, "has no model.safetensors"),
    ({"table": {"rows": "init", "ratio": {"metric": "test_cer"}}}, "table.ratio needs"),
])
def test_bad_experiment_files_say_what_is_wrong(tmp_path, corpus, change, message):
    path = write_experiment(tmp_path, corpus, **change)
    with pytest.raises(ExperimentError) as error:
        plan(load_experiment(path))
    assert message in str(error.value) and str(path) in str(error.value)
    assert main(["experiment", str(path), "--plan"]) == 2


@pytest.mark.parametrize("entry, message", [
    ({"preset": "huge", "folder": "x"}, "a corpus entry is"),
    ([{"preset": "experiment", "folder": "x", "set": {"pretrain_minute": 30}}], "pretrain_minute"),
    ({"preset": "experiment", "folder": "x", "set": {"labelled_minutes": [60, 10]}}, "increasing"),
])
def test_bad_corpus_entries_say_what_is_wrong(tmp_path, corpus, entry, message):
    path = write_experiment(tmp_path, corpus)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"corpus": entry}))
    with pytest.raises(ExperimentError) as error:
        load_experiment(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_corpus_entry_can_change_the_presets_sizes(tmp_path, corpus, monkeypatch):
    import w2v2_lite.data.corpus as corpora
    from w2v2_lite.experiment import make_corpus_if_missing

    made = []
    monkeypatch.setattr(corpora, "make_corpus", lambda folder, config, progress: made.append((folder, config)))
    path = write_experiment(tmp_path, corpus)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"corpus": {
        "preset": "experiment", "folder": str(tmp_path / "8h"), "set": {"pretrain_minutes": 480}}}))
    make_corpus_if_missing(load_experiment(path), echo=lambda *a: None)
    assert made == [(tmp_path / "8h", corpora.CorpusConfig.experiment(pretrain_minutes=480))]


def test_a_release_the_repository_builds_is_hashed_by_its_recipe_and_built_when_missing(tmp_path, corpus,
                                                                                         monkeypatch):
    """The weights of `"release": "tiny"` are built on each machine (make pretrained), so the
    recipe names the runs that start from it: a rebuild keeps them, an edited recipe reruns them."""
    import copy

    import w2v2_lite.experiment as experiment
    import w2v2_lite.training.release as releases

    path = write_experiment(tmp_path, corpus, pretrain={"small": {"release": "tiny"}})
    runs = plan(load_experiment(path))
    assert runs[0].release == "tiny" and runs[0].hash == releases.recipe_hash("tiny")
    changed = copy.deepcopy(releases.RECIPES["tiny"])
    changed["train"]["learning_rate"] = 1e-3
    monkeypatch.setitem(releases.RECIPES, "tiny", changed)
    again = plan(load_experiment(path))
    assert [a.key for a, b in zip(runs, again) if a.hash == b.hash] == [
        "finetune/init=scratch/seed=1", "finetune/init=scratch/seed=2"]

    built: list[str] = []  # a grid whose release is not built builds it first, once
    folder = tmp_path / "pretrained" / "tiny"

    def find(name, build=True):
        if not folder.is_dir():
            if not build:
                raise FileNotFoundError(name)
            built.append(name)
            folder.mkdir(parents=True)
        return folder

    monkeypatch.setattr("w2v2_lite.pretrained.shipped_release", find)
    messages: list[str] = []
    experiment.build_releases_if_missing(again, messages.append)
    experiment.build_releases_if_missing(again, messages.append)
    assert built == ["tiny"] and messages == ["building the release tiny (make pretrained)"]
    assert again[0].reference() == str(folder)


def test_an_unknown_scale_and_a_missing_file_are_errors(tmp_path, corpus, capsys):
    path = write_experiment(tmp_path, corpus)
    assert main(["experiment", str(path), "--scale", "huge"]) == 2
    assert "no scale 'huge'; its scales are ['large']" in capsys.readouterr().err
    assert main(["experiment", str(tmp_path / "nothing.json")]) == 2


def test_jobs_train_runs_side_by_side_and_give_the_same_records(tmp_path, corpus, capsys):
    path = write_experiment(tmp_path, corpus)
    assert main(["experiment", str(path), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("(1 thread; output in experiment.log)") == 5  # two cores shared by two processes
    runs = plan(load_experiment(path))
    for run in runs:
        log = (run.folder / "experiment.log").read_text()
        assert f"{run.key}: " in log and "Traceback" not in log
    records = [json.loads(line) for line in (tmp_path / "results" / "mini" / "runs.jsonl").read_text().splitlines()]
    assert len(records) == 4 + 1 and all(r["updates"] == 2 for r in records)
    # A fine-tuning run started only after the pretraining run it starts from had finished.
    pretrained = next(r for r in runs if r.key == "pretrain/small").folder / "result.json"
    first = next(r for r in runs if r.key == "finetune/init=pretrained/seed=1").folder / "train_config.json"
    assert pretrained.stat().st_mtime <= first.stat().st_mtime
    assert main(["experiment", str(path), "--jobs", "2"]) == 0
    assert capsys.readouterr().out.count("done before") == 5


def test_ctrl_c_stops_every_job_with_a_checkpoint_and_the_same_command_resumes(tmp_path, corpus):
    import signal
    import subprocess
    import sys
    import time

    path = write_experiment(tmp_path, corpus)
    spec = json.loads(path.read_text())
    spec["pretrain"] = {}
    spec["finetune"]["grid"]["init"] = {"scratch": {"init_from": None, "model": SMALL_MODEL}}
    spec["finetune"]["set"] = {"max_updates": 400, "eval_every": 400, "save_every": 400}
    path.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "w2v2_lite.cli", "experiment", str(path), "--jobs", "2"]
    # SIGINT as a terminal would deliver it: a shell's background job (CI's, say) starts its
    # children with SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    logs = [run.folder / "log.jsonl" for run in plan(load_experiment(path))]
    deadline = time.monotonic() + 120
    while not all(log.is_file() and log.stat().st_size for log in logs):
        assert time.monotonic() < deadline and parent.poll() is None, parent.communicate()[0]
        time.sleep(0.2)
    parent.send_signal(signal.SIGINT)
    out = parent.communicate(timeout=120)[0]
    assert parent.returncode == 130, out
    assert out.count("interrupted; the same command resumes it") == 2, out
    for run in plan(load_experiment(path)):
        assert (run.folder / "checkpoint_last.pt").is_file() and not (run.folder / "result.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for run in plan(load_experiment(path)):
        record = json.loads((run.folder / "result.json").read_text())
        assert record["updates"] == 400
        lines = [json.loads(line) for line in (run.folder / "log.jsonl").read_text().splitlines()]
        assert lines[-1]["update"] == 400


def test_a_table_without_columns_has_one_bar_per_row(tmp_path):
    from w2v2_lite.experiment import Experiment, write_results

    spec = {"name": "abl", "results_dir": str(tmp_path), "finetune": {},
            "table": {"rows": "pretraining", "metrics": ["test_cer"]}}
    records = [{"key": f"finetune/pretraining={row}/seed={seed}", "stage": "finetune", "seed": seed,
                "coordinates": {"pretraining": row, "seed": seed}, "config": {"init_from": None},
                "wall_s": 1.0, "audio_seconds_per_second": 2.0, "metrics": {"test_cer": cer}}
               for row, seed, cer in [("none", 1, 0.5), ("none", 2, 0.7), ("V 16", 1, 0.4), ("V 16", 2, 0.4)]]
    folder = write_results(Experiment(tmp_path / "abl.json", spec), records)
    table = (folder / "table.md").read_text()
    assert "| pretraining | test_cer |" in table and "None" not in table
    assert "| none | 0.600 ± 0.141 (n=2) | 0.0 | 2.0 |" in table and "| V 16 | 0.400 ± 0.000 (n=2) |" in table
    assert (folder / "table.png").stat().st_size > 1000 and not (folder / "ratio.png").exists()


def test_under_torchrun_each_run_trains_on_both_workers_and_one_writes(tmp_path, corpus):
    import os
    import signal
    import subprocess
    import sys

    path = write_experiment(tmp_path, corpus)
    spec = json.loads(path.read_text())
    spec["pretrain"] = {}
    spec["finetune"]["grid"]["init"] = {"scratch": {"init_from": None, "model": SMALL_MODEL}}
    from w2v2_lite.data.corpora import read_manifest, write_manifest

    labelled = [u for split in ("train-0.2min", "dev", "test") for u in read_manifest(corpus / f"{split}.tsv")]
    write_manifest(tmp_path / "train.tsv", corpus, labelled)  # batches of one: several per worker
    spec["finetune"]["set"] = {"max_batch_size": 1, "train_manifest": str(tmp_path / "train.tsv")}
    path.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "w2v2_lite.cli", "experiment", str(path), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=os.environ | {"OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        out = process.communicate(timeout=300)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, out[-3000:]
    records = [json.loads(line) for line in (tmp_path / "results" / "mini" / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == ["finetune/init=scratch/seed=1", "finetune/init=scratch/seed=2"]
    assert all(r["workers"] == 2 and r["updates"] == 2 and "test_cer" in r["metrics"] for r in records)
    assert out.count("results in ") == 1 and out.count("mini: 2 runs") == 1  # the first worker speaks
    assert main(["experiment", str(path), "--jobs", "2", "--plan"]) == 0


def test_self_training_labels_the_audio_with_the_teacher_then_trains_students(tmp_path, corpus, capsys):
    from w2v2_lite.data.corpora import read_manifest

    path = write_experiment(tmp_path, corpus)
    spec = json.loads(path.read_text())
    spec["finetune"]["grid"]["init"]["self-training"] = {"init_from": "pretrain:small",
                                                         "train_manifest": "pseudolabel:st"}
    spec["finetune"]["exclude"] = [{"init": "self-training", "seed": 2}, {"init": "scratch"}]
    spec["pseudolabel"] = {"st": {"teacher": "finetune/init=pretrained/seed=1", "audio": str(corpus / "pretrain.tsv"),
                                  "labelled": str(corpus / "train-0.2min.tsv"), "score_on": str(corpus / "dev.tsv"),
                                  "beam": 4}}
    path.write_text(json.dumps(spec))
    runs = plan(load_experiment(path))
    assert [run.key for run in runs] == [
        "pretrain/small", "finetune/init=pretrained/seed=1", "finetune/init=pretrained/seed=2",
        "pseudolabel/st", "finetune/init=self-training/seed=1"]
    # The student's hash follows its teacher's: a change to the teacher reruns the labelling and the student.
    spec["finetune"]["set"] = {"learning_rate": 1e-4}
    path.write_text(json.dumps(spec))
    changed = plan(load_experiment(path))
    assert all(a.hash != b.hash for a, b in zip(runs[1:], changed[1:]))

    assert main(["experiment", str(path), "--quiet"]) == 0
    labelling = next(run for run in changed if run.key == "pseudolabel/st")
    record = json.loads((labelling.folder / "result.json").read_text())
    pretrain = [u for u in read_manifest(corpus / "pretrain.tsv") if u.num_samples >= 32_000]
    labelled = read_manifest(corpus / "train-0.2min.tsv")
    assert record["metrics"]["labelled_utterances"] == len(labelled)
    assert record["metrics"]["pseudo_utterances"] + record["metrics"]["pseudo_empty"] == len(pretrain)
    assert 0 <= record["metrics"]["dev_cer"] and record["teacher"]["key"] == "finetune/init=pretrained/seed=1"
    written = read_manifest(labelling.folder / "train.tsv")
    assert written[:len(labelled)] == labelled and len(written) == len(labelled) + record["metrics"]["pseudo_utterances"]
    student = json.loads((changed[-1].folder / "result.json").read_text())
    assert student["config"]["train_manifest"] == str(labelling.folder / "train.tsv")
    assert student["config"]["init_from"].endswith("checkpoint_last.pt")
    records = [json.loads(line) for line in (tmp_path / "results" / "mini" / "runs.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} == {"pretrain", "finetune", "pseudolabel"}
    summary = json.loads((tmp_path / "results" / "mini" / "summary.json").read_text())["cells"]
    assert {(c["row"], c["column"]) for c in summary} == {("pretrained", 1), ("pretrained", 2), ("self-training", 1)}


@pytest.mark.parametrize("change, message", [
    ({"pseudolabel": {"st": {"teacher": "finetune/nothing", "audio": "a.tsv", "labelled": "b.tsv"}}},
     "is no fine-tuning run of the grid"),
    ({"pseudolabel": {"st": {"audio": "a.tsv"}}}, "needs ['teacher', 'labelled']"),
    ({"pseudolabel": {"st": {"teacher": "x", "audio": "a", "labelled": "b", "beems": 3}}}, "give an object"),
])
def test_bad_pseudolabel_entries_say_what_is_wrong(tmp_path, corpus, change, message):
    path = write_experiment(tmp_path, corpus, **change)
    with pytest.raises(ExperimentError) as error:
        plan(load_experiment(path))
    assert message in str(error.value)


def test_a_student_naming_no_pseudolabel_entry_is_an_error(tmp_path, corpus):
    path = write_experiment(tmp_path, corpus)
    spec = json.loads(path.read_text())
    spec["finetune"]["grid"]["init"]["self-training"] = {"train_manifest": "pseudolabel:nothing"}
    path.write_text(json.dumps(spec))
    with pytest.raises(ExperimentError, match="names no \"pseudolabel\" entry"):
        plan(load_experiment(path))


def test_rows_that_start_from_a_release_show_its_pretraining_run(tmp_path, monkeypatch):
    import shutil

    from w2v2_lite import ModelConfig
    from w2v2_lite.experiment import Experiment, weights_digest, write_results
    from w2v2_lite.models import Wav2Vec2ForPreTraining
    from w2v2_lite.pretrained import save_pretrained

    release = save_pretrained(Wav2Vec2ForPreTraining(ModelConfig.tiny(**SMALL_MODEL)), tmp_path / "tiny", extra={
        "update": 40, "wall_s": 90.0, "metrics": {"dev_accuracy": 0.25, "dev_code_perplexity": 7.5},
        "log": "train_log.jsonl"})
    (release / "train_log.jsonl").write_text(json.dumps({"update": 40, "warnings": ["update 40: codebook collapse: "
                                                                                    "2 codes. Raise it."]}) + "\n")
    spec = {"name": "rel", "results_dir": str(tmp_path / "results"), "finetune": {},
            "table": {"rows": "init", "metrics": ["test_cer"], "ratio": {"baseline": "scratch"}}}
    records = [{"key": f"finetune/init={row}/seed=1", "stage": "finetune", "seed": 1,
                "coordinates": {"init": row, "seed": 1}, "config": {"init_from": init},
                "wall_s": 1.0, "audio_seconds_per_second": 2.0, "metrics": {"test_cer": cer}}
               for row, init, cer in [("scratch", None, 0.8), ("pretrained", str(release), 0.4)]]
    records[1]["init_sha256"] = weights_digest(str(release))  # started from this build
    folder = write_results(Experiment(tmp_path / "rel.json", spec), records)
    summary = json.loads((folder / "summary.json").read_text())
    facts = next(cell["pretraining"] for cell in summary["cells"] if cell["row"] == "pretrained")
    assert facts == {"key": "release tiny", "updates": 40, "minutes": 1.5, "threads": None, "dev_accuracy": 0.25,
                     "dev_code_perplexity": 7.5, "warnings": ["codebook collapse: 2 codes (update 40)"]}
    assert summary["ratios"][0]["pretrain_minutes"] == 1.5 and (folder / "ratio.png").is_file()

    # Where the release is not built (results written from committed records on a new machine),
    # the facts come from data/pretrained/NAME, the committed config and log of its reference run.
    repository = tmp_path / "clone"
    (repository / "data" / "pretrained").mkdir(parents=True)
    shutil.copytree(release, repository / "data" / "pretrained" / "tiny", ignore=shutil.ignore_patterns("*.safetensors"))
    monkeypatch.chdir(repository)
    records[1]["config"]["init_from"] = "data/generated/pretrained/tiny"
    folder = write_results(Experiment(tmp_path / "rel.json", spec), records)
    summary = json.loads((folder / "summary.json").read_text())
    assert next(cell["pretraining"] for cell in summary["cells"] if cell["row"] == "pretrained") == facts

    # A build here describes the runs only when their records name its weights (init_sha256);
    # runs that started from another build, or say nothing of it, get the reference run's facts.
    built = repository / "data" / "generated" / "pretrained" / "tiny"
    shutil.copytree(release, built)
    (built / "config.json").write_text(json.dumps(json.loads((built / "config.json").read_text()) | {"update": 41}))
    for digest, updates in [("0" * 64, 40), (weights_digest(str(built)), 41), (None, 40)]:
        records[1]["init_sha256"] = digest  # None: a record from before init_sha256, of a build unknown
        folder = write_results(Experiment(tmp_path / "rel.json", spec), records)
        summary = json.loads((folder / "summary.json").read_text())
        assert next(cell["pretraining"] for cell in summary["cells"] if cell["row"] == "pretrained")["updates"] == updates


def test_a_pretraining_run_is_judged_by_todays_health_monitor_over_its_log(tmp_path):
    from w2v2_lite.experiment import Experiment, write_results
    from w2v2_lite.training.loop import TrainConfig

    run = tmp_path / "runs" / "pretrain-no-diversity"
    run.mkdir(parents=True)
    # a run that logged no warning (trained before the monitor knew this kind of collapse):
    # the tiny model's 128 codes, ~100 used, then 20 (above the 10% floor, below a quarter of its peak)
    run.joinpath("log.jsonl").write_text("".join(json.dumps(
        {"update": u, "loss": 3.0, "accuracy": 0.2, "code_perplexity": 100.0 if u < 300 else 20.0}) + "\n"
        for u in range(1, 801)))
    config = TrainConfig(task="pretrain", max_updates=800, output_dir=str(run)).to_dict()
    spec = {"name": "abl", "results_dir": str(tmp_path / "results"), "finetune": {},
            "table": {"rows": "init", "metrics": ["test_cer"], "ratio": {"baseline": "scratch"}}}
    records = [{"key": "pretrain/no-diversity", "stage": "pretrain", "seed": 1, "coordinates": {}, "config": config,
                "updates": 800, "wall_s": 60.0, "metrics": {"dev_accuracy": 0.2}, "warnings": []}]
    records += [{"key": f"finetune/init={row}/seed=1", "stage": "finetune", "seed": 1,
                 "coordinates": {"init": row, "seed": 1}, "config": {"init_from": init},
                 "wall_s": 1.0, "audio_seconds_per_second": 2.0, "metrics": {"test_cer": cer}}
                for row, init, cer in [("scratch", None, 0.8), ("no diversity", str(run / "checkpoint_last.pt"), 0.7)]]
    folder = write_results(Experiment(tmp_path / "abl.json", spec), records)
    summary = json.loads((folder / "summary.json").read_text())
    facts = next(cell["pretraining"] for cell in summary["cells"] if cell["row"] == "no diversity")
    # the mean of the last 50 updates falls below 25 at update 346
    assert facts["warnings"] == ["codebook collapse: the quantizer uses about 24.8 of its 128 codes (code "
                                 "perplexity; the run had used 100.0) (update 346)"]
    assert "codebook collapse" in (folder / "table.md").read_text()

    # On a machine without the run's log (its record reused from results/), the monitor cannot
    # judge it again: the summary keeps the warnings it was judged to have, not the none it logged.
    run.joinpath("log.jsonl").unlink()
    folder = write_results(Experiment(tmp_path / "abl.json", spec), records)
    summary = json.loads((folder / "summary.json").read_text())
    assert next(cell["pretraining"] for cell in summary["cells"] if cell["row"] == "no diversity")["warnings"] == \
        facts["warnings"]


def test_a_run_trained_by_another_experiment_is_scored_not_trained_again(tmp_path, corpus, capsys, monkeypatch):
    from w2v2_lite.training import loop

    first = write_experiment(tmp_path, corpus)
    assert main(["experiment", str(first), "--quiet"]) == 0
    spec = json.loads(first.read_text())
    spec["name"] = "other"  # the same runs (and one more seed) in another experiment, scored on dev.tsv too
    spec["finetune"]["grid"]["seed"] = [1, 2, 3]
    spec["evaluate"] = {"test": str(corpus / "test.tsv"), "heldout": str(corpus / "dev.tsv")}
    second = tmp_path / "other.json"
    second.write_text(json.dumps(spec))
    real_train, trained = loop.Trainer.train, []

    def train(self):
        trained.append(Path(self.config.output_dir).name)
        return real_train(self)

    monkeypatch.setattr(loop.Trainer, "train", train)
    capsys.readouterr()
    assert main(["experiment", str(second), "--plan"]) == 0
    states = capsys.readouterr().out
    assert states.count("trained before") == 5 and states.count("to run") == 2  # seed 3 is new
    assert main(["experiment", str(second), "--quiet"]) == 0
    assert len(trained) == 2 and all("seed=3" in name for name in trained)  # only the new seed trains
    records = {json.loads(line)["key"]: json.loads(line)
               for line in (tmp_path / "results" / "other" / "runs.jsonl").read_text().splitlines()}
    earlier = {json.loads(line)["key"]: json.loads(line)
               for line in (tmp_path / "results" / "mini" / "runs.jsonl").read_text().splitlines()}
    for key, record in records.items():
        if key in earlier:
            assert record["trained_in"] == f"mini: {key}" and record["wall_s"] == earlier[key]["wall_s"]
            assert record["hash"] == earlier[key]["hash"] and record["experiment"] == "other"
            if record["stage"] == "finetune":  # scored again, on what this experiment asks
                assert record["metrics"]["test_cer"] == pytest.approx(earlier[key]["metrics"]["test_cer"])
                assert "heldout_cer" in record["metrics"] and "heldout_cer" not in earlier[key]["metrics"]
        else:
            assert "trained_in" not in record


def test_ratios_are_a_curve_against_updates_only_when_the_rows_differ_in_updates(tmp_path):
    from w2v2_lite.experiment import Experiment, plot_ratios, rows_differ_in_updates

    def entry(row, column, updates, ratio):
        return {"row": row, "column": column, "metric": "test_cer", "baseline": "scratch", "ratio": ratio,
                "pretrain_updates": updates}

    budget = [entry(f"{u} updates", labels, u, r) for labels in ("1min", "10min")
              for u, r in [(1900, 1.0), (4800, 0.9), (17400, 0.8)]]
    ablations = [entry(row, None, 4800, r) for row, r in [("baseline", 0.92), ("mask 0.3", 1.6)]]
    table1 = [entry("pretrained", "10min", 4800, 0.84), entry("pretrained", "1h", 4800, 1.15),
              entry("self-training", "10min", 4800, 1.08)]  # two rows at 4,800 updates in one column
    assert rows_differ_in_updates(budget)
    assert not rows_differ_in_updates(ablations) and not rows_differ_in_updates(table1)
    assert not rows_differ_in_updates(budget[:1])  # one point is no curve
    for name, ratios in [("budget", budget), ("ablations", ablations), ("table1", table1)]:
        spec = {"name": name, "table": {"rows": "x", "columns": "labels"}}
        plot_ratios(Experiment(tmp_path / f"{name}.json", spec), ratios, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
