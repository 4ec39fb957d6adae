"""Validation during training: the pre-training phase evaluated on held-out MASS records (pre_train_valid_dataset,
built by news_crawl.py) and its pretrain_best.ckpt chosen on them, evaluation every N updates, early stopping after
`early_stop_patience` evaluations without a lower valid loss, an interrupted + resumed run equal to an uninterrupted
one, and checkpoints written before these keys existed still resuming."""
import collections
import dataclasses
import json
import os

import numpy as np
import pytest

import news_crawl
from config.config import (CheckpointOptions, ConfigError, DatasetConfig, LearnRateConfig, LossScaleConfig,
                           MassConfig, ModelConfig, config_from_dict)
from src import checkpoint as ckpt
from src import trainer
from src.dataset import iterate_batches, load_dataset
from src.device import setup_device
from src.dictionary import Dictionary
from src.masking import make_pair_example
from src.records import write_records
from src.train_step import build_network, evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "sample")
TIMING_FIELDS = ("time", "tokens_per_s", "eta_s")
EVERY, PATIENCE = 2, 2

setup_device("CPU")


def sample_lines(*parts, count, words):
    with open(os.path.join(SAMPLE, *parts), encoding="utf-8") as handle:
        return [" ".join(line.split()[:words]) for line in handle.read().splitlines()[:count]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Pre-training: 30 sample news sentences, MASS records by news_crawl.py, and 10 held-out ones masked the same
    way (fixed seed); fine-tuning: 20 sample headlines as a copy task, 10 more as its valid set."""
    folder = tmp_path_factory.mktemp("valid_schedule")
    news = sample_lines("news", "news.txt", count=40, words=12)
    titles = sample_lines("gigaword", "train.title.txt", count=30, words=10)
    vocab = Dictionary.from_counter(collections.Counter(t for line in news + titles for t in line.split()))
    vocab.persistence(str(folder / "vocab.txt"))
    for name, lines in (("train", news[:30]), ("valid", news[30:])):
        (folder / f"news.{name}.txt").write_text("".join(line + "\n" for line in lines))
        news_crawl.main(news_crawl.parse_args(["--input_files", str(folder / f"news.{name}.txt"), "--existed_vocab",
                                               str(folder / "vocab.txt"), "--output_folder", str(folder / name),
                                               "--processes", "1", "--seed", "1"]))
    pairs = [make_pair_example(vocab.encode_line(line), vocab.encode_line(line)) for line in titles]
    write_records(str(folder / "pairs_train.mindrecord"), pairs[:20])
    write_records(str(folder / "pairs_valid.mindrecord"), pairs[20:])
    # Pre-training: 3 updates an epoch, at most 4 epochs; fine-tuning: 2 updates an epoch, 3 epochs. A constant,
    # far too high learning rate makes the valid loss stop improving within a few evaluations.
    config = MassConfig(
        dataset_config=DatasetConfig(epochs=4, fine_tune_epochs=3, batch_size=10, bucket_boundaries=[16],
                                     pre_train_dataset=str(folder / "train" / "news.mindrecord"),
                                     pre_train_valid_dataset=str(folder / "valid" / "news.mindrecord"),
                                     fine_tune_dataset=str(folder / "pairs_train.mindrecord"),
                                     valid_dataset=str(folder / "pairs_valid.mindrecord")),
        model_config=ModelConfig(random_seed=1, seq_length=16, vocab_size=len(vocab), hidden_size=16,
                                 num_hidden_layers=1, num_decoder_layers=1, num_attention_heads=2, intermediate_size=32,
                                 max_position_embeddings=16, max_decode_length=12, hidden_dropout_prob=0.1,
                                 attention_dropout_prob=0.1, resumable_dropout=True),
        loss_scale_config=LossScaleConfig(init_loss_scale=1024, scale_window=4),
        learn_rate_config=LearnRateConfig(lr=0.3, lr_scheduler="constant", warmup_steps=0, decay_start_step=0,
                                          warmup_init_lr=0.3, min_lr=0.0),
        checkpoint_options=CheckpointOptions(save_ckpt_steps=100, keep_ckpt_max=30, ckpt_prefix="mass",
                                             eval_every_updates=EVERY, early_stop_patience=PATIENCE)).validate()
    return folder, config, vocab


@pytest.fixture(scope="module")
def full_run(corpus):
    folder, config, vocab = corpus
    run = folder / "full"
    summary = trainer.Trainer(config, str(run), vocab_checksum=vocab.checksum(), log_every=1,
                              console=lambda line: None).run()
    return run, summary


def read_metrics(run):
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def records_of(run, kind, phase):
    return [r for r in read_metrics(run) if r["type"] == kind and r["phase"] == phase]


def expected_stop(losses, patience):
    """Index of the evaluation after which early stopping ends a phase with these valid losses, or None."""
    best, without = None, 0
    for index, loss in enumerate(losses):
        best, without = (loss, 0) if best is None or loss < best else (best, without + 1)
        if without >= patience:
            return index
    return None


def schedule(updates_per_epoch, epochs, every):
    """(epoch, step, epoch_end) of every evaluation: every `every` updates and at each epoch end, once per step."""
    points = []
    for step in range(1, updates_per_epoch * epochs + 1):
        epoch_end = step % updates_per_epoch == 0
        if epoch_end or step % every == 0:
            points.append(((step - 1) // updates_per_epoch + 1, step, epoch_end))
    return points


def test_evaluation_every_n_updates_and_early_stopping(full_run, corpus):
    run, summary = full_run
    folder, config, _ = corpus
    assert not summary["stopped"]
    for phase, updates_per_epoch, epochs in (("pretrain", 3, 4), ("finetune", 2, 3)):
        valid = records_of(run, "valid", phase)
        losses = [r["loss"] for r in valid]
        stop = expected_stop(losses, PATIENCE)
        # Evaluated at steps 2 3 4 6 8 9 10 12 (pre-training) and 2 4 6 (fine-tuning: every epoch end, once), until
        # the stop: exactly after PATIENCE evaluations in a row without a lower loss than the best before them.
        assert [(r["epoch"], r["step"], r["epoch_end"]) for r in valid] == \
            schedule(updates_per_epoch, epochs, EVERY)[:len(valid)]
        assert len(valid) == (stop + 1 if stop is not None else len(schedule(updates_per_epoch, epochs, EVERY)))
        assert [r["early_stopped"] for r in valid] == [index == stop for index in range(len(valid))]
        assert [r["improved"] for r in valid] == [loss < min(losses[:i], default=np.inf) for i, loss in
                                                   enumerate(losses)]
        assert valid[-1]["evals_without_improvement"] == (PATIENCE if stop is not None else
                                                          len(losses) - 1 - int(np.argmin(losses)))
        train_steps = [r["step"] for r in records_of(run, "train", phase)]
        assert train_steps == list(range(1, valid[-1]["step"] + 1))  # no update after the stop
    # The far too high rate made pre-training stop early (here after step 6, at the end of epoch 2 of 4), and
    # fine-tuning ran all its epochs (its loss kept falling).
    pretrain_valid = records_of(run, "valid", "pretrain")
    assert pretrain_valid[-1]["early_stopped"] and pretrain_valid[-1]["step"] < 12
    assert records_of(run, "train", "finetune")[-1]["step"] == 6
    # The phase's end is a training checkpoint marked early-stopped; fine-tuning then ran from its weights.
    manager = ckpt.CheckpointManager(str(run / "checkpoints"), "mass", 30)
    name = f"mass_pretrain_step{pretrain_valid[-1]['step']:07d}.ckpt"
    assert name in manager.kept()
    metadata = ckpt.read_checkpoint(str(run / "checkpoints" / name))[2]
    assert (metadata["early_stopped"], metadata["evals_without_improvement"]) == (True, PATIENCE)
    assert records_of(run, "train", "finetune")[0]["step"] == 1


def test_pretraining_is_evaluated_on_held_out_mass_records(full_run, corpus):
    """Pre-training valid records come from pre_train_valid_dataset, fine-tuning ones from valid_dataset;
    pretrain_best.ckpt is the lowest loss on the held-out MASS records, which differs from its loss on the pairs."""
    run, _ = full_run
    folder, config, vocab = corpus
    pretrain_valid = config.dataset_config.pre_train_valid_dataset
    assert {r["dataset"] for r in records_of(run, "valid", "pretrain")} == {pretrain_valid}
    assert {r["dataset"] for r in records_of(run, "valid", "finetune")} == {config.dataset_config.valid_dataset}
    network = build_network(config, hide_masked_source=True)
    metadata = ckpt.load_model_weights(network.model, str(run / "checkpoints" / "pretrain_best.ckpt"), vocab.checksum())
    losses = [r["loss"] for r in records_of(run, "valid", "pretrain")]
    assert metadata["phase"] == "pretrain" and metadata["best_valid_loss"] == min(losses)

    def loss_on(path):
        batches = iterate_batches(load_dataset(path), batch_size=10, bucket_boundaries=[16], shuffle=False,
                                  eval_mode=True)
        return evaluate(network.eval_step, batches, network.model)["loss"]

    assert loss_on(pretrain_valid) == pytest.approx(min(losses), rel=1e-6)
    assert abs(loss_on(config.dataset_config.valid_dataset) - min(losses)) > 0.1
    best = ckpt.read_checkpoint(str(run / "checkpoints" / "best.ckpt"))[2]
    assert best["phase"] == "finetune"
    assert best["best_valid_loss"] == min(r["loss"] for r in records_of(run, "valid", "finetune"))


def without_timing(records):
    return [{key: value for key, value in record.items() if key not in TIMING_FIELDS} for record in records]


def test_resume_in_the_middle_of_an_eval_every_n_run_is_exact(full_run, corpus):
    """Stopped (as by SIGTERM) right after pre-training step 4, an evaluation inside epoch 2, then resumed: the same
    valid records, early stop, best checkpoints and final weights as the uninterrupted run, bit for bit."""
    full, full_summary = full_run
    folder, config, vocab = corpus
    run = folder / "resumed"
    stopped = trainer.Trainer(config, str(run), vocab_checksum=vocab.checksum(), log_every=1, max_updates=4,
                              console=lambda line: None).run()
    assert stopped["stopped"] and (stopped["phase"], stopped["step"]) == ("pretrain", 4)
    latest = ckpt.read_checkpoint(ckpt.CheckpointManager(str(run / "checkpoints"), "mass", 30).latest())[2]
    assert (latest["epoch"], latest["batch_position"]) == (1, 1)
    assert records_of(run, "valid", "pretrain")[-1]["step"] == 4  # evaluated before the stop checkpoint
    summary = trainer.Trainer(config, str(run), vocab_checksum=vocab.checksum(), log_every=1,
                              console=lambda line: None).run(resume=True)
    assert not summary["stopped"]
    assert summary["parameters_sha256"] == full_summary["parameters_sha256"]
    assert summary["best_valid_loss"] == full_summary["best_valid_loss"]
    assert without_timing(read_metrics(run)) == without_timing(read_metrics(full))
    for name in ("pretrain_best.ckpt", "best.ckpt"):
        resumed, uninterrupted = (ckpt.read_checkpoint(str(folder / where / "checkpoints" / name))
                                  for where in ("resumed", "full"))
        assert resumed[0].keys() == uninterrupted[0].keys()
        for key in resumed[0]:
            np.testing.assert_array_equal(resumed[0][key], uninterrupted[0][key], err_msg=f"{name}: {key}")
        assert {k: v for k, v in resumed[2].items() if k != "metrics_lines"} == \
            {k: v for k, v in uninterrupted[2].items() if k != "metrics_lines"}


def test_checkpoint_without_the_new_fields_resumes(corpus, tmp_path):
    """A training checkpoint written before pre_train_valid_dataset, eval_every_updates, early_stop_patience and the
    early-stopping state existed resumes with their defaults."""
    folder, config, vocab = corpus
    old_config = config.replace(
        dataset_config=dataclasses.replace(config.dataset_config, pre_train_valid_dataset=""),
        checkpoint_options=dataclasses.replace(config.checkpoint_options, eval_every_updates=0, early_stop_patience=0))
    runner = trainer.Trainer(old_config, str(tmp_path), vocab_checksum=vocab.checksum(), console=lambda line: None)
    runner.start_phase("pretrain")
    runner.state.step, runner.state.epoch, runner.state.best_valid_loss = 5, 1, 4.5
    metadata = runner.metadata()
    for key in ("evals_without_improvement", "early_stopped"):
        del metadata[key]
    del metadata["config"]["dataset_config"]["pre_train_valid_dataset"]
    for key in ("eval_every_updates", "early_stop_patience"):
        del metadata["config"]["checkpoint_options"][key]
    runner.checkpoints.save(runner.network.model, runner.network.optimizer, metadata)
    resumed = trainer.Trainer(old_config, str(tmp_path), vocab_checksum=vocab.checksum(), console=lambda line: None)
    phase, path, saved = resumed.resume_point()
    resumed.start_phase(phase, resume_from=(path, saved))
    assert resumed.state == trainer.TrainState(phase="pretrain", epoch=1, step=5, loss_scale=1024.0,
                                               best_valid_loss=4.5, evals_without_improvement=0, early_stopped=False)
    with pytest.raises(Exception, match="checkpoint_options.eval_every_updates"):  # not a key a resume may change
        trainer.Trainer(config, str(tmp_path), vocab_checksum=vocab.checksum()).resume_point()


@pytest.mark.parametrize("groups, message", [
    ({"checkpoint_options": {"eval_every_updates": -1}},
     "config key checkpoint_options.eval_every_updates: must be >= 0"),
    ({"checkpoint_options": {"early_stop_patience": -2}}, "config key checkpoint_options.early_stop_patience: must be"),
    ({"checkpoint_options": {"early_stop_patience": 3}},
     "config key checkpoint_options.early_stop_patience: needs a validation set"),
    ({"checkpoint_options": {"eval_every_updates": 100}, "dataset_config": {"fine_tune_dataset": "x.mindrecord"}},
     "config key checkpoint_options.eval_every_updates: needs a validation set"),
])
def test_config_errors(groups, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(groups)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert config_from_dict({"checkpoint_options": {"early_stop_patience": 3},
                             "dataset_config": {"pre_train_valid_dataset": "v.mindrecord"}})
