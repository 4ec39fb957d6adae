"""Parameter count and weight-checkpoint size of the models of the given configs, computed from the model."""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mindspore as ms  # noqa: E402

from config.config import load_config  # noqa: E402
from src.model import Seq2SeqModel, count_parameters  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("configs", nargs="+", help="config files")
    parser.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE")
    return parser.parse_args(argv)


def main(args):
    ms.set_device("CPU")
    for path in args.configs:
        config = load_config(path, args.set).model_config
        model = Seq2SeqModel(config)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = os.path.join(folder, "weights.ckpt")
            ms.save_checkpoint(model, checkpoint)
            size = os.path.getsize(checkpoint)
        print(f"{path}: d_model {config.hidden_size}, {config.num_hidden_layers}+{config.decoder_layers} layers, "
              f"FFN {config.intermediate_size}, vocab {config.vocab_size}: parameters {count_parameters(model):,}, "
              f"weights checkpoint {size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main(parse_args())
