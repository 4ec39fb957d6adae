"""Typed configuration: five groups, key names as in the classic MASS config.json.

`load_config(path, overrides)` reads JSON, applies `group.key=value` overrides, checks every key and
type, and returns a frozen `MassConfig`. Errors are one line naming the key.
"""
import dataclasses
import json
import typing

from src.errors import UserError, atomic_open


class ConfigError(UserError):
    pass


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    epochs: int = 2
    batch_size: int = 32
    pre_train_dataset: str = ""
    fine_tune_dataset: str = ""
    test_dataset: str = ""
    valid_dataset: str = ""
    dataset_sink_mode: bool = False
    dataset_sink_step: int = 100
    # Additions (README "Configuration"):
    max_tokens: int = 0              # >0: token-budget batches instead of batch_size sentences
    bucket_boundaries: typing.List[int] = dataclasses.field(default_factory=lambda: [16, 32, 64])
    shuffle: bool = True
    masking: str = "static"          # static: masked when built; dynamic: re-drawn each epoch in the loader
    language_model: str = "mass"     # mass | loose | mlm (dynamic masking of pre-training data)
    mask_ratio: float = 0.5
    noise_prob: float = 0.0          # dynamic noise channel on fine-tuning sources
    vocab: str = ""                  # vocabulary file the records were built with
    fine_tune_epochs: int = 0        # 0: same as epochs
    # Held-out monolingual records, MASS-masked when built (news_crawl.py's fixed seed): the pre-training phase is
    # evaluated (and pretrain_best.ckpt selected) on them instead of valid_dataset. "": valid_dataset as before.
    pre_train_valid_dataset: str = ""
    # true: the train and eval steps are compiled once for all bucket shapes (MindSpore dynamic shapes); false: once
    # per (rows, source length, target length) shape, each compiled graph keeping its own memory.
    dynamic_shapes: bool = True
    # Streaming loader (src/dataset.py): rows per shuffle and bucketing window of a record file (0: a window per
    # file), and worker processes per rank that read, mask and pad MindRecord batches (0: in the training process).
    window_rows: int = 100000
    loader_workers: int = 2

    def validate(self):
        _check(self.epochs >= 1, "dataset_config.epochs", "must be >= 1")
        _check(self.batch_size >= 1, "dataset_config.batch_size", "must be >= 1")
        _check(self.max_tokens >= 0, "dataset_config.max_tokens", "must be >= 0")
        _check(self.dataset_sink_step >= 1, "dataset_config.dataset_sink_step", "must be >= 1")
        _check(list(self.bucket_boundaries) == sorted(set(self.bucket_boundaries)) and all(
            b >= 2 for b in self.bucket_boundaries), "dataset_config.bucket_boundaries",
            "must be strictly increasing lengths >= 2")
        _choice(self.masking, ("static", "dynamic"), "dataset_config.masking")
        _choice(self.language_model, ("mass", "loose", "mlm"), "dataset_config.language_model")
        _check(0.0 < self.mask_ratio <= 1.0, "dataset_config.mask_ratio", "must be in (0, 1]")
        _check(0.0 <= self.noise_prob < 1.0, "dataset_config.noise_prob", "must be in [0, 1)")
        _check(self.fine_tune_epochs >= 0, "dataset_config.fine_tune_epochs", "must be >= 0")
        _check(self.window_rows >= 0, "dataset_config.window_rows", "must be >= 0")
        _check(self.loader_workers >= 0, "dataset_config.loader_workers", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    random_seed: int = 100
    seq_length: int = 64
    vocab_size: int = 45526
    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 4096
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.2
    attention_dropout_prob: float = 0.2
    max_position_embeddings: int = 64
    initializer_range: float = 0.02
    label_smoothing: float = 0.1
    beam_width: int = 4
    length_penalty_weight: float = 1.0
    max_decode_length: int = 64
    # MindSpore's save_graphs: the compiled graphs (IR files) of the run go to RUN/graphs.
    save_graphs: bool = False
    # The classic port read the encoder's padding mask from an `input_mask` record column. Here the attention masks
    # are always derived from the ids (pad id 0), which is the same mask, so only true is meaningful.
    input_mask_from_dataset: bool = True
    # Additions (README "Configuration"):
    num_decoder_layers: int = 0      # 0: same as num_hidden_layers
    pre_layernorm: bool = True       # False: post-LayerNorm (original Transformer)
    compute_type: str = "float32"    # float16 mixed precision on GPU/Ascend
    min_decode_length: int = 0
    no_repeat_ngram_size: int = 0
    # Beam search subtracts this from <unk>'s log-probability at every step (fairseq's --unkpen): 0 leaves the
    # scores as they are, larger values make hypotheses with <unk> rarer.
    unk_penalty: float = 0.0
    # true: dropout masks hashed from (micro-batch, position), so a resumed run repeats them bit for bit; on CPU it
    # costs ~40% step time and ~2x compile time, hence off by default (resume is exact apart from the masks).
    resumable_dropout: bool = False

    @property
    def decoder_layers(self):
        return self.num_decoder_layers or self.num_hidden_layers

    def validate(self):
        for key in ("seq_length", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "beam_width", "max_decode_length"):
            _check(getattr(self, key) >= 1, f"model_config.{key}", "must be >= 1")
        _check(self.vocab_size >= 5, "model_config.vocab_size", "must be >= 5 (the special symbols)")
        _check(self.hidden_size % self.num_attention_heads == 0, "model_config.hidden_size",
               f"must be divisible by num_attention_heads ({self.num_attention_heads})")
        _choice(self.hidden_act, ("relu", "gelu"), "model_config.hidden_act")
        _choice(self.compute_type, ("float32", "float16"), "model_config.compute_type")
        for key in ("hidden_dropout_prob", "attention_dropout_prob", "label_smoothing"):
            _check(0.0 <= getattr(self, key) < 1.0, f"model_config.{key}", "must be in [0, 1)")
        _check(self.initializer_range > 0, "model_config.initializer_range", "must be > 0")
        _check(self.num_decoder_layers >= 0, "model_config.num_decoder_layers", "must be >= 0")
        _check(self.length_penalty_weight >= 0, "model_config.length_penalty_weight", "must be >= 0")
        _check(0 <= self.min_decode_length < self.max_decode_length, "model_config.min_decode_length",
               "must be >= 0 and below max_decode_length")
        _check(self.no_repeat_ngram_size >= 0, "model_config.no_repeat_ngram_size", "must be >= 0")
        _check(0.0 <= self.unk_penalty < float("inf"), "model_config.unk_penalty", "must be a finite number >= 0")
        _check(self.input_mask_from_dataset, "model_config.input_mask_from_dataset",
               "must be true: attention masks always come from the padding ids (false, attending to padding, "
               "is not supported)")
        _check(self.max_position_embeddings >= self.seq_length, "model_config.max_position_embeddings",
               f"must be >= seq_length ({self.seq_length})")
        _check(self.max_position_embeddings >= self.max_decode_length, "model_config.max_position_embeddings",
               f"must be >= max_decode_length ({self.max_decode_length})")


@dataclasses.dataclass(frozen=True)
class LossScaleConfig:
    loss_scale_mode: str = "dynamic"  # dynamic | static | none
    init_loss_scale: float = 65536.0
    loss_scale_factor: float = 2.0
    scale_window: int = 200

    def validate(self):
        _choice(self.loss_scale_mode, ("dynamic", "static", "none"), "loss_scale_config.loss_scale_mode")
        _check(self.init_loss_scale >= 1, "loss_scale_config.init_loss_scale", "must be >= 1")
        _check(self.loss_scale_factor > 1, "loss_scale_config.loss_scale_factor", "must be > 1")
        _check(self.scale_window >= 1, "loss_scale_config.scale_window", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class LearnRateConfig:
    optimizer: str = "adam"           # adam | momentum | lamb
    lr: float = 1e-4
    lr_scheduler: str = "isr"         # poly | isr | constant
    poly_lr_scheduler_power: float = 0.5
    decay_steps: int = 10000
    decay_start_step: int = 12000
    warmup_steps: int = 4000
    min_lr: float = 1e-6
    # Additions (README "Configuration"):
    warmup_init_lr: float = 1e-7      # warm-up starts here, not at 0
    update_freq: int = 1              # gradient accumulation steps
    clip_norm: float = 1.0            # global-norm clipping; 0 disables
    weight_decay: float = 0.0
    momentum: float = 0.9
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8

    def validate(self):
        _choice(self.optimizer, ("adam", "momentum", "lamb"), "learn_rate_config.optimizer")
        _choice(self.lr_scheduler, ("poly", "isr", "constant"), "learn_rate_config.lr_scheduler")
        _check(self.lr > 0, "learn_rate_config.lr", "must be > 0")
        _check(0 <= self.min_lr <= self.lr, "learn_rate_config.min_lr", "must be in [0, lr]")
        _check(0 <= self.warmup_init_lr <= self.lr, "learn_rate_config.warmup_init_lr", "must be in [0, lr]")
        _check(self.warmup_steps >= 0, "learn_rate_config.warmup_steps", "must be >= 0")
        _check(self.decay_steps >= 1, "learn_rate_config.decay_steps", "must be >= 1")
        _check(self.decay_start_step >= self.warmup_steps, "learn_rate_config.decay_start_step",
               f"must be >= warmup_steps ({self.warmup_steps})")
        _check(self.poly_lr_scheduler_power > 0, "learn_rate_config.poly_lr_scheduler_power", "must be > 0")
        _check(self.update_freq >= 1, "learn_rate_config.update_freq", "must be >= 1")
        _check(self.clip_norm >= 0, "learn_rate_config.clip_norm", "must be >= 0")
        _check(self.weight_decay >= 0, "learn_rate_config.weight_decay", "must be >= 0")
        for key in ("momentum", "adam_beta1", "adam_beta2"):
            _check(0 <= getattr(self, key) < 1, f"learn_rate_config.{key}", "must be in [0, 1)")
        _check(self.adam_eps > 0, "learn_rate_config.adam_eps", "must be > 0")


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    existed_ckpt: str = ""
    save_ckpt_steps: int = 2500
    keep_ckpt_max: int = 50
    ckpt_prefix: str = "ckpt"
    ckpt_path: str = "checkpoints"
    # After each of these epochs (counted from 1), best.ckpt is also kept as best_epochN.ckpt: the checkpoint that a
    # run of only N epochs would select, since neither the data order nor the lr schedules depend on the total.
    best_at_epochs: typing.List[int] = dataclasses.field(default_factory=list)
    # Each phase is also evaluated every this many applied updates (0: at epoch ends only).
    eval_every_updates: int = 0
    # A phase stops once this many evaluations in a row have not lowered its best valid loss (0: never).
    early_stop_patience: int = 0

    def validate(self):
        _check(all(epoch >= 1 for epoch in self.best_at_epochs), "checkpoint_options.best_at_epochs",
               "must be epoch numbers >= 1")
        _check(self.save_ckpt_steps >= 1, "checkpoint_options.save_ckpt_steps", "must be >= 1")
        _check(self.keep_ckpt_max >= 1, "checkpoint_options.keep_ckpt_max", "must be >= 1")
        _check(self.eval_every_updates >= 0, "checkpoint_options.eval_every_updates",
               "must be >= 0 (0: epoch ends only)")
        _check(self.early_stop_patience >= 0, "checkpoint_options.early_stop_patience", "must be >= 0 (0: off)")
        _check(bool(self.ckpt_prefix) and "/" not in self.ckpt_prefix, "checkpoint_options.ckpt_prefix",
               "must be a non-empty file name prefix")


@dataclasses.dataclass(frozen=True)
class MassConfig:
    dataset_config: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    model_config: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss_scale_config: LossScaleConfig = dataclasses.field(default_factory=LossScaleConfig)
    learn_rate_config: LearnRateConfig = dataclasses.field(default_factory=LearnRateConfig)
    checkpoint_options: CheckpointOptions = dataclasses.field(default_factory=CheckpointOptions)

    def validate(self):
        for group in dataclasses.fields(self):
            getattr(self, group.name).validate()
        options, data = self.checkpoint_options, self.dataset_config
        for key in ("eval_every_updates", "early_stop_patience"):
            _check(not getattr(options, key) or bool(data.valid_dataset or data.pre_train_valid_dataset),
                   f"checkpoint_options.{key}", "needs a validation set: set dataset_config.valid_dataset (or "
                   "pre_train_valid_dataset)")
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    def replace(self, **groups):
        return dataclasses.replace(self, **groups).validate()

    def save(self, path):
        with atomic_open(path) as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")


def _check(condition, key, expected):
    if not condition:
        raise ConfigError(f"config key {key}: {expected}")


def _choice(value, choices, key):
    _check(value in choices, key, f"must be one of {', '.join(choices)}, got {value!r}")


def _typed_value(value, annotation, key):
    """Returns `value` if it matches `annotation` (int accepted for float), else a ConfigError."""
    if typing.get_origin(annotation) in (list, typing.List):
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"config key {key}: expected a list of {item_type.__name__}, got {value!r}")
        return [_typed_value(item, item_type, key) for item in value]
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, annotation)
    if not ok:
        raise ConfigError(f"config key {key}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def _group_from_dict(group_class, values, group_name):
    if not isinstance(values, dict):
        raise ConfigError(f"config key {group_name}: expected an object of keys")
    hints = typing.get_type_hints(group_class)
    known = {field.name for field in dataclasses.fields(group_class)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"config key {group_name}.{key}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _typed_value(value, hints[key], f"{group_name}.{key}")
    return group_class(**kwargs)


def config_from_dict(data):
    if not isinstance(data, dict):
        raise ConfigError("config: expected a JSON object with the groups " +
                          ", ".join(field.name for field in dataclasses.fields(MassConfig)))
    hints = typing.get_type_hints(MassConfig)
    groups = {}
    for group_name, values in data.items():
        if group_name not in hints:
            raise ConfigError(f"config key {group_name}: unknown group (known: {', '.join(hints)})")
        groups[group_name] = _group_from_dict(hints[group_name], values, group_name)
    return MassConfig(**groups).validate()


def parse_override(text):
    """`group.key=value` or `key=value` (when the key names one field) -> (group, key, value).

    The value is read as JSON when it parses (numbers, true/false, lists), else as a string.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. model_config.hidden_size=256")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    hints = typing.get_type_hints(MassConfig)
    if "." in name:
        group, key = name.split(".", 1)
    else:
        owners = [g for g, cls in hints.items() if name in {f.name for f in dataclasses.fields(cls)}]
        if len(owners) != 1:
            raise ConfigError(f"config key {name}: unknown key" if not owners else
                              f"config key {name}: ambiguous, write one of " + ", ".join(f"{g}.{name}" for g in owners))
        group, key = owners[0], name
    if group not in hints:
        raise ConfigError(f"config key {group}: unknown group (known: {', '.join(hints)})")
    return group, key, value


def apply_overrides(data, overrides):
    data = json.loads(json.dumps(data))
    for text in overrides or ():
        group, key, value = parse_override(text)
        # A string override of a numeric/bool field (e.g. lr=abc) stays a string, so the type check names it.
        data.setdefault(group, {})[key] = value
    return data


def load_config(path, overrides=()):
    """JSON file + overrides -> validated MassConfig (one-line ConfigError on any problem)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path}: is a directory, expected a JSON file") from None
    except PermissionError:
        raise ConfigError(f"config {path}: permission denied") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config {path}: not a text file (invalid UTF-8 at byte {error.start}), "
                          f"expected a JSON file") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    return config_from_dict(apply_overrides(data, overrides))
