"""BPE apply speed: this repository's apply_bpe_file (src/bpe.py) against `subword-nmt apply-bpe`, same input.

    python bench/bpe_speed.py [--processes 1] [--merges 10000] [--repeat 1]

Tokenizes ../shared/data/news/news.en.txt (nltk, cached) and learns MERGES codes with subword-nmt (cached,
under $TMPDIR/mass-bench-cache), then times both tools as separate commands (interpreter start-up, codes
loading, reading and writing included; best of --repeat), checks their outputs are byte-identical, and
prints `bpe_apply_speedup: X` (subword-nmt wall time / ours) as its last line. Exits 0 with a message
when the data is absent.
"""
import argparse
import filecmp
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "news", "news.en.txt")
sys.path.insert(0, REPO)

OURS = ("import sys; from src.bpe import load_bpe_codes, apply_bpe_file; "
        "apply_bpe_file(load_bpe_codes(sys.argv[1]), sys.argv[2], sys.argv[3], processes=int(sys.argv[4]))")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=1, help="processes for both tools")
    parser.add_argument("--merges", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs of each tool")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "mass-bench-cache"))
    return parser.parse_args(argv)


def timed(command, quiet=False):
    """Runs a command; returns (wall seconds, CPU seconds of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # quiet: learn-bpe draws a progress bar whatever stderr is; TQDM_DISABLE turns tqdm off.
    subprocess.run(command, check=True, cwd=REPO, env=dict(os.environ, TQDM_DISABLE="1") if quiet else None)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(args):
    """Tokenized copy of the data and its codes file, made once per data version and kept in the cache."""
    from src.tokenization import tokenize_files
    stat = os.stat(args.data)
    key = f"{os.path.basename(args.data)}.{stat.st_size}.{int(stat.st_mtime)}"
    tokenized_dir = os.path.join(args.cache_dir, key + ".tok")
    tokenized = os.path.join(tokenized_dir, os.path.basename(args.data))
    if not os.path.exists(tokenized):
        staging = tempfile.mkdtemp(dir=args.cache_dir)
        os.symlink(os.path.abspath(args.data), os.path.join(staging, os.path.basename(args.data)))
        start = time.perf_counter()
        stats = tokenize_files([staging], tokenized_dir, "nltk", pool_size=2, progress=False)
        print(f"tokenized (nltk, pool 2) in {time.perf_counter() - start:.1f}s: {stats['lines']} lines, "
              f"{stats['tokens']} tokens")
    codes = os.path.join(args.cache_dir, f"{key}.{args.merges}.codes")
    if not os.path.exists(codes):
        wall, _ = timed(["bash", "scripts/learn_subword.sh", str(args.merges), codes, tokenized], quiet=True)
        print(f"learned {args.merges} merges with subword-nmt in {wall:.1f}s")
    return tokenized, codes


def main(args):
    if not os.path.exists(args.data):
        print(f"skipped: data not present: {args.data}")
        return 0
    os.makedirs(args.cache_dir, exist_ok=True)
    tokenized, codes = prepare(args)
    python = sys.executable
    with tempfile.TemporaryDirectory() as work:
        reference_out, ours_out = os.path.join(work, "reference.bpe"), os.path.join(work, "ours.bpe")
        if args.processes == 1:  # the `subword-nmt apply-bpe` command itself (it has no --num-workers)
            reference = [os.path.join(os.path.dirname(python), "subword-nmt"), "apply-bpe"]
        else:  # its module entry point has --num-workers
            reference = [python, "-m", "subword_nmt.apply_bpe", "--num-workers", str(args.processes)]
        reference += ["-c", codes, "-i", tokenized, "-o", reference_out]
        ours = [python, "-c", OURS, codes, tokenized, ours_out, str(args.processes)]
        reference_times = min(timed(reference) for _ in range(args.repeat))
        ours_times = min(timed(ours) for _ in range(args.repeat))
        identical = filecmp.cmp(reference_out, ours_out, shallow=False)
    with open(tokenized, "rb") as handle:
        lines = sum(1 for _ in handle)
    print(f"input: {tokenized} ({lines} lines), {args.merges} merges, processes {args.processes}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"subword_nmt_apply_s: {reference_times[0]:.3f} (cpu {reference_times[1]:.3f})")
    print(f"ours_apply_s: {ours_times[0]:.3f} (cpu {ours_times[1]:.3f})")
    print(f"identical_output: {identical}")
    print(f"cpu_speedup: {reference_times[1] / ours_times[1]:.2f}")
    print(f"bpe_apply_speedup: {reference_times[0] / ours_times[0]:.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
