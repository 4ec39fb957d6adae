"""Input pipeline at scale: the MASS record builder's rate, and the streaming loader's first batch, throughput with
dynamic MASS masking and resident memory at two corpus sizes.

The corpus repeats the shared news sentences (../shared/data/news/news.en.txt, raw text: words stand in for BPE
subwords, the vocabulary is built from them with --dict_folder) up to --sentences lines, and news_crawl.py builds
it with --processes 2 into MindRecord shards of at most --shard_sentences sentences. The loader is then measured
in a fresh process per size, on the shards holding a quarter of the sentences and on all of them: one rank,
--workers worker processes, dynamic MASS masking, token-budget batches of --max_tokens, windows of --window_rows.
  - first batch: seconds from the measuring process's start (Python and MindSpore imports included) to the first
    batch;
  - sentences/s: real rows of the batches after the first, over --read_sentences sentences (or the epoch);
  - resident memory: the peak, sampled every 0.1 s while reading, of the proportional set size (PSS) summed over
    the process and its workers (shared pages counted once).
Ends with builder_sentences_per_s, loader_first_batch_s (the larger size), loader_sentences_per_s (the larger
size), loader_rss_mb_small and loader_rss_mb_large. Skips (exit 0) when ../shared/data is absent.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

STARTED = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
NEWS = os.path.join(SHARED, "news", "news.en.txt")
sys.path.insert(0, REPO)

from src.errors import UserError, run_cli  # noqa: E402  (needs the repository on sys.path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=2_000_000, help="corpus size (the news repeated)")
    parser.add_argument("--news", default=NEWS, help="raw news sentences, one per line")
    parser.add_argument("--shard_sentences", type=int, default=250_000, help="most sentences per MindRecord shard")
    parser.add_argument("--processes", type=int, default=2, help="news_crawl.py --processes")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes")
    parser.add_argument("--window_rows", type=int, default=100_000)
    parser.add_argument("--max_tokens", type=int, default=4096)
    parser.add_argument("--read_sentences", type=int, default=300_000, help="sentences read per measurement")
    parser.add_argument("--work", help="folder for the corpus and records (default: a temporary one, removed)")
    parser.add_argument("--measure", nargs="+", metavar="RECORD_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--vocab_size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sentences < 8 or args.shard_sentences < 1 or args.read_sentences < 1:
        parser.error("need --sentences >= 8, --shard_sentences >= 1 and --read_sentences >= 1")
    return args


# ----------------------------------------------------------------------------------------------------------------
# The measuring process
# ----------------------------------------------------------------------------------------------------------------

def tree_pss_mb(pid):
    """PSS of a process and its children, in MiB."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            pids += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    total = 0
    for each in pids:
        try:
            with open(f"/proc/{each}/smaps_rollup", encoding="ascii") as handle:
                total += int(re.search(r"^Pss:\s+(\d+) kB", handle.read(), re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total / 1024


class PeakMemory:
    """Samples tree_pss_mb of this process every 0.1 s in a thread; `peak` after stop()."""

    def __init__(self):
        self.peak, self.running = 0.0, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.peak = max(self.peak, tree_pss_mb(os.getpid()))
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, tree_pss_mb(os.getpid()))
        return self.peak


def measure(args):
    """Reads args.measure with the streaming loader; prints one JSON line."""
    from src.dataset import DynamicMasking, iterate_batches, open_rows
    from src.workers import loader_pool
    pool = loader_pool(args.workers)
    memory = PeakMemory()
    rows = open_rows(args.measure, name="news")
    batches = iterate_batches(rows, batch_size=0, max_tokens=args.max_tokens, bucket_boundaries=[16, 32, 64],
                              shuffle=True, seed=1, epoch=0, window_rows=args.window_rows, pool=pool,
                              dynamic=DynamicMasking("mass", 0.5, args.vocab_size), vocab_size=args.vocab_size)
    sentences, first_batch, started = 0, None, None
    for batch in batches:
        if first_batch is None:
            first_batch = time.perf_counter() - STARTED
            started = time.perf_counter()
            continue
        sentences += int((batch["example_index"] >= 0).sum())
        if sentences >= args.read_sentences:
            break
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(rows), "batches": len(batches), "first_batch_s": first_batch,
                      "sentences": sentences, "sentences_per_s": sentences / max(seconds, 1e-9),
                      "rss_mb": memory.stop()}))


# ----------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------

def write_corpus(news, path, sentences):
    """`sentences` lines: the news file repeated (streamed)."""
    written = 0
    with open(path, "wb") as output:
        while written < sentences:
            with open(news, "rb") as source:
                for line in source:
                    output.write(line if line.endswith(b"\n") else line + b"\n")
                    written += 1
                    if written == sentences:
                        break


def run(command, what):
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise UserError(f"{what} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return result.stdout


def measure_loader(args, files, vocab_size):
    command = [sys.executable, os.path.abspath(__file__), "--measure", *files, "--vocab_size", str(vocab_size),
               "--workers", str(args.workers), "--window_rows", str(args.window_rows), "--max_tokens",
               str(args.max_tokens), "--read_sentences", str(args.read_sentences)]
    return json.loads(run(command, "the loader measurement").strip().splitlines()[-1])


def main(args):
    if args.measure:
        return measure(args)
    if not os.path.isfile(args.news):
        print(f"skipped: news sentences not found at {args.news} (../shared/data is absent)")
        return 0
    with tempfile.TemporaryDirectory(prefix="loader_scale_") as temporary:
        work = args.work or temporary
        os.makedirs(work, exist_ok=True)
        corpus, records = os.path.join(work, "corpus.txt"), os.path.join(work, "records")
        write_corpus(args.news, corpus, args.sentences)
        shards = max(4, math.ceil(args.sentences / args.shard_sentences))
        shards += -shards % 4  # a whole number of shards in a quarter of the corpus
        started = time.perf_counter()
        summary = run([sys.executable, os.path.join(REPO, "news_crawl.py"), "--input_files", corpus, "--dict_folder",
                       records, "--output_folder", records, "--processes", str(args.processes), "--num_shards",
                       str(shards), "--max_len", "64", "--seed", "1"], "news_crawl.py")
        build_seconds = time.perf_counter() - started
        summary = next(line for line in summary.splitlines() if line.startswith("news_crawl:"))
        print(f"builder: {args.sentences} sentences, --processes {args.processes}, {shards} shards, "
              f"{build_seconds:.1f} s ({summary})")
        vocab_size = int(re.search(r"vocab_size=(\d+)", summary).group(1))
        files = [os.path.join(records, f"news.mindrecord{i}") for i in range(shards)]
        # A shard named alone reads alone, but the first names the whole set: the quarter is shards 1 .. N/4.
        sizes = {"small": files[1:1 + shards // 4], "large": files[:1]}
        results = {}
        for name, chosen in sizes.items():
            results[name] = measure_loader(args, chosen, vocab_size)
            print(f"loader {name}: {json.dumps(results[name])}")
    print(f"builder_sentences_per_s: {args.sentences / build_seconds:.0f}")
    print(f"loader_first_batch_s: {results['large']['first_batch_s']:.2f}")
    print(f"loader_sentences_per_s: {results['large']['sentences_per_s']:.0f}")
    print(f"loader_rss_mb_small: {results['small']['rss_mb']:.0f}")
    print(f"loader_rss_mb_large: {results['large']['rss_mb']:.0f}")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
