"""Training: counter-based dropout, loss scaling and overflow skips, gradient accumulation, a real run whose loss
falls, an interrupted + resumed run equal to an uninterrupted one, and train.py's one-line errors."""
import collections
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from config.config import (CheckpointOptions, DatasetConfig, LearnRateConfig, LossScaleConfig, MassConfig,
                           ModelConfig)
from src import checkpoint as ckpt
from src import trainer
from src.device import setup_device
from src.dictionary import Dictionary
from src.dropout import CounterDropout, dropout_key, use_counter_dropout
from src.errors import UserError
from src.masking import make_pair_example
from src.model import Seq2SeqModel
from src.optimizer import LossScaler
from src.records import write_records
from src.train_step import build_network, to_tensors

from reference_dropout import reference_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_TITLES = os.path.join(REPO, "data", "sample", "gigaword", "train.title.txt")
TIMING_FIELDS = ("time", "tokens_per_s", "eta_s")

setup_device("CPU")


def tiny_model_config(vocab_size=40, dropout=0.0):
    return ModelConfig(random_seed=1, seq_length=16, vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                       num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                       max_decode_length=12, hidden_dropout_prob=dropout, attention_dropout_prob=dropout,
                       resumable_dropout=True)


# ----------------------------------------------------------------------------------------------------------------
# Counter-based dropout
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("implementation", ["graph_ops", "cpu_kernel"])
def test_counter_dropout_matches_its_numpy_reference(implementation):
    from src.kernels import dropout_op
    kernel = dropout_op() if implementation == "cpu_kernel" else None
    if implementation == "cpu_kernel" and kernel is None:
        pytest.skip("no C++ compiler")
    key = ms.Parameter(ms.Tensor(0, ms.uint32), name="test_key", requires_grad=False)
    cell = CounterDropout(0.75, site=3, key=key, kernel=kernel)
    x = np.random.default_rng(0).standard_normal((4, 8, 32)).astype(np.float32)
    weights = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)

    @ms.jit
    def apply(value, key_value):
        ms.ops.assign(key, key_value)
        return cell(value)

    def weighted_sum(value):
        return (cell(value)[0] * ms.Tensor(weights)).sum()

    grad_of_input = ms.jit(ms.grad(weighted_sum))
    masks = []
    for key_value in (0, 12345, 2 ** 32 - 1):
        out, mask = apply(ms.Tensor(x), ms.Tensor(key_value, ms.uint32))
        grad = grad_of_input(ms.Tensor(x))  # the key Parameter keeps the value apply() gave it
        expected = reference_mask(key_value, 3, x.shape, 0.75)
        # the graph ops return the 0/1 mask, the kernel the mask already scaled by 1 / keep_prob
        np.testing.assert_array_equal(mask.asnumpy(), expected if kernel is None else expected / np.float32(0.75))
        np.testing.assert_allclose(out.asnumpy(), x * expected / 0.75, rtol=1e-6)
        np.testing.assert_allclose(grad.asnumpy(), weights * expected / 0.75, rtol=1e-6)
        masks.append(expected)
    kept = np.mean(masks)
    assert abs(kept - 0.75) < 5 * math.sqrt(0.75 * 0.25 / np.size(masks))
    assert (masks[0] != masks[1]).mean() > 0.2 and (masks[1] != masks[2]).mean() > 0.2


def test_use_counter_dropout_replaces_every_dropout_and_adds_no_weight():
    ms.set_seed(1)
    model = Seq2SeqModel(tiny_model_config(dropout=0.1))
    names_before = [name for name, _ in ckpt.model_parameters(model)]
    key = use_counter_dropout(model)
    sites = [cell.dropout for _, cell in model.cells_and_names() if isinstance(cell, ms.nn.Dropout)]
    assert sites and all(isinstance(site, CounterDropout) for site in sites)
    assert sorted(site.site for site in sites) == list(range(len(sites)))
    assert all(site.key is key for site in sites)
    assert [name for name, _ in ckpt.model_parameters(model)] == names_before
    key_of = dropout_key
    assert key_of(1, 0, 2, 5, 0) == key_of(1, 0, 2, 5, 0) != key_of(1, 0, 2, 6, 0) != key_of(1, 0, 2, 6, 1)


