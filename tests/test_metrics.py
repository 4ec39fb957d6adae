"""ROUGE against hand-computed values and the rouge-score package; perplexity against an independent NumPy NLL."""
import dataclasses
import math

import numpy as np
import pytest
from rouge_score import rouge_scorer

import mindspore as ms

from config.config import ModelConfig
from conftest import shared_data
from src.dataset import iterate_batches
from src.dictionary import EOS_ID
from src.errors import UserError
from src.masking import make_pair_example
from src.metrics import perplexity, rouge_scores, rouge_text, teacher_forced_nll
from src.model import Seq2SeqModel


def test_rouge_hand_computed():
    # Target words (the tokenizer drops "###"): police arrest in belmora clashes (5); prediction: police arrested
    # in belmora (4). ROUGE-1: 3 shared -> P 3/4, R 3/5, F 2/3. ROUGE-2: target bigrams police-arrest,
    # arrest-in, in-belmora, belmora-clashes; prediction's police-arrested, arrested-in, in-belmora: 1 shared ->
    # P 1/3, R 1/4, F 2/7. ROUGE-L: LCS "police in belmora" = 3 -> as ROUGE-1.
    target, prediction = "police arrest ### in belmora clashes", "police arrested in belmora"
    scores = rouge_scores([target], [prediction])
    assert scores == pytest.approx({"rouge1": 200 / 3, "rouge2": 200 / 7, "rougeL": 200 / 3}, rel=1e-9)
    # The mean over pairs: a perfect second pair adds 100 to each sum.
    both = rouge_scores([target, "gold climbs to seven-month high"], [prediction, "gold climbs to seven-month high"])
    assert both == pytest.approx({"rouge1": 250 / 3, "rouge2": 50 + 100 / 7, "rougeL": 250 / 3}, rel=1e-9)
    # With Porter stemming "arrested" matches "arrest": ROUGE-1 P 4/4, R 4/5, F 8/9.
    assert rouge_scores([target], [prediction], use_stemmer=True)["rouge1"] == pytest.approx(800 / 9, rel=1e-9)


def test_unknown_words_and_bpe():
    assert rouge_text("a <unk> UNK b") == "a unk unk b"
    assert rouge_text("pol@@ ice arrest@@ ed  ##") == "police arrested ##"
    # Gigaword's test references write UNK, the model (and the other splits) <unk>: they must match.
    assert rouge_scores(["UNK wins in halden"], ["<unk> wins in halden"]) == {"rouge1": 100.0, "rouge2": 100.0,
                                                                            "rougeL": 100.0}
    # What rouge-score's own tokenizer does with them (documented in src/metrics.py): lowercase, non-alphanumerics
    # dropped - so "<unk>" and "UNK" would match anyway, and "#" digit placeholders vanish.
    tokenizer = rouge_scorer.RougeScorer(["rouge1"])._tokenizer
    assert tokenizer.tokenize("<unk> UNK ##.# -lrb- u.s.") == ["unk", "unk", "lrb", "u", "s"]


def test_rouge_equals_rouge_score_package_on_gigaword():
    with open(shared_data("gigaword", "test.title.txt"), encoding="utf-8") as handle:
        titles = handle.read().splitlines()[:50]
    with open(shared_data("gigaword", "test.article.txt"), encoding="utf-8") as handle:
        leads = [" ".join(line.split()[:8]) for line in handle.read().splitlines()[:50]]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    direct = [scorer.score(t, p) for t, p in zip(titles, leads)]
    expected = {name: 100 * np.mean([s[name].fmeasure for s in direct]) for name in ("rouge1", "rouge2", "rougeL")}
    assert rouge_scores(titles, leads) == pytest.approx(expected, rel=1e-12)
    assert 10 < expected["rouge1"] < 60                                       # a sane lead baseline


def test_rouge_input_errors():
    with pytest.raises(UserError, match="as many predictions"):
        rouge_scores(["a", "b"], ["a"])
    with pytest.raises(UserError, match="at least one"):
        rouge_scores([], [])
    assert rouge_scores([""], [""]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_perplexity_formula():
    assert perplexity(3 * math.log(8.0), 3) == pytest.approx(8.0, rel=1e-12)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_teacher_forced_perplexity_equals_numpy():
    config = ModelConfig(random_seed=1, seq_length=16, vocab_size=40, hidden_size=16, num_hidden_layers=1,
                         num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.1,
                         attention_dropout_prob=0.1, max_position_embeddings=32, max_decode_length=12)
    ms.set_seed(2)
    model = Seq2SeqModel(dataclasses.replace(config, initializer_range=0.5))
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(5):                                                          # 5 examples, batches of 3
        source = np.append(rng.integers(5, 40, int(rng.integers(2, 12))), EOS_ID)
        target = np.append(rng.integers(5, 40, int(rng.integers(1, 9))), EOS_ID)
        examples.append(make_pair_example(source, target))
    batches = iterate_batches(examples, batch_size=3, bucket_boundaries=[16], eval_mode=True)
    nll, tokens = teacher_forced_nll(model, batches, len(examples))

    model.set_train(False)
    expected_nll = []
    for example in examples:                                                    # one at a time, unpadded
        logits = model(*(ms.Tensor(a[None]) for a in (example.source_ids, example.decoder_input_ids,
                                                       example.decoder_positions))).asnumpy()[0].astype(np.float64)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        expected_nll.append(-log_probs[np.arange(len(example.target_ids)), example.target_ids].sum())
    np.testing.assert_allclose(nll, expected_nll, rtol=1e-5)
    np.testing.assert_array_equal(tokens, [len(e.target_ids) for e in examples])   # </s> counted
    assert perplexity(nll.sum(), tokens.sum()) == pytest.approx(
        math.exp(sum(expected_nll) / sum(len(e.target_ids) for e in examples)), rel=1e-5)
