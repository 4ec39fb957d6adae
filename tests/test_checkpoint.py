"""Checkpoint files: exact round trips (.ckpt and .npz), strict loading with one-line errors, rotation."""
import dataclasses
import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from config.config import ModelConfig
from src import checkpoint as ckpt
from src.errors import UserError
from src.model import Seq2SeqModel


def tiny_config(**changes):
    base = ModelConfig(random_seed=1, seq_length=16, vocab_size=40, hidden_size=16, num_hidden_layers=1,
                       num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                       max_decode_length=12)
    config = dataclasses.replace(base, **changes)
    config.validate()
    return config


def make_model(seed, **changes):
    ms.set_seed(seed)
    return Seq2SeqModel(tiny_config(**changes))


def weights_of(model):
    return ckpt.model_weights(model)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("suffix", [".ckpt", ".npz"])
def test_weights_round_trip_exactly_with_metadata(tmp_path, suffix):
    source, target = make_model(1), make_model(2)
    assert not np.array_equal(weights_of(source)["embedder.table"], weights_of(target)["embedder.table"])
    path = str(tmp_path / f"model{suffix}")
    ckpt.save_checkpoint(path, source, metadata={"kind": "weights", "vocab_checksum": "abc", "step": 7})
    metadata = ckpt.load_model_weights(target, path, vocab_checksum="abc")
    assert metadata == {"kind": "weights", "vocab_checksum": "abc", "step": 7}
    assert_same_weights(weights_of(source), weights_of(target))
    assert sorted(os.listdir(tmp_path)) == [f"model{suffix}"]  # no temporary file left behind


def test_names_are_relative_to_the_model_even_when_wrapped(tmp_path):
    from src.model import LossNetwork
    model = make_model(1)
    LossNetwork(model, 0.1)  # wrapping renames the Parameters to model.*; checkpoint names must not change
    names = list(weights_of(model))
    assert names[0] == "embedder.table" and all(not name.startswith("model.") for name in names)


def test_optimizer_state_round_trip(tmp_path):
    model = make_model(1)
    optimizer = nn.Adam(model.trainable_params(), learning_rate=1e-3)
    rng = np.random.default_rng(0)
    for param in optimizer.get_parameters():
        if param.name.startswith(("moment1", "moment2")):
            param.set_data(ms.Tensor(rng.standard_normal(param.shape).astype(np.float32)))
    optimizer.global_step.set_data(ms.Tensor(np.array([17], np.int32)))
    saved = ckpt.optimizer_state(optimizer, model)
    assert "optimizer.global_step" in saved and not any(name.endswith("embedder.table") and "moment" not in name
                                                        for name in saved)
    path = str(tmp_path / "train.ckpt")
    ckpt.save_checkpoint(path, model, optimizer, {"kind": "training"})
    fresh_model = make_model(2)
    fresh = nn.Adam(fresh_model.trainable_params(), learning_rate=1e-3)
    weights, state, _ = ckpt.read_checkpoint(path)
    ckpt.load_optimizer_state(fresh, fresh_model, state, path)
    restored = ckpt.optimizer_state(fresh, fresh_model)
    assert restored.keys() == saved.keys()
    for name in saved:
        np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)
    assert set(weights) == set(weights_of(model))  # optimizer entries are kept apart from the weights


def one_line(error):
    text = str(error.value)
    assert "\n" not in text
    return text


def test_shape_mismatch_names_the_first_parameter(tmp_path):
    path = str(tmp_path / "small_vocab.ckpt")
    ckpt.save_checkpoint(path, make_model(1))
    with pytest.raises(UserError) as error:
        ckpt.load_model_weights(make_model(1, vocab_size=48), path)
    text = one_line(error)
    assert "embedder.table" in text and "(40, 16)" in text and "(48, 16)" in text


def test_missing_and_unexpected_parameters(tmp_path):
    weights = weights_of(make_model(1))
    missing = dict(weights)
    del missing["encoder.final_norm.gamma"]
    ckpt.write_checkpoint(str(tmp_path / "missing.npz"), missing)
    with pytest.raises(UserError) as error:
        ckpt.load_model_weights(make_model(2), str(tmp_path / "missing.npz"))
    assert "lacks the model parameter encoder.final_norm.gamma" in one_line(error)
    extra = dict(weights, **{"decoder.extra.weight": np.zeros(3, np.float32)})
    ckpt.write_checkpoint(str(tmp_path / "extra.ckpt"), extra)
    with pytest.raises(UserError) as error:
        ckpt.load_model_weights(make_model(2), str(tmp_path / "extra.ckpt"))
    assert "decoder.extra.weight" in one_line(error)


