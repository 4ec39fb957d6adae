"""Scores of the test set: ROUGE-1/2/L F1 of decoded titles and the teacher-forced perplexity.

ROUGE is Google's `rouge-score` package (a reimplementation of ROUGE-1.5.5), no stemming unless asked.
Text goes in after BPE removal (`@@ ` joins). The package's tokenizer lowercases, turns every run of characters
other than [a-z0-9] into a space and drops what is left empty, so Gigaword's `#` digit placeholders vanish
(as with ROUGE-1.5.5's own non-alphanumeric filter) and `<unk>` would become `unk`. Gigaword writes the unknown
word `UNK` in its test set and `<unk>` elsewhere (and the model emits `<unk>`): both are mapped to one token,
`unk`, before scoring, so they match each other - explicitly, not by accident of the tokenizer.
Each ROUGE figure is the mean over pairs of the F1 measure, times 100.
"""
import math

import numpy as np
from rouge_score import rouge_scorer

from src.dictionary import PAD_ID
from src.errors import UserError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
UNKNOWN_WORDS = frozenset(("<unk>", "UNK"))
UNKNOWN_TOKEN = "unk"


def remove_bpe(line, separator="@@"):
    """Undoes BPE (src/bpe.py): "un@@ believ@@ able" -> "unbelievable" (fairseq's rule, also for a dangling
    final "@@")."""
    return (line + " ").replace(separator + " ", "").rstrip()


def rouge_text(line):
    """BPE removed, white space normalised and both unknown-word markers mapped to `unk`."""
    return " ".join(UNKNOWN_TOKEN if word in UNKNOWN_WORDS else word for word in remove_bpe(line).split())


def rouge_scores(targets, predictions, use_stemmer=False):
    """Mean F1 x 100 of ROUGE-1, ROUGE-2 and ROUGE-L over aligned (target, prediction) pairs of text."""
    targets, predictions = list(targets), list(predictions)
    if len(targets) != len(predictions):
        raise UserError(f"ROUGE needs as many predictions as targets, got {len(predictions)} and {len(targets)}")
    if not targets:
        raise UserError("ROUGE needs at least one (target, prediction) pair")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for target, prediction in zip(targets, predictions):
        scores = scorer.score(rouge_text(target), rouge_text(prediction))
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / len(targets) for name, total in totals.items()}


def perplexity(nll_sum, token_count):
    """exp(total negative log-likelihood / total target tokens), </s> included among the tokens."""
    if token_count <= 0:
        raise ValueError("perplexity needs at least one target token")
    return math.exp(nll_sum / token_count)


def row_nll_graph(model, dynamic_shapes=True):
    """A compiled function (source_ids, decoder_input_ids, decoder_positions, target_ids) -> per-row
    (sum of -log p(target), number of non-pad targets), teacher-forced, in float32; with `dynamic_shapes`
    compiled once for every batch shape (src/train_step.py's jit_batch_step), else once per shape."""
    import mindspore as ms
    from mindspore import ops

    from src.train_step import jit_batch_step

    model.set_train(False)

    def row_nll(source_ids, decoder_input_ids, decoder_positions, target_ids):
        logits = model(source_ids, decoder_input_ids, decoder_positions)
        log_probs = ops.log_softmax(logits.astype(ms.float32), -1)
        gold = ops.gather_elements(log_probs, -1, target_ids.reshape(target_ids.shape + (1,)))
        weight = (target_ids != PAD_ID).astype(ms.float32)
        return -(gold.reshape(target_ids.shape) * weight).sum(1), weight.sum(1)

    return jit_batch_step(row_nll, dynamic_shapes)


def teacher_forced_nll(model, batches, num_examples, progress=None):
    """Per-example (nll sum, target tokens) over eval batches (dicts with example_index, -1 on pad rows).

    Returns two arrays of length num_examples, in example order."""
    import mindspore as ms

    compute = row_nll_graph(model)
    nll = np.full(num_examples, np.nan)
    tokens = np.zeros(num_examples, np.int64)
    for batch in batches:
        row_sums, row_tokens = compute(*(ms.Tensor(batch[name]) for name in
                                         ("source_ids", "decoder_input_ids", "decoder_positions", "target_ids")))
        real = batch["example_index"] >= 0
        nll[batch["example_index"][real]] = row_sums.asnumpy()[real]
        tokens[batch["example_index"][real]] = row_tokens.asnumpy()[real].astype(np.int64)
        if progress is not None:
            progress.update(int(real.sum()))
    if np.isnan(nll).any():
        raise RuntimeError(f"{int(np.isnan(nll).sum())} examples were never scored")
    return nll, tokens
