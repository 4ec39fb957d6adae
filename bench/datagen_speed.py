"""Pre-training record generation speed: news_crawl.py on the news sentences with 1 and 2 processes.

The news file is raw text; here its lines are whitespace-split into tokens (words stand in for BPE subwords) and
the vocabulary is built from them with --dict_folder. Both runs write 2 MindRecord shards (so the second
process can write one of them) and must produce identical bytes. Each run is timed end to end as a subprocess
(interpreter and MindSpore start-up included). Prints the seconds of each run, the speed-up of 2 processes over
1, and last `datagen_sentences_per_s: X` for the faster run (sentences read / seconds).
Skips (exit 0) when ../shared/data/news/news.en.txt is absent.
"""
import argparse
import filecmp
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEWS = os.path.join(os.path.dirname(REPO), "shared", "data", "news", "news.en.txt")
sys.path.insert(0, REPO)

from src.errors import UserError, run_cli  # noqa: E402  (needs the repository on sys.path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--news", default=NEWS, help="raw news sentences, one per line")
    parser.add_argument("--max_sentences", type=int, default=0, help="use only the first N lines (0: all)")
    parser.add_argument("--format", choices=("mindrecord", "tfrecord"), default="mindrecord")
    return parser.parse_args(argv)


def run_builder(source_file, output_folder, processes, fmt):
    command = [sys.executable, os.path.join(REPO, "news_crawl.py"), "--input_files", source_file,
               "--dict_folder", output_folder, "--output_folder", output_folder, "--processes", str(processes),
               "--num_shards", "2", "--format", fmt, "--max_len", "64", "--seed", "1"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise UserError(f"news_crawl.py failed: {result.stderr.strip().splitlines()[-1:]}")
    summary = next(line for line in result.stdout.splitlines() if line.startswith("news_crawl:"))
    return seconds, summary


def main(args):
    if not os.path.isfile(args.news):
        print(f"skipped: news sentences not found at {args.news}")
        return 0
    with tempfile.TemporaryDirectory(prefix="datagen_bench_") as work:
        source = os.path.abspath(args.news)  # the builder runs with the repository as its working folder
        if args.max_sentences:
            source = os.path.join(work, "news.txt")
            with open(args.news, encoding="utf-8") as full, open(source, "w", encoding="utf-8") as part:
                for number, line in enumerate(full):
                    if number >= args.max_sentences:
                        break
                    part.write(line)
        timings = {}
        for processes in (1, 2):
            output = os.path.join(work, f"out{processes}")
            timings[processes], summary = run_builder(source, output, processes, args.format)
            print(f"processes={processes}: {timings[processes]:.1f} s  ({summary})")
        names = sorted(os.listdir(os.path.join(work, "out1")))
        identical = names == sorted(os.listdir(os.path.join(work, "out2"))) and all(
            filecmp.cmp(os.path.join(work, "out1", n), os.path.join(work, "out2", n), shallow=False) for n in names)
        read = int(re.search(r"read=(\d+)", summary).group(1))
    print(f"identical_output_1_vs_2_processes: {identical}")
    print(f"speedup_2_vs_1_processes: {timings[1] / timings[2]:.2f}")
    print(f"datagen_sentences_per_s: {read / min(timings.values()):.0f}")
    return 0 if identical else 1


if __name__ == "__main__":
    run_cli(main, parse_args())
