"""Typed config: templates load, each error class is one line naming the key, overrides are type-checked."""
import json

import pytest

from config.config import ConfigError, MassConfig, config_from_dict, load_config

from conftest import REPO


def test_paper_template_is_paper_size():
    config = load_config(f"{REPO}/config/config.json")
    model = config.model_config
    assert (model.num_hidden_layers, model.decoder_layers, model.hidden_size, model.intermediate_size,
            model.num_attention_heads) == (6, 6, 1024, 4096, 8)


def test_tiny_template_loads_and_round_trips(tmp_path):
    config = load_config(f"{REPO}/config/config_tiny.json")
    config.save(tmp_path / "resolved.json")
    assert load_config(tmp_path / "resolved.json") == config
    assert config_from_dict(config.to_dict()) == config


def test_decoder_depth_defaults_to_encoder_depth():
    config = config_from_dict({"model_config": {"num_hidden_layers": 3}})
    assert config.model_config.decoder_layers == 3


@pytest.mark.parametrize("data, message", [
    ({"model_config": {"hidden_sise": 8}}, "config key model_config.hidden_sise: unknown key"),
    ({"model_cfg": {}}, "config key model_cfg: unknown group"),
    ({"model_config": {"hidden_size": "1024"}}, "config key model_config.hidden_size: expected int, got str"),
    ({"model_config": {"hidden_size": 1024.0}}, "config key model_config.hidden_size: expected int, got float"),
    ({"dataset_config": {"shuffle": 1}}, "config key dataset_config.shuffle: expected bool, got int"),
    ({"dataset_config": {"bucket_boundaries": [8, "x"]}}, "config key dataset_config.bucket_boundaries: expected int"),
    ({"model_config": {"hidden_size": 100, "num_attention_heads": 8}},
     "config key model_config.hidden_size: must be divisible by num_attention_heads (8)"),
    ({"model_config": {"hidden_act": "tanh"}}, "config key model_config.hidden_act: must be one of relu, gelu"),
    ({"learn_rate_config": {"lr": -1}}, "config key learn_rate_config.lr: must be > 0"),
    ({"learn_rate_config": {"optimizer": "sgd"}}, "config key learn_rate_config.optimizer: must be one of"),
    ({"learn_rate_config": {"warmup_steps": 10, "decay_start_step": 5}},
     "config key learn_rate_config.decay_start_step: must be >= warmup_steps (10)"),
    ({"loss_scale_config": {"loss_scale_mode": "auto"}}, "config key loss_scale_config.loss_scale_mode"),
    ({"checkpoint_options": {"keep_ckpt_max": 0}}, "config key checkpoint_options.keep_ckpt_max: must be >= 1"),
    ({"model_config": {"max_position_embeddings": 32, "seq_length": 64}},
     "config key model_config.max_position_embeddings: must be >= seq_length (64)"),
    ([], "config: expected a JSON object"),
])
def test_each_error_names_the_key(data, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_overrides_are_type_checked(tmp_path):
    path = f"{REPO}/config/config_tiny.json"
    config = load_config(path, ["model_config.hidden_size=32", "lr=0.01", "shuffle=false",
                                "bucket_boundaries=[8,16]", "ckpt_prefix=run1"])
    assert config.model_config.hidden_size == 32
    assert config.learn_rate_config.lr == 0.01
    assert config.dataset_config.shuffle is False
    assert config.dataset_config.bucket_boundaries == [8, 16]
    assert config.checkpoint_options.ckpt_prefix == "run1"
    for override, message in [("hidden_size=big", "model_config.hidden_size: expected int, got str"),
                              ("nosuchkey=1", "config key nosuchkey: unknown key"),
                              ("hidden_size", "expected KEY=VALUE"),
                              ("model_config.nosuch=1", "model_config.nosuch: unknown key"),
                              ("hidden_size=30", "must be divisible by num_attention_heads")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(path, [override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "model_config": {\n    "hidden_size": 8,\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"broken.json:4: invalid JSON"):
        load_config(broken)


def test_config_is_frozen():
    config = MassConfig()
    with pytest.raises(Exception):
        config.model_config.hidden_size = 3
