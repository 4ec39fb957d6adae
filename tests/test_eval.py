"""eval.py and export.py as a user runs them: subprocesses on records of the bundled Gigaword sample (41 pairs,
not a multiple of the batch size) with a random-init tiny model saved by ms.save_checkpoint."""
import collections
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from config.config import load_config
from src.dictionary import EOS_ID, PAD_ID, Dictionary
from src.metrics import rouge_scores
from src.model import Seq2SeqModel
from src.builders import build_pair_examples, read_pair_files
from src.records import read_records, write_records
from src.tokenization import get_detokenizer
from src.metrics import remove_bpe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "sample", "gigaword")
TINY = os.path.join(REPO, "config", "config_tiny.json")


def random_model(folder, vocab_path, vocab_size, seed):
    """A random tiny model of the vocabulary saved as FOLDER/random.ckpt, with large initial weights (its output then
    depends on the source, so order mistakes show) -> (its config, the eval.py arguments that load it: config,
    overrides, vocabulary, checkpoint)."""
    overrides = [f"model_config.vocab_size={vocab_size}", "model_config.max_decode_length=8",
                 "model_config.beam_width=2", "dataset_config.bucket_boundaries=[64]"]
    config = load_config(TINY, overrides + ["model_config.initializer_range=1.0"])
    ms.set_seed(seed)
    ms.save_checkpoint(Seq2SeqModel(config.model_config), str(folder / "random.ckpt"))
    sets = [arg for item in overrides for arg in ("--set", item)]
    return config, ["--config", TINY, *sets, "--vocab", str(vocab_path), "--checkpoint", str(folder / "random.ckpt")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    articles, titles = read_pair_files(os.path.join(SAMPLE, "test.article.txt"), os.path.join(SAMPLE, "test.title.txt"))
    vocab = Dictionary.from_counter(collections.Counter(w for line in articles + titles for w in line.split()))
    vocab.pad_to_multiple(8)
    vocab.persistence(str(folder / "vocab.txt"))
    examples, _ = build_pair_examples(articles, titles, vocab, max_len=64, train=False, token_map={"UNK": "<unk>"})
    write_records(str(folder / "test.mindrecord"), examples, vocab_size=len(vocab))
    config, model_args = random_model(folder, folder / "vocab.txt", len(vocab), seed=1)
    common = [*model_args, "--test_dataset", str(folder / "test.mindrecord"), "--batch_size", "8"]
    return dict(folder=folder, vocab=vocab, config=config, common=common, titles=titles)


def run(script, args):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def assert_user_error(result, *absent_paths):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for path in absent_paths:
        assert not os.path.exists(path)


def test_rouge_decodes_every_example_in_order(setup):
    output = str(setup["folder"] / "hyp.txt")
    reference = os.path.join(SAMPLE, "test.title.txt")
    result = run("eval.py", [*setup["common"], "--metric", "rouge", "--output", output, "--reference", reference])
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr                          # off a terminal: no progress-bar frames
    with open(output, encoding="utf-8") as handle:
        hypotheses = handle.read().split("\n")
    assert hypotheses[-1] == "" and len(hypotheses) == 42                         # 41 lines, 41 = 5 x 8 + 1
    hypotheses = hypotheses[:-1]
    with open(output + ".json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["examples"] == 41 and summary["reference"] == reference
    assert summary["decode"] == {"beam_width": 2, "length_penalty_weight": 1.0, "max_decode_length": 8,
                                 "min_decode_length": 0, "no_repeat_ngram_size": 0, "early_stopping": True,
                                 "unk_penalty": 0.0}
    assert summary["wall_time_s"] > 0
    # The scores are rouge_scores of the written lines; the reference titles (with UNK) score exactly as the
    # record targets (with <unk>).
    assert {k: summary[k] for k in ("rouge1", "rouge2", "rougeL")} == pytest.approx(
        rouge_scores(setup["titles"], hypotheses), rel=1e-12)
    record_targets = [remove_bpe(setup["vocab"].decode(e.target_ids)) for e in read_records(str(setup["folder"] /
                                                                                               "test.mindrecord"))]
    assert rouge_scores(record_targets, hypotheses) == pytest.approx(rouge_scores(setup["titles"], hypotheses))
    assert len(set(hypotheses)) > 20                                             # outputs depend on the source

    # Line i is example i: decode the first and last examples here and compare.
    from src.beam_search import best_hypotheses, cached_decoder, search_from_config
    model = Seq2SeqModel(setup["config"].model_config)
    ms.load_param_into_net(model, ms.load_checkpoint(str(setup["folder"] / "random.ckpt")))
    examples = read_records(str(setup["folder"] / "test.mindrecord"))
    source = np.zeros((2, 64), np.int32)
    for row, index in enumerate((0, 40)):
        source[row, :len(examples[index].source_ids)] = examples[index].source_ids
    search = search_from_config(setup["config"].model_config, setup["vocab"])
    sequences, _ = cached_decoder(model, search)(ms.Tensor(source))
    tokens = best_hypotheses(sequences)
    assert [hypotheses[0], hypotheses[40]] == [remove_bpe(setup["vocab"].decode(t)) for t in tokens]


def test_perplexity_writes_one_line_per_example(setup):
    output = str(setup["folder"] / "nll.txt")
    result = run("eval.py", [*setup["common"], "--metric", "ppl", "--output", output])
    assert result.returncode == 0, result.stderr
    with open(output, encoding="utf-8") as handle:
        rows = [line.split("\t") for line in handle.read().splitlines()]
    assert len(rows) == 41
    nll = np.array([float(r[0]) for r in rows])
    tokens = np.array([int(r[1]) for r in rows])
    examples = read_records(str(setup["folder"] / "test.mindrecord"))
    np.testing.assert_array_equal(tokens, [len(e.target_ids) for e in examples])
    with open(output + ".json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["target_tokens"] == tokens.sum() and summary["examples"] == 41
    assert summary["ppl"] == pytest.approx(math.exp(nll.sum() / tokens.sum()), rel=1e-6)


def test_eval_errors_leave_no_output(setup):
    output = str(setup["folder"] / "bad.txt")
    result = run("eval.py", [*setup["common"][:-6], "--checkpoint", str(setup["folder"] / "missing.ckpt"),
                             "--test_dataset", str(setup["folder"] / "test.mindrecord"), "--metric", "rouge",
                             "--output", output])
    assert_user_error(result, output, output + ".json")
    assert "missing.ckpt" in result.stderr
    short_reference = setup["folder"] / "short.txt"
    short_reference.write_text("one title\n", encoding="utf-8")
    result = run("eval.py", [*setup["common"], "--metric", "rouge", "--output", output, "--reference",
                             str(short_reference)])
    assert_user_error(result, output, output + ".json")
    assert "1 lines" in result.stderr and "41 examples" in result.stderr


def test_exported_beam_graph_decodes_like_the_in_process_decoder(setup):
    output = str(setup["folder"] / "beam.mindir")
    # --vocab: one whose ids 340-343 are fillers and 344-351 past its end, all of which the graph must avoid.
    vocab = Dictionary(setup["vocab"].symbols[5:340], setup["vocab"].counts[5:340]).pad_to_multiple(8)
    vocab.persistence(str(setup["folder"] / "small_vocab.txt"))
    result = run("export.py", ["--config", TINY, *setup["common"][2:setup["common"].index("--vocab")],
                               "--checkpoint", str(setup["folder"] / "random.ckpt"), "--output", output,
                               "--batch_size", "2", "--source_length", "16", "--vocab",
                               str(setup["folder"] / "small_vocab.txt")])
    assert result.returncode == 0, result.stderr
    # export.py itself ran the reloaded file against the in-process decoder on its own seeded input.
    assert "reloaded output matches" in result.stdout and "[2, 16]" in result.stdout
    assert not [name for name in os.listdir(setup["folder"]) if name.startswith(".beam")]   # no temporary left

    # Reloaded here, the file decodes a batch export.py never saw exactly as the in-process decoder does.
    from src.beam_search import cached_decoder, search_from_config
    model_config = setup["config"].model_config
    model = Seq2SeqModel(model_config)
    ms.load_param_into_net(model, ms.load_checkpoint(str(setup["folder"] / "random.ckpt")))
    source = np.random.default_rng(1).integers(5, model_config.vocab_size, size=(2, 16)).astype(np.int32)
    source[0, 9], source[0, 10:] = EOS_ID, PAD_ID                                   # a shorter sentence
    source[1, 15] = EOS_ID
    sequences, scores = cached_decoder(model, search_from_config(model_config, vocab))(ms.Tensor(source))
    reloaded_sequences, reloaded_scores = ms.nn.GraphCell(ms.load(output))(ms.Tensor(source))
    assert reloaded_sequences.shape == (2, 2, 8) and reloaded_scores.shape == (2, 2)   # beam 2, length 8
    np.testing.assert_array_equal(reloaded_sequences.asnumpy(), sequences.asnumpy())
    np.testing.assert_allclose(reloaded_scores.asnumpy(), scores.asnumpy(), rtol=1e-5, atol=1e-6)
    assert (sequences.asnumpy() != PAD_ID).any()
    never = vocab.never_generated_ids()[1:] + list(range(len(vocab), model_config.vocab_size))   # 0 pads after </s>
    assert never[2:6] == [340, 341, 342, 343] and not np.isin(reloaded_sequences.asnumpy(), never).any()


def test_export_without_weights_leaves_no_output(setup):
    missing = str(setup["folder"] / "none.mindir")
    result = run("export.py", ["--config", TINY, "--checkpoint", str(setup["folder"] / "missing.ckpt"),
                               "--output", missing])
    assert_user_error(result, missing)


# ----------------------------------------------------------------------------------------------------------------
# --input_text: plain text articles through the run's text pipeline
# ----------------------------------------------------------------------------------------------------------------

# Untokenized lines besides the sample's tokenized ones: punctuation and digits to split and hash, an empty line,
# a raw <unk> and Gigaword's UNK.
EXTRA_ARTICLES = ["Police said 12 people were hurt in Nessa on Monday.", "", "Zofia <unk> won UNK's title again."]
EXTRA_TITLES = ["police say ## hurt in nessa", "nothing", "<unk> wins title"]
TEXT_FLAGS = ["--lowercase", "--digits_to_hash", "--map_token", "UNK=<unk>"]


@pytest.fixture(scope="module")
def text_setup(tmp_path_factory):
    """The sample test articles (plus EXTRA_ARTICLES) as raw text, and the records the text commands make of them:
    tokenize_corpus.py TEXT_FLAGS, BPE codes learned on the sample train split, apply_bpe_encoding.py, the pair
    builder; a random tiny model (large initial weights, so its output depends on the source) of that vocabulary."""
    from subword_nmt_reference import learn_codes, sample_lines

    folder = tmp_path_factory.mktemp("eval_text")
    raw, tokenized, bpe = folder / "raw", folder / "tokenized", folder / "bpe"
    raw.mkdir()
    articles = sample_lines("gigaword", "test.article.txt") + EXTRA_ARTICLES
    titles = sample_lines("gigaword", "test.title.txt") + EXTRA_TITLES
    (raw / "test.article.txt").write_text("".join(line + "\n" for line in articles))
    (raw / "test.title.txt").write_text("".join(line + "\n" for line in titles))
    result = run("tokenize_corpus.py", ["--corpus_folder", str(raw), "--output_folder", str(tokenized),
                                        "--pool_size", "1", *TEXT_FLAGS])
    assert result.returncode == 0, result.stderr
    codes = learn_codes(sample_lines("gigaword", "train.article.txt") + sample_lines("gigaword", "train.title.txt"),
                        300, folder / "bpe.codes")
    vocab_path = folder / "vocab.txt"
    result = run("apply_bpe_encoding.py", ["--codes", codes, "--src_folder", str(tokenized), "--output_folder",
                                           str(bpe), "--prefix", "", "--vocab_path", str(vocab_path)])
    assert result.returncode == 0, result.stderr
    vocab = Dictionary.load_from_persisted_dict(str(vocab_path))
    sources, targets = read_pair_files(str(bpe / "test.article.txt"), str(bpe / "test.title.txt"))
    examples, counts = build_pair_examples(sources, targets, vocab, max_len=64, train=False)
    write_records(str(folder / "test.mindrecord"), examples, vocab_size=len(vocab))
    _, model_args = random_model(folder, vocab_path, len(vocab), seed=2)
    common = [*model_args, "--batch_size", "8", "--metric", "rouge"]
    return dict(folder=folder, raw=raw, codes=codes, common=common, examples=examples, counts=counts)


def test_input_text_decodes_as_the_records_of_the_same_text(text_setup):
    """eval.py --input_text on the raw articles writes, byte for byte, the headlines eval.py decodes from the records
    that tokenize_corpus.py, apply_bpe_encoding.py and the pair builder made of the same text with the same flags
    (--tokenized: one line per article, the empty one too, BPE removed, tokens joined by spaces); by default the same
    lines detokenized. No scores without --reference."""
    folder, raw = text_setup["folder"], text_setup["raw"]
    from_records, from_text = str(folder / "records.hyp.txt"), str(folder / "text.hyp.txt")
    result = run("eval.py", [*text_setup["common"], "--test_dataset", str(folder / "test.mindrecord"),
                             "--reference", str(raw / "test.title.txt"), "--output", from_records])
    assert result.returncode == 0, result.stderr
    text_args = [*text_setup["common"], "--input_text", str(raw / "test.article.txt"), "--codes", text_setup["codes"],
                 *TEXT_FLAGS]
    result = run("eval.py", [*text_args, "--tokenized", "--output", from_text])
    assert result.returncode == 0, result.stderr
    with open(from_text, encoding="utf-8") as handle:
        headlines = handle.read()
    with open(from_records, encoding="utf-8") as handle:
        assert headlines == handle.read()
    detokenized = str(folder / "text.detok.txt")
    assert run("eval.py", [*text_args, "--output", detokenized]).returncode == 0
    detokenize = get_detokenizer("nltk")
    with open(detokenized, encoding="utf-8") as handle:
        assert handle.read().split("\n") == [detokenize(line.split()) for line in headlines.split("\n")]
    lines = headlines.split("\n")
    assert len(lines) == 45 and lines[-1] == "" and len(set(lines)) > 20 and "@@" not in headlines
    with open(from_text + ".json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["examples"] == 44 and summary["reference"] is None and "rouge1" not in summary
    unknown = sum(int((e.source_ids == 3).sum()) for e in text_setup["examples"])
    assert unknown >= 5  # sample UNK x3, the raw <unk> and UNK's
    assert {key: summary["input_text"][key] for key in ("lines", "empty", "mapped", "truncated", "unknown_tokens")} \
        == {"lines": 44, "empty": 1, "mapped": 4, "truncated": text_setup["counts"]["truncated_source"],
            "unknown_tokens": unknown}
    assert summary["input_text"]["map_token"] == {"UNK": "<unk>"} and summary["input_text"]["glossaries"] == ["<unk>"]
    assert summary["decode"]["beam_width"] == 2
    assert "eval: 44 examples, " in result.stdout


@pytest.mark.parametrize("extra, fragment", [
    (["--input_text", "absent.txt", "--codes", "CODES"], "input text file not found: absent.txt"),
    (["--input_text", "ARTICLES"], "--input_text needs --codes"),
    (["--codes", "CODES", "--test_dataset", "RECORDS"], "--codes go(es) with --input_text"),
    (["--input_text", "ARTICLES", "--codes", "CODES", "--test_dataset", "RECORDS"], "exclude each other"),
    (["--input_text", "ARTICLES", "--codes", "BAD_CODES"], "bad.codes:2: expected a merge"),
])
def test_input_text_errors_leave_no_output(text_setup, extra, fragment):
    folder = text_setup["folder"]
    (folder / "bad.codes").write_text("#version: 0.2\na b c\n")
    names = {"ARTICLES": str(text_setup["raw"] / "test.article.txt"), "CODES": text_setup["codes"],
             "BAD_CODES": str(folder / "bad.codes"), "RECORDS": str(folder / "test.mindrecord")}
    output = str(folder / "bad.hyp.txt")
    result = run("eval.py", [*text_setup["common"], *[names.get(arg, arg) for arg in extra], "--output", output])
    assert fragment in result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not os.path.exists(output) and not os.path.exists(output + ".json")
