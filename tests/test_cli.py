"""The command line: help, make-corpus, Ctrl-C and resume, cheap imports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile

from w2v2_lite.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--pretrain-minutes", "0.1", "--labelled-minutes", "0.05", "0.1", "--dev-minutes", "0.05",
         "--test-minutes", "0.05"]


def test_help_lists_make_corpus(capsys):
    assert main([]) == 0
    assert "make-corpus" in capsys.readouterr().out


def test_importing_the_package_and_cli_does_not_import_torch():
    code = "import sys, w2v2_lite, w2v2_lite.cli, w2v2_lite.data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_make_corpus_command(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["make-corpus", "--out", str(out), "--seed", "7", "--workers", "2", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "train-0.1min" in printed and "dev" in printed
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["seed"] == 7 and metadata["config"]["labelled_minutes"] == [0.05, 0.1]


@pytest.mark.slow  # two fresh processes, each importing torch
def test_ctrl_c_leaves_no_partial_files_and_a_rerun_completes(tmp_path):
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "w2v2_lite.cli", "make-corpus", "--out", str(out), "--workers", "2",
               "--pretrain-minutes", "6", "--labelled-minutes", "0.1", "--dev-minutes", "0.1", "--test-minutes", "0.1"]
    # A shell runs background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: give the child the default disposition, as a terminal's Ctrl-C would find it.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("*.flac"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert b"run the same command again to resume" in stderr
    assert not (out / "metadata.json").exists()
    written = list(out.rglob("*.flac"))
    assert written
    for path in written:  # every file under its final name is whole
        soundfile.read(path)
    subprocess.run(command + ["--quiet"], cwd=ROOT, check=True, timeout=120)
    assert (out / "metadata.json").exists() and not list(out.rglob("*.tmp"))


def test_a_folder_holding_another_corpus_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["make-corpus", "--out", str(out), "--seed", "1", "--quiet", *SMALL]) == 0
    assert main(["make-corpus", "--out", str(out), "--seed", "2", "--quiet", *SMALL]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "another config" in error and "delete it" in error
