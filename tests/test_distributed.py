"""Data-parallel training through the launchers and msrun (2 CPU ranks), a rank killed mid-run, the launchers'
argument checking, and stop_training.sh."""
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from config.config import CheckpointOptions, DatasetConfig, LearnRateConfig, MassConfig, ModelConfig
from src import checkpoint as ckpt
from src.dictionary import Dictionary
from src.masking import make_pair_example
from src.records import write_records

from conftest import REPO

MSRUN = os.path.join(os.path.dirname(sys.executable), "msrun")
ENV = dict(os.environ, PYTHON=sys.executable, GLOG_v="3",
           PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
pytestmark = pytest.mark.skipif(not os.path.exists(MSRUN), reason="msrun is not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """40 bundled sample headlines as a copy task; rows per update: 10 (one process) or 2 ranks x 5; windows of 16
    rows (the streaming loader plans 16 + 16 + 8 rows: 5 global batches an epoch)."""
    folder = tmp_path_factory.mktemp("dp")
    with open(os.path.join(REPO, "data", "sample", "gigaword", "train.title.txt"), encoding="utf-8") as handle:
        lines = [" ".join(line.split()[:10]) for line in handle.read().splitlines()[:40]]
    vocab = Dictionary.from_counter(collections.Counter(t for line in lines for t in line.split())).pad_to_multiple(8)
    vocab.persistence(str(folder / "vocab.txt"))
    examples = [make_pair_example(vocab.encode_line(line), vocab.encode_line(line)) for line in lines]
    write_records(str(folder / "train.mindrecord"), examples)
    config = MassConfig(
        dataset_config=DatasetConfig(epochs=1, batch_size=10, fine_tune_dataset=str(folder / "train.mindrecord"),
                                     bucket_boundaries=[16], window_rows=16),
        model_config=ModelConfig(random_seed=3, seq_length=16, vocab_size=len(vocab), hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 max_position_embeddings=16, max_decode_length=12, hidden_dropout_prob=0.0,
                                 attention_dropout_prob=0.0),
        learn_rate_config=LearnRateConfig(lr=1e-2, warmup_steps=2, decay_start_step=2, warmup_init_lr=1e-3),
        checkpoint_options=CheckpointOptions(save_ckpt_steps=1, keep_ckpt_max=50, ckpt_prefix="dp")).validate()
    config.save(str(folder / "config.json"))
    return folder


def launch(script, *args, **kwargs):
    return subprocess.run(["bash", os.path.join(REPO, "scripts", script), *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, **kwargs)


def final_digests(log_folder):
    digests = {}
    for path in sorted(glob.glob(os.path.join(log_folder, "worker_*.log"))):
        with open(path, encoding="utf-8", errors="replace") as handle:
            found = re.findall(r"rank (\d+)/2: final parameters sha256 ([0-9a-f]{64})", handle.read())
        digests.update(found)
    return digests


def write_config(corpus, path, **dataset_changes):
    config = json.loads((corpus / "config.json").read_text())
    config["dataset_config"].update(dataset_changes)
    path.write_text(json.dumps(config))
    return path


def test_two_ranks_stay_identical_and_equal_one_process(corpus, tmp_path):
    single = tmp_path / "single"
    result = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--config", corpus / "config.json",
                             "--output", single, "--no_plot"], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    # batch_size is per rank: 2 ranks x 5 rows make the 10-row global batches of the single process.
    ranks_config = write_config(corpus, tmp_path / "ranks.json", batch_size=5)
    ranks = tmp_path / "ranks"
    result = launch("run_cpu.sh", "-t", "t", "-n", 2, "-c", ranks_config, "-o", ranks, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # the launcher shares the cores out among the ranks (MindSpore's default of 25 threads each oversubscribes)
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert f"--threads {threads}" in (ranks / "logs" / "command.txt").read_text()
    digests = final_digests(ranks / "logs")
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    last = "dp_finetune_step0000005.ckpt"
    one, two = (ckpt.read_checkpoint(str(run / "checkpoints" / last)) for run in (single, ranks))
    assert two[2]["world_size"] == 2 and one[2]["world_size"] == 1
    assert sorted(one[0]) == sorted(two[0])
    for key in one[0]:
        # Adam turns the rounding noise of tiny gradients into ~1e-6 moves, hence atol.
        np.testing.assert_allclose(one[0][key], two[0][key], rtol=1e-4, atol=1e-5, err_msg=key)


def rank_pids(run):
    """{rank: pid} from the pid files train.py keeps in RUN/pids while it trains."""
    pids = {}
    for path in glob.glob(str(run / "pids" / "rank_*.pid")):
        with open(path, encoding="utf-8") as handle:
            pids[int(os.path.basename(path)[5:-4])] = int(handle.read())
    return pids


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds} s waiting for {what}")


def test_a_killed_rank_ends_the_job_with_an_error_and_keeps_the_last_checkpoint(corpus, tmp_path):
    config = write_config(corpus, tmp_path / "long.json", batch_size=5, epochs=500)
    run = tmp_path / "killed"
    job = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "run_cpu.sh"), "-t", "t", "-n", "2", "-c",
                            str(config), "-o", str(run)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        latest = run / "checkpoints" / "latest.json"
        wait_for(lambda: latest.exists() and len(json.loads(latest.read_text()).get("kept", [])) >= 3, 300,
                 "three checkpoints")
        wait_for(lambda: len(rank_pids(run)) == 2, 60, "both rank pid files")
        os.kill(rank_pids(run)[1], signal.SIGKILL)
        killed_at = time.monotonic()
        stdout, stderr = job.communicate(timeout=240)
        ended_after = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            os.killpg(int((run / "pid").read_text()), signal.SIGKILL)
            job.kill()
    assert job.returncode != 0
    # msrun notices the dead worker within a second and kills the other one.
    assert ended_after < 120
    assert "error: the job failed" in stderr.splitlines()[-1]
    # The newest complete checkpoint (listed in latest.json, written atomically) loads into a model.
    newest = json.loads(latest.read_text())["kept"][-1]
    path = newest if os.path.isabs(newest) else str(run / "checkpoints" / newest)
    weights, optimizer_state, metadata = ckpt.read_checkpoint(path)
    assert metadata["world_size"] == 2 and metadata["step"] >= 3
    from src.model import Seq2SeqModel
    from config.config import load_config
    model = Seq2SeqModel(load_config(str(config)).model_config)
    ckpt.load_model_weights(model, path)
    loaded = {p.name: p.asnumpy() for p in model.get_parameters()}
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
    assert not glob.glob(str(run / "checkpoints" / "*.tmp")) and not glob.glob(str(run / "checkpoints" / ".*tmp"))


@pytest.mark.parametrize("script", ["run_cpu.sh", "run_gpu.sh", "run_ascend.sh"])
@pytest.mark.parametrize("args, message", [
    ([], "-t/--task must be t (train) or i (inference)"),
    (["-t", "x", "-c", "config/config.json"], "-t/--task must be t (train) or i (inference)"),
    (["-t", "t"], "-c/--config is required"),
    (["-t", "t", "-c", "no/such.json"], "config file not found: no/such.json"),
    (["-t", "t", "-c", "config/config.json", "-n", "two"], "-n/--device_num must be a positive integer"),
    (["-t", "t", "-c", "config/config.json", "--bogus"], "unknown option: --bogus"),
    (["-t", "i", "-c", "config/config.json"], "-v/--vocab is required for inference"),
    (["-t", "i", "-c", "config/config.json", "-v", "config/config.json", "-m", "bleu"], "-m/--metric must be"),
    (["-t", "t", "-c", "config/config.json", "-T", "0"], "-T/--threads must be a positive integer"),
])
def test_launchers_reject_bad_arguments_with_usage(script, args, message):
    result = launch(script, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: " + message)  # the usage first, the error last
    assert f"usage: scripts/{script}" in result.stderr
    assert "Traceback" not in result.stderr and not result.stdout


def test_threads_are_for_cpu_only():
    result = launch("run_gpu.sh", "-t", "t", "-c", "config/config.json", "-T", "2")
    assert result.returncode == 2 and result.stderr.splitlines()[-1] == "error: -T/--threads is for CPU runs only"


def test_hccl_json_is_for_ascend_only():
    result = launch("run_cpu.sh", "-t", "t", "-c", "config/config.json", "-j", "rank_table.json")
    assert result.returncode == 2 and "error: -j/--hccl_json is for Ascend only" in result.stderr
    assert "-j, --hccl_json" in launch("run_ascend.sh", "--help").stdout


def test_stop_training_stops_a_cpu_job_and_leaves_a_resumable_checkpoint(corpus, tmp_path):
    config = write_config(corpus, tmp_path / "long.json", epochs=500)
    run = tmp_path / "stopped"
    result = launch("run_cpu.sh", "-t", "t", "-c", config, "-o", run, "-d", timeout=60)
    assert result.returncode == 0 and "started in the background" in result.stdout
    pid = int((run / "pid").read_text())
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, 180, "the first logged step")
    result = launch("stop_training.sh", "-w", 120, run, timeout=180)
    assert result.returncode == 0 and "stopped" in result.stdout
    assert not (run / "pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    stopped_step = ckpt.read_checkpoint(str(run / "checkpoints" / latest["kept"][-1]))[2]["step"]
    assert stopped_step >= 1
    resumed = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--config", config, "--output", run,
                              "--resume", "--max_updates", "2", "--no_plot"], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step {stopped_step}" in resumed.stdout
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert ckpt.read_checkpoint(str(run / "checkpoints" / latest["kept"][-1]))[2]["step"] == stopped_step + 2


def test_stop_training_without_a_pid_file_is_an_error(tmp_path):
    result = launch("stop_training.sh", tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: no pid file in")
