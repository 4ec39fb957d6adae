"""Plots a run's train and valid loss curves (pre-training and fine-tuning panels) to a PNG.

    python scripts/plot_metrics.py RUN_FOLDER [--output loss_curves.png]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.errors import run_cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder (reads RUN/metrics.jsonl) or a metrics.jsonl file")
    parser.add_argument("--output", default=None, help="PNG to write (default RUN/loss_curves.png)")
    return parser.parse_args(argv)


def main(args):
    from src.plot import plot_metrics
    metrics = args.run if os.path.isfile(args.run) else os.path.join(args.run, "metrics.jsonl")
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(metrics)), "loss_curves.png")
    print(f"wrote {plot_metrics(metrics, output)}")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
