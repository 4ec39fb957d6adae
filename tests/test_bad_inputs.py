"""Bad input to every CLI and launcher, as a new user would give it: one `error:` line, nothing written.

Each case runs the real command in a folder of its own and asserts: a non-zero exit; the last line of stderr is one
`error:` line holding the expected fragment (argparse's `PROG: error:` form counts); no Python traceback and no
MindSpore C++ stack or log line anywhere in the output; the case folder holds exactly what it held before (no new
partial file, and a user's existing output byte for byte unchanged).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SAMPLE = os.path.join(REPO, "data", "sample")
NOISE = ("Traceback", "C++ Call Stack", "[ERROR]", "[WARNING]", "Exception Stack", ".cc:")


# ----------------------------------------------------------------------------------------------------------------
# Shared good inputs: BPE text, a vocabulary, fine-tuning records, a config that fits them, a weights checkpoint
# ----------------------------------------------------------------------------------------------------------------

def run(command, cwd=None, timeout=300):
    return subprocess.run(command, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable}, stdin=subprocess.DEVNULL)


def python(script, *args):
    return [sys.executable, os.path.join(REPO, script), *map(str, args)]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    codes = root / "bpe.codes"
    with open(os.path.join(SAMPLE, "gigaword", "train.article.txt"), "rb") as text, open(codes, "wb") as out:
        subprocess.run([sys.executable, "-m", "subword_nmt.learn_bpe", "-s", "300"], stdin=text, stdout=out,
                       check=True)
    bpe, vocab = root / "bpe", root / "vocab.txt"
    result = run(python("apply_bpe_encoding.py", "--codes", codes, "--src_folder", os.path.join(SAMPLE, "gigaword"),
                        "--output_folder", bpe, "--prefix", "", "--vocab_path", vocab))
    assert result.returncode == 0, result.stderr
    records = root / "records"
    result = run(python("gigaword.py", "--train_src", bpe / "train.article.txt", "--train_ref", bpe / "train.title.txt",
                        "--test_src", bpe / "test.article.txt", "--test_ref", bpe / "test.title.txt",
                        "--existed_vocab", vocab, "--output_folder", records))
    assert result.returncode == 0, result.stderr
    with open(os.path.join(REPO, "config", "config_tiny.json")) as handle:
        config = json.load(handle)
    vocab_size = sum(1 for _ in open(vocab, encoding="utf-8"))
    config["model_config"]["vocab_size"] = vocab_size
    config["dataset_config"]["fine_tune_dataset"] = str(records / "gigaword_train.mindrecord")
    config["dataset_config"]["test_dataset"] = str(records / "gigaword_test.mindrecord")
    (root / "config.json").write_text(json.dumps(config))
    checkpoint = root / "weights.ckpt"
    script = ("import sys; import mindspore as ms; from config.config import load_config; "
              "from src.model import Seq2SeqModel; from src.checkpoint import save_checkpoint; "
              "ms.set_device('CPU'); save_checkpoint(sys.argv[2], Seq2SeqModel(load_config(sys.argv[1]).model_config))")
    result = run([sys.executable, "-c", script, str(root / "config.json"), str(checkpoint)])
    assert result.returncode == 0, result.stderr
    return dict(root=root, codes=codes, bpe=bpe, vocab=vocab, records=records, config=root / "config.json",
                checkpoint=checkpoint, test_records=records / "gigaword_test.mindrecord")


# ----------------------------------------------------------------------------------------------------------------
# The cases: name -> function(good, case_folder) returning (command, expected fragment of the error line)
# ----------------------------------------------------------------------------------------------------------------

def existing_file(folder, name="existing.txt", text="a user's good output\n"):
    path = folder / name
    path.write_text(text)
    return path


def existing_folder(folder, name):
    path = folder / name
    path.mkdir()
    (path / "keep.txt").write_text("kept\n")
    return path


def folder_holding_a_folder(folder, parent, name):
    """FOLDER/PARENT, an output folder in which the output NAME already exists as a folder (with a file inside)."""
    (folder / parent).mkdir()
    existing_folder(folder / parent, name)
    return folder / parent


def binary_file(folder, name):
    path = folder / name
    path.write_bytes(bytes(range(256)) * 4)
    return path


def truncated_records(good, folder):
    data = good["test_records"].read_bytes()
    path = folder / "cut.mindrecord"
    path.write_bytes(data[:len(data) // 3])
    shutil.copy(str(good["test_records"]) + ".db", str(path) + ".db")
    return path


def corrupt_records(good, folder):
    path = folder / "garbage.mindrecord"
    path.write_bytes(b"\x00not a mindrecord file\xff" * 200)
    return path


def eval_args(good, output, **overrides):
    args = {"--config": good["config"], "--vocab": good["vocab"], "--metric": "ppl", "--checkpoint": good["checkpoint"],
            "--test_dataset": good["test_records"], "--output": output}
    args.update(overrides)
    return python("eval.py", *[item for pair in args.items() for item in pair])


def eval_text_args(good, output, **overrides):
    args = {"--config": good["config"], "--vocab": good["vocab"], "--metric": "rouge",
            "--checkpoint": good["checkpoint"], "--input_text": os.path.join(SAMPLE, "gigaword", "test.article.txt"),
            "--codes": good["codes"], "--output": output}
    args.update(overrides)
    return python("eval.py", *[item for pair in args.items() for item in pair])


def train_args(good, output, *extra, config=None):
    return python("train.py", "--config", config or good["config"], "--output", output, "--max_updates", 1, *extra)


def pair_args(good, output_folder, **overrides):
    bpe = good["bpe"]
    args = {"--train_src": bpe / "train.article.txt", "--train_ref": bpe / "train.title.txt",
            "--test_src": bpe / "test.article.txt", "--test_ref": bpe / "test.title.txt",
            "--existed_vocab": good["vocab"], "--output_folder": output_folder}
    args.update(overrides)
    return python("gigaword.py", *[item for pair in args.items() for item in pair])


def news_args(good, output_folder, *extra, **overrides):
    args = {"--src_folder": good["bpe"], "--suffix": "article.txt", "--existed_vocab": good["vocab"],
            "--output_folder": output_folder}
    args.update(overrides)
    return python("news_crawl.py", *[item for pair in args.items() for item in pair], *extra)


def mismatched_pairs(good, folder):
    path = folder / "short.title.txt"
    path.write_text("just one line\n")
    return path


CASES = {
    # tokenize_corpus.py
    "tokenize: corpus folder missing": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", f / "absent", "--output_folder", f / "out"), "absent"),
    "tokenize: corpus folder is a file": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", existing_file(f, "corpus.txt"), "--output_folder", f / "out"),
        "is a file"),
    "tokenize: output folder is an existing file": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", existing_file(f)), "existing.txt"),
    "tokenize: output folder under a file": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", existing_file(f) / "sub"), "existing.txt"),
    "tokenize: no .txt files": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", existing_folder(f, "empty") / "..", "--output_folder",
               f / "out"), "no .txt files"),
    "tokenize: pool size 0": lambda g, f: (
        python("tokenize_corpus.py", "--corpus_folder", os.path.join(SAMPLE, "news"), "--output_folder", f / "out",
               "--pool_size", 0), "--pool_size"),
    # scripts/learn_subword.sh
    "learn_subword: codes path is a folder": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "learn_subword.sh"), "50", existing_folder(f, "codes"),
         os.path.join(SAMPLE, "news")], "is a directory"),
    "learn_subword: merges not a number": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "learn_subword.sh"), "many", f / "codes", os.path.join(SAMPLE, "news")],
        "MERGES"),
    "learn_subword: input missing": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "learn_subword.sh"), "50", f / "codes", f / "absent.txt"], "absent.txt"),
    "learn_subword: empty corpus": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "learn_subword.sh"), "50", f / "codes",
         existing_file(f, "blank.txt", "\n \n")], "empty corpus"),
    # apply_bpe_encoding.py
    "apply_bpe: codes missing": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", f / "absent.codes", "--src_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", f / "out", "--vocab_path", f / "vocab.txt"), "absent.codes"),
    "apply_bpe: codes malformed": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", existing_file(f, "bad.codes", "#version: 0.2\na b c\n"),
               "--src_folder", os.path.join(SAMPLE, "news"), "--output_folder", f / "out",
               "--vocab_path", f / "vocab.txt"), "bad.codes:2"),
    "apply_bpe: vocabulary path is a folder": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", g["codes"], "--src_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", f / "out", "--vocab_path", existing_folder(f, "vocab")), "vocab"),
    "apply_bpe: output folder is a file": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", g["codes"], "--src_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", existing_file(f), "--vocab_path", f / "vocab.txt"), "existing.txt"),
    "apply_bpe: source folder is a file": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", g["codes"], "--src_folder", g["codes"],
               "--output_folder", f / "out", "--vocab_path", f / "vocab.txt"), "is a file"),
    "apply_bpe: input not UTF-8": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", g["codes"], "--src_folder",
               (binary_file(existing_folder(f, "bin"), "data.txt")).parent, "--output_folder", f / "out",
               "--vocab_path", f / "vocab.txt"), "UTF-8"),
    "apply_bpe: glossary holding white space": lambda g, f: (
        python("apply_bpe_encoding.py", "--codes", g["codes"], "--src_folder", os.path.join(SAMPLE, "news"),
               "--output_folder", f / "out", "--vocab_path", f / "vocab.txt", "--glossaries", "a b"),
        "--glossaries 'a b'"),
    # news_crawl.py
    "news_crawl: vocab.txt output is a folder": lambda g, f: (
        news_args(g, folder_holding_a_folder(f, "out", "vocab.txt")), "vocab.txt"),
    "news_crawl: output folder is a file": lambda g, f: (news_args(g, existing_file(f)), "existing.txt"),
    "news_crawl: vocabulary missing": lambda g, f: (
        news_args(g, f / "out", **{"--existed_vocab": f / "absent_vocab.txt"}), "absent_vocab.txt"),
    "news_crawl: source folder is a file": lambda g, f: (
        news_args(g, f / "out", **{"--src_folder": g["vocab"]}), "is a file"),
    "news_crawl: vocabulary is binary": lambda g, f: (
        news_args(g, f / "out", **{"--existed_vocab": binary_file(f, "vocab.bin")}), "vocab.bin"),
    "news_crawl: max_len below min_len": lambda g, f: (
        news_args(g, f / "out", "--min_len", 5, "--max_len", 3), "--max_len"),
    # gigaword.py
    "gigaword: test output is a folder": lambda g, f: (
        pair_args(g, folder_holding_a_folder(f, "out", "gigaword_test.mindrecord")), "gigaword_test.mindrecord"),
    "gigaword: train source missing": lambda g, f: (
        pair_args(g, f / "out", **{"--train_src": f / "absent.article.txt"}), "absent.article.txt"),
    "gigaword: sources and references differ in length": lambda g, f: (
        pair_args(g, f / "out", **{"--train_ref": mismatched_pairs(g, f)}), "short.title.txt"),
    "gigaword: vocabulary is a folder": lambda g, f: (
        pair_args(g, f / "out", **{"--existed_vocab": existing_folder(f, "vocabdir")}), "vocabdir"),
    # cornell_dialog.py
    "cornell: raw mode, test pair file is a folder": lambda g, f: (
        python("cornell_dialog.py", "--raw_folder", os.path.join(os.path.dirname(REPO), "shared", "data", "cornell",
                                                                   "raw_sample"),
               "--pairs_output", folder_holding_a_folder(f, "pairs", "test.tgt.txt"), "--valid_size", 20,
               "--test_size", 20), "test.tgt.txt"),
    "cornell: output folder is a file": lambda g, f: (
        python("cornell_dialog.py", "--src_folder", os.path.join(SAMPLE, "dialog"), "--existed_vocab", g["vocab"],
               "--output_folder", existing_file(f)), "existing.txt"),
    "cornell: pair files missing": lambda g, f: (
        python("cornell_dialog.py", "--src_folder", existing_folder(f, "nopairs"), "--existed_vocab", g["vocab"],
               "--output_folder", f / "out"), "train.src.txt"),
    # train.py
    "train: config is a folder": lambda g, f: (train_args(g, f / "run", config=existing_folder(f, "cfg")), "cfg"),
    "train: config is binary": lambda g, f: (train_args(g, f / "run", config=binary_file(f, "cfg.json")), "cfg.json"),
    "train: config key misspelt": lambda g, f: (
        train_args(g, f / "run", "--set", "model_config.hiden_size=64"), "model_config.hiden_size"),
    "train: run folder is a file": lambda g, f: (train_args(g, existing_file(f)), "existing.txt"),
    "train: GPU on a machine without one": lambda g, f: (train_args(g, f / "run", "--device_target", "GPU"), "GPU"),
    "train: dataset missing": lambda g, f: (
        train_args(g, f / "run", "--set", f"dataset_config.fine_tune_dataset={f / 'absent.mindrecord'}"),
        "absent.mindrecord"),
    "train: truncated records": lambda g, f: (
        train_args(g, f / "run", "--set", f"dataset_config.fine_tune_dataset={truncated_records(g, f)}"),
        "truncated or corrupt"),
    "train: corrupt records": lambda g, f: (
        train_args(g, f / "run", "--set", f"dataset_config.fine_tune_dataset={corrupt_records(g, f)}"),
        "garbage.mindrecord"),
    # eval.py
    "eval: output is a folder": lambda g, f: (eval_args(g, existing_folder(f, "hyp")), "hyp"),
    "eval: checkpoint missing": lambda g, f: (
        eval_args(g, f / "out.txt", **{"--checkpoint": f / "absent.ckpt"}), "absent.ckpt"),
    "eval: checkpoint is garbage": lambda g, f: (
        eval_args(g, f / "out.txt", **{"--checkpoint": binary_file(f, "junk.ckpt")}), "junk.ckpt"),
    "eval: vocabulary missing": lambda g, f: (
        eval_args(g, f / "out.txt", **{"--vocab": f / "absent_vocab.txt"}), "absent_vocab.txt"),
    "eval: Ascend on a machine without one": lambda g, f: (
        eval_args(g, f / "out.txt") + ["--device_target", "Ascend"], "Ascend"),
    "eval: truncated test records": lambda g, f: (
        eval_args(g, f / "out.txt", **{"--test_dataset": truncated_records(g, f)}), "truncated or corrupt"),
    "eval: existing output kept when the run fails": lambda g, f: (
        eval_args(g, existing_file(f, "out.txt"), **{"--checkpoint": f / "absent.ckpt"}), "absent.ckpt"),
    "eval: input text missing": lambda g, f: (
        eval_text_args(g, f / "out.txt", **{"--input_text": f / "absent.txt"}), "absent.txt"),
    "eval: input text with malformed codes": lambda g, f: (
        eval_text_args(g, f / "out.txt", **{"--codes": existing_file(f, "bad.codes", "#version: 0.2\na b c\n")}),
        "bad.codes:2"),
    # export.py
    "export: output is a folder": lambda g, f: (
        python("export.py", "--config", g["config"], "--checkpoint", g["checkpoint"],
               "--output", existing_folder(f, "model.mindir")), "model.mindir"),
    "export: checkpoint is garbage": lambda g, f: (
        python("export.py", "--config", g["config"], "--checkpoint", binary_file(f, "junk.ckpt"),
               "--output", f / "model.mindir"), "junk.ckpt"),
    # weights_average.py
    "weights_average: output is a folder": lambda g, f: (
        python("weights_average.py", "--input_files", g["checkpoint"], "--output_file", existing_folder(f, "avg.npz")),
        "avg.npz"),
    "weights_average: input missing": lambda g, f: (
        python("weights_average.py", "--input_files", g["checkpoint"], f / "absent.ckpt", "--output_file",
               f / "avg.npz"), "absent.ckpt"),
    # launchers
    "run_cpu.sh: unknown option": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "run_cpu.sh"), "-t", "t", "-c", g["config"], "--bogus"], "--bogus"),
    "run_cpu.sh: job fails on a config typo": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "run_cpu.sh"), "-t", "t", "-c",
         existing_file(f, "typo.json", json.dumps({"model_config": {"hiden_size": 8}})), "-o", f / "run"],
        "model_config.hiden_size"),
    "stop_training.sh: folder without a pid file": lambda g, f: (
        ["bash", os.path.join(REPO, "scripts", "stop_training.sh"), "-w", "1", existing_folder(f, "notarun")],
        "no pid file"),
}

# What a case leaves behind on purpose besides nothing: a launcher's run folder with its logs.
LEAVES = {"run_cpu.sh: job fails on a config typo": ("run",)}
def snapshot(folder):
    """Every path under `folder` (hidden ones too) with the SHA-256 of each file's bytes."""
    state = {}
    for base, folders, files in os.walk(folder):
        for name in folders:
            state[os.path.relpath(os.path.join(base, name), folder)] = "dir"
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                state[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return state


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(name, good, tmp_path):
    if name.startswith("cornell: raw mode") and not os.path.isdir(os.path.join(os.path.dirname(REPO), "shared")):
        pytest.skip("needs ../shared/data/cornell/raw_sample")
    folder = tmp_path / "case"
    folder.mkdir()
    command, fragment = CASES[name](good, folder)
    before = snapshot(folder)
    result = run([str(part) for part in command])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    last = result.stderr.rstrip("\n").splitlines()[-1] if result.stderr.strip() else ""
    assert last.startswith("error: ") or ": error: " in last, f"last stderr line: {last!r}\n{output[-2000:]}"
    assert fragment in last, f"{fragment!r} not in {last!r}"
    for noise in NOISE:
        assert noise not in output, f"{noise!r} in the output:\n{output[-3000:]}"
    after = snapshot(folder)
    for leftover in LEAVES.get(name, ()):
        after = {path: digest for path, digest in after.items() if not path.startswith(leftover)}
    assert after == before, f"the command changed {sorted(set(after.items()) ^ set(before.items()))}"


def test_there_are_at_least_forty_cases_over_every_cli():
    assert len(CASES) >= 40
    covered = {name.split(":")[0] for name in CASES}
    assert covered >= {"tokenize", "learn_subword", "apply_bpe", "news_crawl", "gigaword", "cornell", "train", "eval",
                       "export", "weights_average", "run_cpu.sh", "stop_training.sh"}