def test_mixed_precision_keeps_checkpoint_names_and_is_refused_on_cpu():
    config = dataclasses.replace(MassConfig(), model_config=dataclasses.replace(tiny_model_config(),
                                                                                compute_type="float16")).validate()
    network = build_network(config, hide_masked_source=False, device_target="GPU")  # built, not compiled
    assert network.loss_network.model is not network.model  # the O2 wrapper computes, the bare model is saved
    assert [name for name, _ in ckpt.model_parameters(network.model)][0] == "embedder.table"
    with pytest.raises(UserError) as error:
        build_network(config, hide_masked_source=False, device_target="CPU")
    assert "compute_type" in str(error.value)


# ----------------------------------------------------------------------------------------------------------------
# Loss scale, accumulation, overflow
# ----------------------------------------------------------------------------------------------------------------

def test_loss_scaler_modes():
    scaler = LossScaler("dynamic", 1024.0, factor=2.0, window=3)
    scaler.update(False)
    assert (scaler.scale, scaler.good_steps) == (512.0, 0)
    for _ in range(2):
        scaler.update(True)
    assert (scaler.scale, scaler.good_steps) == (512.0, 2)
    scaler.update(True)
    assert (scaler.scale, scaler.good_steps) == (1024.0, 0)
    floor = LossScaler("dynamic", 2.0, factor=4.0, window=3)
    floor.update(False)
    assert floor.scale == 1.0 and floor.at_floor
    static = LossScaler.from_config(LossScaleConfig(loss_scale_mode="static", init_loss_scale=128))
    static.update(False)
    assert static.scale == 128.0
    assert LossScaler.from_config(LossScaleConfig(loss_scale_mode="none")).scale == 1.0


