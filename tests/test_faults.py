"""Faults: damaged record files given to train.py and eval.py, and processes killed (kill -9) in the middle of
writing a checkpoint or a record set, then run again.

The kills are timed from outside, without hooks in the code: the test polls for the writer's temporary, stops the
process (SIGSTOP), checks that the temporary is still there while nothing moves, and only then sends SIGKILL;
otherwise it lets the process continue (SIGCONT) and waits for the next write.
"""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from config.config import CheckpointOptions, DatasetConfig, LearnRateConfig, LossScaleConfig, MassConfig, ModelConfig
from src import checkpoint as ckpt
from src.dictionary import Dictionary
from src.masking import make_pair_example
from src.records import write_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_TITLES = os.path.join(REPO, "data", "sample", "gigaword", "train.title.txt")
SAMPLE_NEWS = os.path.join(REPO, "data", "sample", "news", "news.txt")
TIMING_FIELDS = ("time", "tokens_per_s", "eta_s")
# MindSpore's default log level (warnings shown): the scripts must stay quiet on bad records without GLOG_v=3.
ENV = dict(os.environ, GLOG_v="2")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 bundled sample headlines as a copy task (as tests/test_trainer.py): records in both formats, the
    vocabulary and a tiny config with counter-based dropout, 6 epochs of 2 updates, a checkpoint every 3."""
    folder = tmp_path_factory.mktemp("corpus")
    with open(SAMPLE_TITLES, encoding="utf-8") as handle:
        lines = [" ".join(line.split()[:12]) for line in handle.read().splitlines()[:30]]
    vocab = Dictionary.from_counter(collections.Counter(token for line in lines for token in line.split()))
    vocab.persistence(str(folder / "vocab.txt"))
    examples = [make_pair_example(vocab.encode_line(line), vocab.encode_line(line)) for line in lines]
    for format in ("mindrecord", "tfrecord"):
        write_records(str(folder / f"train.{format}"), examples)
    write_records(str(folder / "valid.mindrecord"), examples[:10])
    model_config = ModelConfig(random_seed=1, seq_length=16, vocab_size=len(vocab), hidden_size=16,
                               num_hidden_layers=1, num_decoder_layers=1, num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=16, max_decode_length=12, hidden_dropout_prob=0.1,
                               attention_dropout_prob=0.1, resumable_dropout=True)
    config = MassConfig(
        dataset_config=DatasetConfig(epochs=6, batch_size=10, fine_tune_dataset=str(folder / "train.mindrecord"),
                                     valid_dataset=str(folder / "valid.mindrecord"), bucket_boundaries=[16]),
        model_config=model_config,
        loss_scale_config=LossScaleConfig(init_loss_scale=1024, scale_window=4),
        learn_rate_config=LearnRateConfig(lr=2e-2, warmup_steps=3, decay_start_step=3, warmup_init_lr=2e-3,
                                          min_lr=1e-4, update_freq=2),
        checkpoint_options=CheckpointOptions(save_ckpt_steps=3, keep_ckpt_max=10, ckpt_prefix="mass")).validate()
    config.save(str(folder / "config.json"))
    return folder


def script(name, *args):
    return [sys.executable, os.path.join(REPO, name), *[str(arg) for arg in args]]


def run_script(name, *args, cwd, timeout=300):
    # cwd: MindSpore writes rank_0/ (analyze_fail.ir) into the working folder when a graph fails to compile.
    return subprocess.run(script(name, *args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------------------------
# Damaged record files through the CLIs: one line, nothing from MindSpore, no output
# ----------------------------------------------------------------------------------------------------------------

def damaged(corpus, tmp_path, case):
    """A damaged copy of the training records (MindRecord: under the same name, its .db beside it) and the
    fragments its error line must hold."""
    format, damage = case.split("-", 1)
    source = str(corpus / f"train.{format}")
    folder = tmp_path / "damaged"
    os.makedirs(folder)
    path = str(folder / f"train.{format}")
    content = open(source, "rb").read()
    with open(path, "wb") as handle:
        handle.write(content[:len(content) // 3] if damage == "truncated" else
                     np.random.default_rng(0).bytes(4096) if damage == "garbage" else content)
    if format == "mindrecord" and damage != "no_index":
        with open(path + ".db", "wb") as handle:
            handle.write(open(source + ".db", "rb").read())
    if damage == "no_index":
        return path, [f"error: {path}: its MindRecord index {path}.db is missing"]
    return path, [f"error: {path}: truncated or corrupt {format} file (", "expected"]


CASES = ["mindrecord-truncated", "mindrecord-garbage", "mindrecord-no_index", "tfrecord-truncated", "tfrecord-garbage"]


@pytest.mark.parametrize("case", CASES)
def test_train_py_names_a_damaged_record_file_in_one_line(corpus, tmp_path, case):
    path, fragments = damaged(corpus, tmp_path, case)
    output = tmp_path / "run"
    result = run_script("train.py", "--config", corpus / "config.json", "--vocab", corpus / "vocab.txt", "--output",
                        output, "--set", f"dataset_config.fine_tune_dataset={path}", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not output.exists() and not (tmp_path / "rank_0").exists()


@pytest.mark.parametrize("case", CASES)
def test_eval_py_names_a_damaged_record_file_in_one_line(corpus, tmp_path, case):
    path, fragments = damaged(corpus, tmp_path, case)
    weights = tmp_path / "weights.ckpt"
    weights.write_bytes(b"never read: the test set fails first")
    output = tmp_path / "out" / "scores.txt"
    result = run_script("eval.py", "--config", corpus / "config.json", "--vocab", corpus / "vocab.txt", "--metric",
                        "ppl", "--checkpoint", weights, "--test_dataset", path, "--output", output, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# kill -9 in the middle of a write
# ----------------------------------------------------------------------------------------------------------------

def wait_until_stopped(pid, timeout=5.0):
    """SIGSTOP is delivered asynchronously: wait until /proc says the process is stopped."""
    stat = f"/proc/{pid}/stat"
    deadline = time.monotonic() + timeout
    while os.path.exists(stat) and time.monotonic() < deadline:
        with open(stat, encoding="ascii", errors="replace") as handle:
            if handle.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return
        time.sleep(0.001)


def kill_during(process, find, timeout=300):
    """Sends SIGKILL to `process` while find() (the paths of a write in progress) is non-empty; returns them."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if find():
            os.kill(process.pid, signal.SIGSTOP)
            wait_until_stopped(process.pid)
            present = find()
            if present:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return present
            os.kill(process.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "no write was caught in time"
        time.sleep(0.001)
    pytest.fail(f"the process ended (status {process.returncode}) before a write in progress was caught")


def entries(folder, pattern=None):
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [name for name in names if pattern is None or re.fullmatch(pattern, name)]


def final_digest(stdout):
    match = re.search(r"final parameters sha256 ([0-9a-f]{64})", stdout)
    assert match, stdout
    return match.group(1)


def read_metrics(run):
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as handle:
        return [{key: value for key, value in json.loads(line).items() if key not in TIMING_FIELDS}
                for line in handle]


def test_training_killed_while_writing_a_checkpoint_resumes_to_the_same_weights(corpus, tmp_path):
    """kill -9 while a checkpoint (of step 4 or later) is being written: the hidden temporary stays behind; the
    next train.py --resume removes it, resumes the latest complete checkpoint and ends with the weights, optimizer
    state and metrics of an uninterrupted run, bit for bit."""
    arguments = ["--config", corpus / "config.json", "--vocab", corpus / "vocab.txt", "--no_plot", "--log_every", 1]
    started = time.monotonic()
    full = run_script("train.py", *arguments, "--output", tmp_path / "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    timings = {"uninterrupted": time.monotonic() - started}

    run = tmp_path / "killed"
    checkpoints = run / "checkpoints"
    started = time.monotonic()
    with open(tmp_path / "killed.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(script("train.py", *arguments, "--output", run), cwd=tmp_path, env=ENV,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        # .mass_finetune_stepN.ckpt.PID.tmp.tmp: MindSpore writing; .tmp.ckpt: written, not yet renamed.
        temporary = rf"\.mass_finetune_step(\d+)\.ckpt\.{process.pid}\.tmp\.(tmp|ckpt)"
        caught = kill_during(process, lambda: [name for name in entries(checkpoints, temporary)
                                               if int(re.fullmatch(temporary, name).group(1)) >= 4])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    timings["killed after"] = time.monotonic() - started
    assert process.returncode == -signal.SIGKILL
    assert set(caught) <= set(entries(checkpoints))  # left behind
    step_being_written = int(re.fullmatch(temporary, caught[0]).group(1))
    pointer = checkpoints / "latest.json"
    resumed_from = json.loads(pointer.read_text())["kept"][-1] if pointer.exists() else None
    assert resumed_from is None or int(re.search(r"step(\d+)", resumed_from).group(1)) < step_being_written

    started = time.monotonic()
    resumed = run_script("train.py", *arguments, "--output", run, "--resume", cwd=tmp_path)
    timings["resumed"] = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout or resumed_from is None
    assert [name for name in entries(checkpoints) if name.startswith(".")] == []
    assert final_digest(resumed.stdout) == final_digest(full.stdout)
    name = "mass_finetune_step0000012.ckpt"
    mine, theirs = (ckpt.read_checkpoint(str(folder / "checkpoints" / name)) for folder in (run, tmp_path / "full"))
    for first, second in zip(mine[:2], theirs[:2]):
        assert first.keys() == second.keys()
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert mine[2] == theirs[2]
    assert read_metrics(run) == read_metrics(tmp_path / "full")
    print(f"caught {caught}; resumed from {resumed_from}; seconds: "
          + ", ".join(f"{key} {value:.1f}" for key, value in timings.items()))


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_record_build_killed_mid_write_is_cleaned_up_and_rebuilt_identically(tmp_path):
    """kill -9 news_crawl.py while it writes its shards: the hidden staging folder stays behind and nothing appears
    under the output's names; the next build removes the staging folder and writes the same bytes as a build that
    was never interrupted."""
    arguments = ["--input_files", SAMPLE_NEWS, "--num_shards", 2, "--processes", 1]
    started = time.monotonic()
    full = run_script("news_crawl.py", *arguments, "--output_folder", tmp_path / "full", "--dict_folder",
                      tmp_path / "full_dict", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    timings = {"uninterrupted": time.monotonic() - started}

    output = tmp_path / "killed"
    build = [*arguments, "--output_folder", output, "--dict_folder", tmp_path / "killed_dict"]
    started = time.monotonic()
    process = subprocess.Popen(script("news_crawl.py", *build), cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        staging = rf"\.news\.mindrecord\.{process.pid}\.[^.]+"
        # Caught once a shard file is open in the staging folder, i.e. in the middle of writing.
        caught = kill_during(process, lambda: [name for name in entries(output, staging)
                                               if entries(output / name)])
        staged = entries(output / caught[0])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    timings["killed after"] = time.monotonic() - started
    assert process.returncode == -signal.SIGKILL
    assert entries(output) == caught  # only the staging folder: no shard under the output's names

    started = time.monotonic()
    rerun = run_script("news_crawl.py", *build, cwd=tmp_path)
    timings["rerun"] = time.monotonic() - started
    assert rerun.returncode == 0, rerun.stderr
    assert entries(output) == ["news.mindrecord0", "news.mindrecord0.db", "news.mindrecord1", "news.mindrecord1.db",
                               "vocab.txt"]
    assert folder_bytes(output) == folder_bytes(tmp_path / "full")
    assert folder_bytes(tmp_path / "killed_dict") == folder_bytes(tmp_path / "full_dict")
    print(f"caught {caught} holding {staged}; seconds: "
          + ", ".join(f"{key} {value:.1f}" for key, value in timings.items()))