def test_vocabulary_and_file_errors(tmp_path):
    path = str(tmp_path / "model.ckpt")
    ckpt.save_checkpoint(path, make_model(1), metadata={"vocab_checksum": "aaaa"})
    with pytest.raises(UserError) as error:
        ckpt.load_model_weights(make_model(1), path, vocab_checksum="bbbb")
    assert "aaaa" in one_line(error) and "bbbb" in str(error.value)
    ckpt.load_model_weights(make_model(1), path, vocab_checksum="")  # unknown vocabulary: no check
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint" * 8)
    (tmp_path / "garbage.npz").write_bytes(b"not an archive" * 8)
    for name in ("garbage.ckpt", "garbage.npz", "absent.ckpt", "model.pt"):
        with pytest.raises(UserError) as error:
            ckpt.load_model_weights(make_model(1), str(tmp_path / name))
        assert name in one_line(error)


def test_manager_keeps_the_newest_and_points_at_the_latest(tmp_path):
    model = make_model(1)
    manager = ckpt.CheckpointManager(str(tmp_path), "mass", keep_max=2)
    assert manager.latest() is None
    for step in (5, 10, 15, 15, 20):
        manager.save(model, None, {"phase": "pretrain", "step": step})
    assert manager.kept() == ["mass_pretrain_step0000015.ckpt", "mass_pretrain_step0000020.ckpt"]
    assert manager.latest() == str(tmp_path / "mass_pretrain_step0000020.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "mass_pretrain_step0000015.ckpt",
                                            "mass_pretrain_step0000020.ckpt"]
    assert ckpt.read_checkpoint(manager.latest())[2] == {"phase": "pretrain", "step": 20}


def dead_pid():
    """The pid of a process that has exited (and been waited for)."""
    import subprocess
    import sys
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_carry_the_writers_pid_and_vanish_on_failure(tmp_path, monkeypatch):
    seen = []
    original = ms.save_checkpoint

    def failing_save(entries, name, **options):
        original(entries, name, **options)  # the temporary is complete on disk when the failure hits
        seen.append(os.path.basename(name))
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", failing_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(str(tmp_path / "model.ckpt"), make_model(1))
    assert seen == [f".model.ckpt.{os.getpid()}.tmp.ckpt"]
    assert os.listdir(tmp_path) == []


def test_manager_removes_the_temporaries_of_killed_writers_only(tmp_path):
    dead, live = dead_pid(), os.getppid()  # the parent (pytest's launcher) outlives this test
    abandoned = [f".mass_pretrain_step0000005.ckpt.{dead}.tmp.tmp",  # MindSpore's own, mid-write
                 f".mass_pretrain_step0000005.ckpt.{dead}.tmp.ckpt",  # complete, not yet renamed
                 f".best.ckpt.{dead}.tmp.ckpt", f".model.npz.{dead}.tmp.npz", f".latest.json.{dead}.tmp"]
    kept = [f".mass_pretrain_step0000010.ckpt.{live}.tmp.tmp",  # a writer still running
            f".notes.txt.{dead}.tmp",  # not a checkpoint's temporary
            ".latest.json.k3j2h1g0.tmp",  # no pid: its writer is unknown
            "mass_pretrain_step0000001.ckpt"]
    for name in abandoned + kept:
        (tmp_path / name).write_bytes(b"partial")
    manager = ckpt.CheckpointManager(str(tmp_path), "mass", keep_max=2)
    assert sorted(os.path.basename(path) for path in manager.removed) == sorted(abandoned)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert ckpt.CheckpointManager(str(tmp_path / "absent"), "mass", keep_max=2).removed == []


def test_copy_checkpoint_is_atomic(tmp_path):
    source = ckpt.save_checkpoint(str(tmp_path / "best.ckpt"), make_model(1), metadata={"step": 3})
    copy = ckpt.copy_checkpoint(source, str(tmp_path / "best_epoch2.ckpt"))
    assert open(copy, "rb").read() == open(source, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "best_epoch2.ckpt"]
