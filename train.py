"""Pre-trains (MASS) and/or fine-tunes the Transformer described by a config file into a run folder.

    python train.py --config config/config_tiny.json --output runs/tiny [--set learn_rate_config.lr=5e-4 ...]

Phases: pre-training on dataset_config.pre_train_dataset, then fine-tuning on fine_tune_dataset (either may be
left empty); each epoch ends with the loss and perplexity on valid_dataset. The run folder receives config.json
(the resolved config), metrics.jsonl (one JSON object per log line), loss_curves.png and checkpoints/.
SIGTERM (or --max_updates) stops at the next update with a checkpoint and exit status 0; --resume continues.
"""
import argparse
import os

from src.errors import check_output_folder, run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON config file (config/config.json, config_tiny.json)")
    parser.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set learn_rate_config.lr=5e-4")
    parser.add_argument("--output", required=True, metavar="RUN_FOLDER", help="run folder (created)")
    parser.add_argument("--device_target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    parser.add_argument("--device_id", type=int, default=None, help="device of a single-device run")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU kernel threads (default: MindSpore's); 1 for each of two runs sharing 2 cores")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's latest checkpoint (starts afresh when there is none)")
    parser.add_argument("--vocab", default=None, help="vocabulary file (default dataset_config.vocab); its checksum "
                        "is stored in checkpoints and checked against existed_ckpt")
    parser.add_argument("--log_every", type=int, default=10, metavar="N", help="log every N updates (default 10)")
    parser.add_argument("--max_updates", type=int, default=None, metavar="N",
                        help="stop as on SIGTERM after N updates of this invocation (resumable)")
    parser.add_argument("--no_plot", action="store_true", help="do not write loss_curves.png at the end")
    args = parser.parse_args(argv)
    if args.log_every < 1:
        parser.error("--log_every must be >= 1")
    if args.max_updates is not None and args.max_updates < 1:
        parser.error("--max_updates must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0: MindSpore's default)")
    return args


def vocabulary_checksum(path, vocab_size):
    """Checksum of the vocabulary file ('' without one); a one-line error if it cannot fit the model."""
    if not path:
        return ""
    from src.dictionary import Dictionary, check_vocabulary_fits
    vocab = Dictionary.load_from_persisted_dict(path)
    check_vocabulary_fits(vocab, path, vocab_size)
    return vocab.checksum()


def main(args):
    # MindSpore's deprecation warnings (e.g. nn.Adam's) would bury the log; GLOG_v=2 shows them again.
    os.environ.setdefault("GLOG_v", "3")
    from config.config import load_config
    config = load_config(args.config, args.set)
    check_output_folder(args.output, "--output run folder")
    checksum = vocabulary_checksum(args.vocab or config.dataset_config.vocab, config.model_config.vocab_size)
    from src.device import init_data_parallel, setup_device
    from src.trainer import train_and_evaluate
    setup_device(args.device_target, args.device_id, args.threads)
    if config.model_config.save_graphs:
        from src.device import save_graphs
        save_graphs(os.path.join(args.output, "graphs"))
    rank, world = init_data_parallel()
    # progress: a bar on a terminal, a plain line every 30 s in a log (src/progress.py); rank 0 only.
    summary = train_and_evaluate(config, args.output, resume=args.resume, device_target=args.device_target, rank=rank,
                                 world=world, vocab_checksum=checksum, log_every=args.log_every,
                                 max_updates=args.max_updates, progress=True)
    if not summary["stopped"]:
        # Every rank prints this into its own log (msrun: worker_N.log), so drift between ranks is visible.
        print(f"rank {rank}/{world}: final parameters sha256 {summary['parameters_sha256']}", flush=True)
    if rank == 0 and not args.no_plot:
        from src.plot import plot_metrics
        metrics = os.path.join(args.output, "metrics.jsonl")
        if os.path.exists(metrics) and os.path.getsize(metrics):
            print(f"loss curves: {plot_metrics(metrics, os.path.join(args.output, 'loss_curves.png'))}")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