# ----------------------------------------------------------------------------------------------------------------
# A real run: loss falls, folder layout, exact resume, plots, CLI errors
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 bundled sample headlines as a copy task (source = target), 10 of them as the valid set."""
    folder = tmp_path_factory.mktemp("corpus")
    with open(SAMPLE_TITLES, encoding="utf-8") as handle:
        lines = [" ".join(line.split()[:12]) for line in handle.read().splitlines()[:30]]
    vocab = Dictionary.from_counter(collections.Counter(token for line in lines for token in line.split()))
    vocab.persistence(str(folder / "vocab.txt"))
    examples = [make_pair_example(vocab.encode_line(line), vocab.encode_line(line)) for line in lines]
    write_records(str(folder / "train.mindrecord"), examples)
    write_records(str(folder / "valid.mindrecord"), examples[:10])
    config = MassConfig(
        dataset_config=DatasetConfig(epochs=6, batch_size=10, fine_tune_dataset=str(folder / "train.mindrecord"),
                                     valid_dataset=str(folder / "valid.mindrecord"), bucket_boundaries=[16]),
        model_config=tiny_model_config(vocab_size=len(vocab), dropout=0.1),
        loss_scale_config=LossScaleConfig(init_loss_scale=1024, scale_window=4),
        learn_rate_config=LearnRateConfig(lr=2e-2, warmup_steps=3, decay_start_step=3, warmup_init_lr=2e-3,
                                          min_lr=1e-4, update_freq=2),
        checkpoint_options=CheckpointOptions(save_ckpt_steps=3, keep_ckpt_max=10, ckpt_prefix="mass",
                                             best_at_epochs=[2])).validate()
    config.save(str(folder / "config.json"))
    return folder, config, vocab


@pytest.fixture(scope="module")
def full_run(corpus):
    """The uninterrupted run: 6 epochs of 3 batches, 2 micro-batches per update (2 updates per epoch)."""
    folder, config, vocab = corpus
    run = folder / "full"
    console = []
    runner = trainer.Trainer(config, str(run), vocab_checksum=vocab.checksum(), log_every=1, console=console.append)
    summary = runner.run()
    return run, summary, console, runner


def read_metrics(run):
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_copy_task_of_sample_headlines_learns_with_the_logged_schedule(full_run):
    run, summary, console, _ = full_run
    records = read_metrics(run)
    train = [r for r in records if r["type"] == "train"]
    valid = [r for r in records if r["type"] == "valid"]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [(r["epoch"], r["step"]) for r in valid] == [(epoch, 2 * epoch) for epoch in range(1, 7)]
    assert valid[-1]["loss"] < valid[0]["loss"] - 0.8  # 5.24 -> 3.86 nats on this machine
    assert train[-1]["loss"] < train[0]["loss"] - 0.8
    for record in valid:
        assert record["ppl"] == pytest.approx(math.exp(record["nll"]), rel=1e-9)
    assert summary["best_valid_loss"] == pytest.approx(min(r["loss"] for r in valid))
    assert train[0]["lr"] == pytest.approx(2e-3) and train[3]["lr"] == pytest.approx(2e-2)
    assert any(line.startswith("done: finetune") for line in console)


def test_run_folder_layout(full_run, corpus):
    run, _, _, _ = full_run
    _, config, vocab = corpus
    with open(run / "config.json", encoding="utf-8") as handle:
        assert json.load(handle) == config.to_dict()
    manager = ckpt.CheckpointManager(str(run / "checkpoints"), "mass", 10)
    # saved every 3 updates and at each epoch's end (2 updates per epoch): steps 2 3 4 6 6 8 9 10 12 12
    assert manager.kept() == [f"mass_finetune_step{step:07d}.ckpt" for step in (2, 3, 4, 6, 8, 9, 10, 12)]
    assert sorted(os.listdir(run / "checkpoints")) == sorted(manager.kept() + ["best.ckpt", "best_epoch2.ckpt",
                                                                              "latest.json"])
    _, optimizer_state, metadata = ckpt.read_checkpoint(manager.latest())
    position = (metadata["phase"], metadata["epoch"], metadata["batch_position"], metadata["step"])
    assert position == ("finetune", 6, 0, 12)
    assert metadata["vocab_checksum"] == vocab.checksum() and metadata["config"] == config.to_dict()
    # 1024 doubled after every 4 finite updates: 3 doublings in 12 updates
    assert (metadata["loss_scale"], metadata["good_steps"], metadata["skipped_updates"]) == (8192.0, 0, 0)
    assert optimizer_state["optimizer.global_step"].reshape(-1)[0] == 12
    ms.set_seed(5)
    model = Seq2SeqModel(config.model_config)
    best = ckpt.load_model_weights(model, str(run / "checkpoints" / "best.ckpt"), vocab.checksum())
    assert best["kind"] == "weights" and best["best_valid_loss"] == pytest.approx(min(
        r["loss"] for r in read_metrics(run) if r["type"] == "valid"))


def test_best_at_epochs_keeps_the_selection_of_a_shorter_run(full_run, corpus):
    """best_epoch2.ckpt of the 6-epoch run is, bit for bit, the best.ckpt of a run stopped after 2 epochs: one long
    run serves as both the same-epochs and the same-compute baseline in bench/reproduce.sh."""
    full, _, _, _ = full_run
    folder, config, vocab = corpus
    short_config = dataclasses.replace(config, dataset_config=dataclasses.replace(config.dataset_config, epochs=2))
    short = folder / "short"
    trainer.Trainer(short_config, str(short), vocab_checksum=vocab.checksum(), console=lambda line: None).run()
    snapshot_weights = ckpt.read_checkpoint(str(full / "checkpoints" / "best_epoch2.ckpt"))[0]
    short_weights = ckpt.read_checkpoint(str(short / "checkpoints" / "best.ckpt"))[0]
    assert snapshot_weights.keys() == short_weights.keys()
    for key in short_weights:
        np.testing.assert_array_equal(snapshot_weights[key], short_weights[key], err_msg=key)
    final_weights = ckpt.read_checkpoint(str(full / "checkpoints" / "best.ckpt"))[0]
    assert any(not np.array_equal(final_weights[key], short_weights[key]) for key in short_weights)
    assert not os.path.exists(full / "checkpoints" / "best_epoch1.ckpt")


def snapshot(network):
    return ckpt.model_weights(network.model), ckpt.optimizer_state(network.optimizer, network.model)


def graph_restorer(network):
    """Saves and restores every optimizer parameter (weights, moments, step) through a graph.

    Parameter.set_data after a graph has run rebinds the Python object only: compiled graphs keep the old
    storage, so state is written back by a graph-side assign.
    """
    params = tuple(network.optimizer.get_parameters())

    @ms.jit
    def restore(values):
        for param, value in zip(params, values):
            ms.ops.assign(param, value)
        return values[0]

    def save():
        return tuple(ms.Tensor(param.asnumpy().copy()) for param in params)

    return save, restore


def assert_states_close(a, b, **tolerance):
    for first, second in zip(a, b):
        assert first.keys() == second.keys()
        for name in first:
            np.testing.assert_allclose(first[name], second[name], err_msg=name, **tolerance)


def in_place_rows(batch, rows):
    """The batch with every row outside `rows` turned into a pad row (same shape: no recompiling; same row
    positions: the same dropout masks as in the full batch)."""
    out = {name: array.copy() for name, array in batch.items()}
    others = [row for row in range(len(batch["source_ids"])) if row not in rows]
    for name in out:
        out[name][others] = 0 if name != "example_index" else -1
    return out


def test_accumulating_two_micro_batches_equals_one_full_batch(full_run):
    """After training (Adam moments non-zero, dropout on), one update over a full batch equals the update
    accumulated over its two halves (token-weighted: the halves hold different numbers of target tokens)."""
    network = full_run[3].network
    batch = full_run[3].batches("finetune", 0).batch(0)
    tokens = int((batch["target_ids"] != 0).sum())
    first, second = in_place_rows(batch, range(4)), in_place_rows(batch, range(4, 10))
    assert int((first["target_ids"] != 0).sum()) != int((second["target_ids"] != 0).sum())
    save, restore = graph_restorer(network)
    saved = save()
    initial = snapshot(network)

    full_totals, full_finite, full_norm = network.train_step.update(to_tensors(batch), 1.0 / tokens, 1.0,
                                                                    5e-3, 77, np.zeros(4))
    after_full = snapshot(network)
    restore(saved)
    assert_states_close(snapshot(network), initial, rtol=0, atol=0)
    loss_sum, nll_sum, micro_tokens = network.train_step.accumulate(to_tensors(first), 1.0 / tokens, 77)
    partial = [float(loss_sum.asnumpy()), float(nll_sum.asnumpy()), float(micro_tokens.asnumpy()), 0.0]
    totals, finite, norm = network.train_step.update(to_tensors(second), 1.0 / tokens, 1.0, 5e-3, 77, partial)
    after_accumulation = snapshot(network)

    assert bool(full_finite.asnumpy()) and bool(finite.asnumpy())
    assert totals.asnumpy()[2] == full_totals.asnumpy()[2] == tokens
    np.testing.assert_allclose(totals.asnumpy(), full_totals.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(norm.asnumpy(), full_norm.asnumpy(), rtol=1e-5)
    # Attention key biases have a zero true gradient (softmax ignores a constant added to every score): Adam turns
    # their rounding noise into steps of up to lr, so only their (Adam-moment) states are left out of the check.
    without_key_bias = [[{name: value for name, value in part.items() if not name.endswith("key.bias")}
                         for part in state] for state in (after_full, after_accumulation)]
    assert_states_close(*without_key_bias, rtol=1e-4, atol=1e-6)
    moved = np.abs(after_full[0]["embedder.table"] - initial[0]["embedder.table"]).max()
    assert moved > 1e-4  # the update did something measurable
    for accumulator in network.train_step.accumulators:
        assert not accumulator.asnumpy().any()


def test_overflowing_update_is_skipped_and_halves_the_dynamic_scale(full_run):
    network = full_run[3].network
    batch = full_run[3].batches("finetune", 0).batch(1)
    before = snapshot(network)
    scaler = LossScaler("dynamic", 1024.0, factor=2.0, window=5)
    # An infinite loss weight stands for a loss scale too large for the gradients' float range.
    totals, finite, _ = network.train_step.update(to_tensors(batch), float("inf"), 1.0 / scaler.scale, 5e-3,
                                                  0, np.zeros(4))
    scaler.update(bool(finite.asnumpy()))
    assert not bool(finite.asnumpy()) and scaler.scale == 512.0
    assert np.isfinite(totals.asnumpy()).all()
    after = snapshot(network)
    for first, second in zip(before, after):
        for name in first:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)  # moments and step included


def run_train(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def without_timing(records):
    return [{key: value for key, value in record.items() if key not in TIMING_FIELDS} for record in records]


def test_resumed_run_reproduces_the_uninterrupted_run(full_run, corpus):
    """A fresh process resumes the uninterrupted run's mid-epoch checkpoint of step 3 and is stopped by SIGTERM
    (sent by --max_updates) at step 9: its checkpoint equals the uninterrupted run's step-9 checkpoint bit for bit
    (weights, Adam state, loss scale, data position), and so do the metrics logged on the way."""
    full, _, _, _ = full_run
    folder, _, vocab = corpus
    run = folder / "resumed"
    os.makedirs(run / "checkpoints")
    start = "mass_finetune_step0000003.ckpt"
    shutil.copy(full / "checkpoints" / start, run / "checkpoints" / start)
    with open(run / "checkpoints" / "latest.json", "w", encoding="utf-8") as handle:
        json.dump({"kept": [start]}, handle)
    shutil.copy(full / "metrics.jsonl", run / "metrics.jsonl")  # truncated to the checkpoint's lines on resume
    assert ckpt.read_checkpoint(str(run / "checkpoints" / start))[2]["batch_position"] == 2  # inside epoch 2

    result = run_train("--config", str(folder / "config.json"), "--output", str(run), "--vocab",
                       str(folder / "vocab.txt"), "--resume", "--max_updates", "6", "--log_every", "1", "--no_plot")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "epoch 2, batch 2, step 3" in result.stdout
    assert "stopped at finetune step 9 (epoch 5, batch 2/3); continue with --resume" in result.stdout

    name = "mass_finetune_step0000009.ckpt"
    resumed = ckpt.read_checkpoint(str(run / "checkpoints" / name))
    uninterrupted = ckpt.read_checkpoint(str(full / "checkpoints" / name))
    for first, second in zip(resumed[:2], uninterrupted[:2]):
        assert first.keys() == second.keys()
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert resumed[2] == uninterrupted[2]
    assert (resumed[2]["epoch"], resumed[2]["batch_position"]) == (4, 2)
    lines = resumed[2]["metrics_lines"]
    assert without_timing(read_metrics(run)) == without_timing(read_metrics(full)[:lines])


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_config_and_missing_data_are_one_line_errors(corpus, tmp_path):
    folder, _, _ = corpus
    output = tmp_path / "run"
    result = run_train("--config", str(folder / "config.json"), "--output", str(output), "--set",
                       "model_config.hidden_size=wide")
    assert_one_line_error(result, "model_config.hidden_size")
    result = run_train("--config", str(folder / "config.json"), "--output", str(output), "--set",
                       "dataset_config.fine_tune_dataset=" + str(tmp_path / "absent.mindrecord"))
    assert_one_line_error(result, "absent.mindrecord")
    assert not output.exists()


def test_threads_option_is_checked(capsys):
    import eval as eval_script
    import train as train_script
    assert train_script.parse_args(["--config", "c.json", "--output", "o", "--threads", "1"]).threads == 1
    for script, required in ((train_script, ["--config", "c.json", "--output", "o"]),
                             (eval_script, ["--config", "c.json", "--checkpoint", "c.ckpt", "--vocab", "v.txt",
                                            "--metric", "ppl", "--output", "o.txt"])):
        with pytest.raises(SystemExit) as stop:
            script.parse_args(required + ["--threads", "-1"])
        assert stop.value.code == 2
        assert "--threads must be >= 0" in capsys.readouterr().err


def test_mismatched_checkpoint_is_a_one_line_error(full_run, corpus, tmp_path):
    full, _, _, _ = full_run
    folder, _, _ = corpus
    output = tmp_path / "run"
    result = run_train("--config", str(folder / "config.json"), "--output", str(output), "--set",
                       f"checkpoint_options.existed_ckpt={full / 'checkpoints' / 'best.ckpt'}", "--set",
                       "model_config.hidden_size=32")
    assert_one_line_error(result, "embedder.table", "16)", "32)")
    assert not output.exists()
    result = run_train("--config", str(folder / "config.json"), "--output", str(full))
    assert_one_line_error(result, "already holds checkpoints", "--resume")


def test_resume_refuses_a_changed_config(full_run, corpus):
    full, _, _, _ = full_run
    _, config, _ = corpus
    changed = config.replace(learn_rate_config=dataclasses.replace(config.learn_rate_config, lr=5e-3))
    with pytest.raises(UserError) as error:
        trainer.Trainer(changed, str(full)).resume_point()
    assert "learn_rate_config.lr" in str(error.value)


def test_plot_metrics_writes_a_png(full_run, tmp_path):
    from src.plot import plot_metrics, read_metrics as read_records
    run, _, _, _ = full_run
    output = plot_metrics(str(run / "metrics.jsonl"), str(tmp_path / "curves.png"))
    with open(output, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "train", "step": 1, "loss": 2.0, "phase": "pretrain"}\nnot json\n')
    with pytest.raises(UserError) as error:
        read_records(str(bad))
    assert f"{bad}:2" in str(error.value)


# The config.json of the MindSpore model zoo's MASS port, key for key and value for value.
MODEL_ZOO_CONFIG = {
    "dataset_config": {"epochs": 20, "batch_size": 192, "pre_train_dataset": "", "fine_tune_dataset": "",
                       "test_dataset": "", "valid_dataset": "", "dataset_sink_mode": False, "dataset_sink_step": 100},
    "model_config": {"random_seed": 100, "save_graphs": False, "seq_length": 64, "vocab_size": 45744,
                     "hidden_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 4096,
                     "hidden_act": "relu", "hidden_dropout_prob": 0.2, "attention_dropout_prob": 0.2,
                     "max_position_embeddings": 64, "initializer_range": 0.02, "label_smoothing": 0.1,
                     "beam_width": 4, "length_penalty_weight": 1.0, "max_decode_length": 64,
                     "input_mask_from_dataset": True},
    "loss_scale_config": {"init_loss_scale": 65536, "loss_scale_factor": 2, "scale_window": 200},
    "learn_rate_config": {"optimizer": "adam", "lr": 1e-4, "lr_scheduler": "poly", "poly_lr_scheduler_power": 0.5,
                          "decay_steps": 10000, "decay_start_step": 12000, "warmup_steps": 4000, "min_lr": 1e-6},
    "checkpoint_options": {"existed_ckpt": "", "save_ckpt_steps": 2500, "keep_ckpt_max": 50, "ckpt_prefix": "ckpt",
                           "ckpt_path": "checkpoints"},
}


def test_model_zoo_config_trains_and_save_graphs_writes_the_graphs(corpus, tmp_path):
    folder, _, vocab = corpus
    config = tmp_path / "model_zoo.json"
    config.write_text(json.dumps(MODEL_ZOO_CONFIG, indent=2))
    run = tmp_path / "run"
    # The file as it is, shrunk only in model size (a paper-size step takes minutes on CPU) and given the data.
    result = run_train("--config", str(config), "--output", str(run), "--max_updates", "1", "--no_plot",
                       "--set", f"model_config.vocab_size={len(vocab)}", "--set", "hidden_size=16",
                       "--set", "num_hidden_layers=1", "--set", "intermediate_size=32", "--set",
                       "num_attention_heads=2", "--set", "batch_size=10", "--set", "model_config.save_graphs=true",
                       "--set", f"dataset_config.fine_tune_dataset={folder / 'train.mindrecord'}")
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    assert saved["model_config"]["input_mask_from_dataset"] is True
    assert saved["learn_rate_config"]["lr_scheduler"] == "poly"
    graphs = [name for _, _, names in os.walk(run / "graphs") for name in names if name.endswith(".ir")]
    assert graphs, "save_graphs wrote no IR files into RUN/graphs"
    refused = run_train("--config", str(config), "--output", str(tmp_path / "refused"),
                        "--set", "model_config.input_mask_from_dataset=false")
    assert refused.returncode == 2 and "model_config.input_mask_from_dataset: must be true" in refused.stderr

