"""Exports the inference graph to MINDIR and checks that the file loads and reproduces the model's output.

    python export.py --config config/config.json --checkpoint CKPT --output mass_beam.mindir [--graph beam]

--graph beam (default): the whole beam search - encoder, cross-attention keys/values, the `while` loop of cached
decoder steps and the search rules - as one graph: source_ids int32 [batch_size, source_length] ->
(sequences int32 [batch_size, beam_width, max_decode_length], scores float32 [batch_size, beam_width]), best
first, tokens after </s> are 0; settings from model_config (beam_width, length_penalty_weight, ...). It never
emits <pad> <s> <mask>; with --vocab (the vocabulary eval.py gets) neither the vocabulary's fillers nor ids past
its end, as eval.py decodes.
--graph logits: the teacher-forced model: (source_ids [batch_size, source_length], decoder_input_ids and
decoder_positions [batch_size, target_length]) -> logits [batch_size, target_length, vocab_size].
Shapes are static: pad sources with 0 to source_length (default model_config.seq_length).
After writing, the file is loaded with nn.GraphCell(ms.load(...)) and run on a seeded random input; its output
must equal the in-process model's, else the file is removed and the exit status is non-zero.
"""
import argparse
import os

import numpy as np

from src.errors import UserError, atomic_path, check_output_file, require_file, run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                        help="override a config key (repeatable)")
    parser.add_argument("--checkpoint", default=None, help="model weights .ckpt/.npz (default "
                        "checkpoint_options.existed_ckpt)")
    parser.add_argument("--output", required=True, help="MINDIR file to write (.mindir appended if missing)")
    parser.add_argument("--vocab", default=None, help="vocabulary file: the beam graph never emits its fillers or "
                        "ids past its end (as eval.py)")
    parser.add_argument("--graph", choices=("beam", "logits"), default="beam")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--source_length", type=int, default=None, help="default model_config.seq_length")
    parser.add_argument("--target_length", type=int, default=None, help="logits graph; default seq_length")
    parser.add_argument("--device_target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    args = parser.parse_args(argv)
    for name in ("batch_size", "source_length", "target_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1")
    if not args.output.endswith(".mindir"):
        args.output += ".mindir"
    return args


def sample_inputs(graph, model_config, batch_size, source_length, target_length, seed=0):
    """Seeded int32 inputs of the exported shapes (sources: random tokens, </s>, then padding)."""
    from src.dictionary import BOS_ID, EOS_ID, PAD_ID
    rng = np.random.default_rng(seed)
    source = rng.integers(5, model_config.vocab_size, size=(batch_size, source_length)).astype(np.int32)
    for row in range(batch_size):
        length = int(rng.integers(1, source_length + 1))
        source[row, length - 1] = EOS_ID
        source[row, length:] = PAD_ID
    if graph == "beam":
        return (source,)
    decoder_input = rng.integers(5, model_config.vocab_size, size=(batch_size, target_length)).astype(np.int32)
    decoder_input[:, 0] = BOS_ID
    positions = np.tile(np.arange(target_length, dtype=np.int32), (batch_size, 1))
    return source, decoder_input, positions


def main(args):
    os.environ.setdefault("GLOG_v", "3")
    from config.config import load_config
    config = load_config(args.config, args.set)
    model_config = config.model_config
    checkpoint = args.checkpoint or config.checkpoint_options.existed_ckpt
    if not checkpoint:
        raise UserError("no weights to export: pass --checkpoint or set checkpoint_options.existed_ckpt")
    require_file(checkpoint, "checkpoint")
    check_output_file(args.output, "--output")
    vocab = None
    if args.vocab:
        from src.dictionary import Dictionary, check_vocabulary_fits
        vocab = Dictionary.load_from_persisted_dict(require_file(args.vocab, "vocabulary file"))
        check_vocabulary_fits(vocab, args.vocab, model_config.vocab_size)
    source_length = args.source_length or model_config.seq_length
    target_length = args.target_length or model_config.seq_length
    if max(source_length, target_length) > model_config.max_position_embeddings:
        raise UserError(f"--source_length/--target_length must not exceed model_config.max_position_embeddings "
                        f"({model_config.max_position_embeddings})")

    import mindspore as ms
    from mindspore import nn

    from src.beam_search import cached_decoder, search_from_config
    from src.checkpoint import load_model_weights
    from src.device import setup_device
    from src.model import Seq2SeqModel

    setup_device(args.device_target)
    model = Seq2SeqModel(model_config)
    load_model_weights(model, checkpoint, vocab.checksum() if vocab is not None else "")
    model.set_train(False)
    # The logits graph is the model's own construct(source_ids, decoder_input_ids, decoder_positions).
    # kernels=False: the MINDIR file holds MindSpore's own ops only, not a call into a library built on this machine
    network = model
    if args.graph == "beam":
        network = cached_decoder(model, search_from_config(model_config, vocab, kernels=False), kernels=False)
    inputs = [ms.Tensor(array) for array in sample_inputs(args.graph, model_config, args.batch_size, source_length,
                                                          target_length)]
    expected = network(*inputs)
    expected = [t.asnumpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    with atomic_path(args.output) as temporary:
        # ms.export appends .mindir to the name it is given: export under a temporary stem, then check that file.
        stem = temporary + ".export"
        ms.export(network, *inputs, file_name=stem, file_format="MINDIR")
        try:
            loaded = nn.GraphCell(ms.load(stem + ".mindir"))
            got = loaded(*inputs)
            got = [t.asnumpy() for t in (got if isinstance(got, tuple) else (got,))]
            difference = check_outputs(expected, got)
            os.replace(stem + ".mindir", temporary)
        finally:
            if os.path.exists(stem + ".mindir"):
                os.remove(stem + ".mindir")
    shapes = " ".join(str(list(t.shape)) for t in inputs)
    print(f"export: {args.graph} graph, inputs {shapes} -> {args.output} ({os.path.getsize(args.output)} bytes); "
          f"reloaded output matches (max abs difference {difference:.3g})")
    return 0


def check_outputs(expected, got, tolerance=1e-4):
    """Max abs difference of float outputs; integer outputs must be equal. UserError on a mismatch."""
    if len(expected) != len(got):
        raise UserError(f"the reloaded graph returned {len(got)} outputs, expected {len(expected)}")
    largest = 0.0
    for index, (want, have) in enumerate(zip(expected, got)):
        if want.shape != have.shape:
            raise UserError(f"reloaded output {index} has shape {have.shape}, expected {want.shape}")
        if np.issubdtype(want.dtype, np.integer):
            if not np.array_equal(want, have):
                raise UserError(f"reloaded output {index} (token ids) differs from the in-process model")
        else:
            difference = float(np.abs(want.astype(np.float64) - have).max()) if want.size else 0.0
            if not difference <= tolerance * max(1.0, float(np.abs(want).max())):
                raise UserError(f"reloaded output {index} differs from the in-process model by {difference:.3g}")
            largest = max(largest, difference)
    return largest


if __name__ == "__main__":
    run_cli(main, parse_args())
