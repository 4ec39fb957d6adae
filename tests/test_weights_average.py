"""weights_average: the element-wise mean of model weights only; one-line errors on mismatched checkpoints."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from config.config import ModelConfig
from src import checkpoint as ckpt
from src.errors import UserError
from src.model import Seq2SeqModel
from weights_average import average_checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(seed, vocab_size=40):
    config = ModelConfig(random_seed=1, seq_length=16, vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                         num_decoder_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=16, max_decode_length=12)
    config.validate()
    ms.set_seed(seed)
    return Seq2SeqModel(config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three training checkpoints (weights + Adam state + metadata) of differently seeded models."""
    folder = tmp_path_factory.mktemp("average")
    manager = ckpt.CheckpointManager(str(folder), "mass", keep_max=5)
    weights = []
    for step, seed in ((1, 11), (2, 12), (3, 13)):
        model = make_model(seed)
        optimizer = nn.Adam(model.trainable_params(), learning_rate=1e-3)
        manager.save(model, optimizer, {"phase": "pretrain", "step": step, "vocab_checksum": "v1"})
        weights.append(ckpt.model_weights(model))
    return folder, manager, weights


def expected_mean(weight_list):
    return {name: (sum(w[name].astype(np.float64) for w in weight_list) / len(weight_list)).astype(np.float32)
            for name in weight_list[0]}


def test_two_checkpoints_average_to_their_elementwise_mean(checkpoints):
    folder, manager, weights = checkpoints
    paths = [os.path.join(folder, name) for name in manager.kept()]
    averaged = average_checkpoints(paths[:2])
    assert set(averaged) == set(weights[0])  # optimizer moments, step and metadata are not averaged
    for name, array in expected_mean(weights[:2]).items():
        assert averaged[name].dtype == np.float32
        np.testing.assert_array_equal(averaged[name], array, err_msg=name)
    np.testing.assert_allclose(averaged["embedder.table"],
                               (weights[0]["embedder.table"] + weights[1]["embedder.table"]) / 2, rtol=1e-6)


def test_three_checkpoints_divide_by_three(checkpoints):
    folder, manager, weights = checkpoints
    averaged = average_checkpoints([os.path.join(folder, name) for name in manager.kept()])
    for name, array in expected_mean(weights).items():
        np.testing.assert_array_equal(averaged[name], array, err_msg=name)


def test_mismatched_shapes_name_the_parameter(checkpoints, tmp_path):
    folder, manager, _ = checkpoints
    other = str(tmp_path / "other_vocab.ckpt")
    ckpt.save_checkpoint(other, make_model(5, vocab_size=48))
    with pytest.raises(UserError) as error:
        average_checkpoints([os.path.join(folder, manager.kept()[0]), other])
    assert "embedder.table" in str(error.value) and "\n" not in str(error.value)


def run_script(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "weights_average.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_averages_the_newest_of_a_folder_into_a_loadable_file(checkpoints, tmp_path):
    folder, _, weights = checkpoints
    output = str(tmp_path / "averaged.npz")
    result = run_script("--input_folder", str(folder), "--last", "2", "--output_file", output)
    assert result.returncode == 0, result.stderr
    assert "averaged 2 checkpoints" in result.stdout
    model = make_model(99)
    metadata = ckpt.load_model_weights(model, output, vocab_checksum="v1")
    assert metadata["kind"] == "weights" and len(metadata["averaged_from"]) == 2
    for name, array in expected_mean(weights[1:]).items():
        np.testing.assert_array_equal(ckpt.model_weights(model)[name], array, err_msg=name)


def test_cli_error_is_one_line_and_leaves_no_output(checkpoints, tmp_path):
    folder, manager, _ = checkpoints
    other = str(tmp_path / "other_vocab.ckpt")
    ckpt.save_checkpoint(other, make_model(5, vocab_size=48))
    output = str(tmp_path / "averaged.ckpt")
    result = run_script("--input_files", f"{os.path.join(folder, manager.kept()[0])},{other}",
                        "--output_file", output)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "embedder.table" in lines[0]
    assert "Traceback" not in result.stderr and not os.path.exists(output)


def test_cli_takes_a_space_separated_list_as_a_shell_glob_gives_it(checkpoints, tmp_path):
    folder, manager, weights = checkpoints
    paths = [os.path.join(folder, name) for name in manager.kept()]
    spaced, commas = str(tmp_path / "spaced.npz"), str(tmp_path / "commas.npz")
    assert run_script("--input_files", *paths, "--output_file", spaced).returncode == 0
    assert run_script("--input_files", ",".join(paths), "--output_file", commas).returncode == 0
    for output in (spaced, commas):
        model = make_model(99)
        ckpt.load_model_weights(model, output, vocab_checksum="v1")
        for name, array in expected_mean(weights).items():
            np.testing.assert_array_equal(ckpt.model_weights(model)[name], array, err_msg=name)
