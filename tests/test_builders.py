import collections
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, shared_data

import cornell_dialog
import gigaword
import news_crawl
from src.builders import mask_monolingual
from src.dictionary import EOS_ID, MASK_ID, UNK_ID, Dictionary, build_vocabulary
from src.masking import Example, mask_sentences
from src.records import read_records

PYTHON = sys.executable
RAW_SAMPLE = ("cornell", "raw_sample")


def run_script(script, *args):
    return subprocess.run([PYTHON, os.path.join(REPO, script), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def cli(items):
    return [str(item) for item in items]


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def vocab_for(path, *texts):
    counter = collections.Counter(token for text in texts for line in text for token in line.split())
    vocab = Dictionary.from_counter(counter).pad_to_multiple(8)
    vocab.persistence(str(path))
    return vocab


def summary(output, name):
    line = next(line for line in output.splitlines() if line.startswith(name + ":"))
    return dict(field.split("=", 1) for field in line[len(name) + 1:].split())


WORDS = "the cat sat on a mat while dogs ran far away from home".split()
NEWS_A = ["", "cat", "the cat sat", "a mat while dogs ran far away from home again and again",  # 12 tokens
          "dogs ran", "the cat sat on a mat", "home"]
NEWS_B = ["far away from home", "the the the the the the the the the"]  # 9 tokens


def check_mass_example(example):
    sentence = example.sentence_ids
    assert sentence[-1] == EOS_ID
    assert np.array_equal(example.target_ids, sentence[example.decoder_positions])
    assert example.decoder_input_ids[0] == MASK_ID
    assert np.array_equal(example.decoder_input_ids[1:], example.target_ids[:-1])
    outside = np.ones(len(sentence), dtype=bool)
    outside[example.decoder_positions] = False
    assert np.array_equal(example.source_ids[outside], sentence[outside])


def test_news_crawl_counts_vocabulary_and_records(tmp_path, capsys):
    write_lines(tmp_path / "src" / "a.txt", NEWS_A)
    write_lines(tmp_path / "src" / "b.txt", NEWS_B)
    write_lines(tmp_path / "src" / "notes.md", ["not a corpus file"])
    out = tmp_path / "out"
    news_crawl.main(news_crawl.parse_args(cli(["--src_folder", tmp_path / "src", "--dict_folder", tmp_path / "dict",
                                           "--output_folder", out, "--suffix", ".txt", "--min_len", "2",
                                           "--max_len", "10", "--processes", "1", "--format", "tfrecord"])))
    counts = summary(capsys.readouterr().out, "news_crawl")
    # kept: 2 <= tokens and tokens + 1 <= 10; "" "cat" "home" too short, the 12-token line too long.
    assert (counts["read"], counts["kept"], counts["dropped_too_short"], counts["dropped_too_long"],
            counts["unknown_tokens"]) == ("9", "5", "3", "1", "0")
    vocab = Dictionary.load_from_persisted_dict(str(out / "vocab.txt"))
    assert vocab == Dictionary.load_from_persisted_dict(str(tmp_path / "dict" / "vocab.txt"))
    assert len(vocab) % 8 == 0 and vocab[5] == "the"  # most frequent first
    kept = ["the cat sat", "dogs ran", "the cat sat on a mat", "far away from home", " ".join(["the"] * 9)]
    # The one vocabulary builder (as apply_bpe_encoding.py's), over the tokens of the kept sentences only.
    assert vocab == build_vocabulary(collections.Counter(" ".join(kept).split()), pad_to_multiple=8)
    examples = read_records(str(out / "news.tfrecord"))
    assert [vocab.decode(e.sentence_ids) for e in examples] == [
        "the cat sat", "dogs ran", "the cat sat on a mat", "far away from home", " ".join(["the"] * 9)]
    for example in examples:
        check_mass_example(example)
        assert len(example.target_ids) == round(0.5 * (len(example.sentence_ids) - 1))


def test_news_crawl_input_files_give_the_bytes_of_the_concatenated_folder(tmp_path, capsys):
    a, b = write_lines(tmp_path / "a.txt", NEWS_A), write_lines(tmp_path / "b.txt", NEWS_B)
    write_lines(tmp_path / "joined" / "all.txt", NEWS_A + NEWS_B)  # what `cat a.txt b.txt` gives
    common = ["--dict_folder", tmp_path / "dict", "--min_len", "2", "--max_len", "10", "--num_shards", "2",
              "--processes", "1", "--seed", "3"]
    runs = {"files": ["--input_files", a, b], "folder": ["--src_folder", tmp_path / "joined", "--suffix", ".txt"],
            "reversed": ["--input_files", b, a]}
    for name, inputs in runs.items():
        news_crawl.main(news_crawl.parse_args(cli(inputs + common + ["--output_folder", tmp_path / name])))
    capsys.readouterr()

    def contents(name):
        return {f: (tmp_path / name / f).read_bytes() for f in sorted(os.listdir(tmp_path / name))}

    files = contents("files")
    assert sorted(files) == ["news.mindrecord0", "news.mindrecord0.db", "news.mindrecord1", "news.mindrecord1.db",
                             "vocab.txt"]
    assert files == contents("folder")
    # Read in the order given: line indices (and so the masks) follow the list.
    assert files["news.mindrecord0"] != contents("reversed")["news.mindrecord0"]


@pytest.mark.parametrize("inputs, message", [
    ([], "one of the arguments --input_files --src_folder is required"),
    (["--input_files", "a.txt", "--src_folder", "corpus"], "not allowed with argument"),
    (["--input_files", "a.txt", "--suffix", ".txt"], "--suffix goes with --src_folder"),
])
def test_news_crawl_takes_exactly_one_kind_of_input(inputs, message, capsys):
    with pytest.raises(SystemExit):
        news_crawl.parse_args(inputs + ["--existed_vocab", "vocab.txt", "--output_folder", "out"])
    assert message in capsys.readouterr().err


def test_news_crawl_unknown_tokens_and_loose_masking(tmp_path, capsys):
    write_lines(tmp_path / "src" / "a.txt", NEWS_A)
    vocab_for(tmp_path / "vocab.txt", [" ".join(WORDS[:4])])  # the cat sat on
    news_crawl.main(news_crawl.parse_args(cli(["--src_folder", tmp_path / "src", "--existed_vocab",
                                           tmp_path / "vocab.txt", "--output_folder", tmp_path / "out",
                                           "--language_model", "loose", "--max_len", "13", "--processes", "1"])))
    counts = summary(capsys.readouterr().out, "news_crawl")
    # Unknown: "a mat while dogs ran far away from home again and again" 12, "dogs ran" 2, "a mat" 2, "home" 1.
    assert (counts["kept"], counts["unknown_tokens"]) == ("6", "17")
    examples = read_records(str(tmp_path / "out" / "news.mindrecord"))
    for example in examples:
        start = example.decoder_positions[0]
        assert np.array_equal(example.target_ids, example.sentence_ids[start:example.decoder_positions[-1] + 1])
        masked = np.flatnonzero(example.source_ids == MASK_ID)
        # loose predicts the token before the masked fragment too (when there is one).
        assert masked[0] == (start + 1 if len(example.target_ids) > len(masked) else start)


def test_news_crawl_same_bytes_for_one_or_two_processes_and_seed_matters(tmp_path):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, int(rng.integers(1, 20)))) for _ in range(300)]
    write_lines(tmp_path / "src" / "a.txt", lines)
    common = ["--src_folder", tmp_path / "src", "--dict_folder", tmp_path / "dict", "--num_shards", "2"]
    for name, processes, seed in (("one", 1, 1), ("two", 2, 1), ("other_seed", 1, 2)):
        result = run_script("news_crawl.py", *common, "--output_folder", tmp_path / name, "--processes", processes,
                            "--seed", seed)
        assert result.returncode == 0, result.stderr

    def contents(name):
        return {f: (tmp_path / name / f).read_bytes() for f in sorted(os.listdir(tmp_path / name))}

    one = contents("one")
    assert sorted(one) == ["news.mindrecord0", "news.mindrecord0.db", "news.mindrecord1", "news.mindrecord1.db",
                           "vocab.txt"]
    assert one == contents("two")
    assert one["news.mindrecord0"] != contents("other_seed")["news.mindrecord0"]
    assert len(read_records(str(tmp_path / "one" / "news.mindrecord0"))) == 300


def test_pair_builders_same_bytes_for_one_or_two_processes(tmp_path):
    """gigaword.py with noise on 4,500 train pairs (3 chunks of work) in 2 shards: --processes 2 writes the bytes
    --processes 1 writes."""
    rng = np.random.default_rng(1)
    sides = {side: [" ".join(rng.choice(WORDS, int(rng.integers(1, 12)))) for _ in range(4500)]
             for side in ("src", "ref")}
    files = {side: write_lines(tmp_path / f"train.{side}.txt", lines) for side, lines in sides.items()}
    vocab_for(tmp_path / "vocab.txt", [" ".join(WORDS)])
    for name, processes in (("one", 1), ("two", 2)):
        result = run_script("gigaword.py", "--train_src", files["src"], "--train_ref", files["ref"],
                            "--test_src", files["src"], "--test_ref", files["ref"], "--existed_vocab",
                            tmp_path / "vocab.txt", "--output_folder", tmp_path / name, "--noise_prob", 0.2,
                            "--num_shards", 2, "--processes", processes)
        assert result.returncode == 0, result.stderr
    one, two = (sorted(os.listdir(tmp_path / name)) for name in ("one", "two"))
    assert one == two and "gigaword_train.mindrecord1" in one
    for file in one:
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes(), file


def test_gigaword_drops_train_truncates_test_and_maps_unk(tmp_path, capsys):
    train_src = ["a b c", "a b c d e f g", "a b", "", "b c UNK"]
    train_ref = ["x y", "x", "x y z w v u", "x", "y <unk>"]
    test_src = ["a b c d e f g h", "UNK a", "c"]
    test_ref = ["x y", "<unk> y", "x y z w v u t"]
    files = {name: write_lines(tmp_path / f"{name}.txt", lines) for name, lines in
             dict(train_src=train_src, train_ref=train_ref, test_src=test_src, test_ref=test_ref).items()}
    vocab = vocab_for(tmp_path / "vocab.txt", ["a b c d e f g h x y z w v u t"])
    gigaword.main(gigaword.parse_args(cli([
        "--train_src", files["train_src"], "--train_ref", files["train_ref"], "--test_src", files["test_src"],
        "--test_ref", files["test_ref"], "--existed_vocab", tmp_path / "vocab.txt", "--output_folder",
        tmp_path / "out", "--max_len", "6", "--noise_prob", "0.5", "--format", "tfrecord"])))
    output = capsys.readouterr().out
    train, test = summary(output, "gigaword train"), summary(output, "gigaword test")
    assert (train["pairs"], train["kept"], train["dropped_source_too_long"], train["dropped_target_too_long"],
            train["dropped_empty"], train["unknown_tokens"]) == ("5", "2", "1", "1", "1", "2")
    assert (test["pairs"], test["kept"], test["truncated_source"], test["truncated_target"],
            test["unknown_tokens"]) == ("3", "3", "1", "1", "2")
    train_examples = read_records(str(tmp_path / "out" / "gigaword_train.tfrecord"))
    test_examples = read_records(str(tmp_path / "out" / "gigaword_test.tfrecord"))
    assert [vocab.decode(e.sentence_ids) for e in train_examples] == ["a b c", "b c <unk>"]
    assert train_examples[1].sentence_ids[2] == UNK_ID and train_examples[1].target_ids.tolist()[1] == UNK_ID
    assert [vocab.decode(e.sentence_ids) for e in test_examples] == ["a b c d e", "<unk> a", "c"]
    assert test_examples[0].source_ids.tolist()[-1] == EOS_ID and len(test_examples[0].source_ids) == 6
    assert vocab.decode(test_examples[2].target_ids) == "x y z w v"
    assert test_examples[2].decoder_input_ids.tolist()[0] == 1
    # Noise on train only: test sources are the clean sentences.
    assert all(np.array_equal(e.source_ids, e.sentence_ids) for e in test_examples)
    assert any(not np.array_equal(e.source_ids, e.sentence_ids) for e in train_examples)


def test_gigaword_real_test_set_keeps_all_1951_pairs(tmp_path, capsys):
    article, title = shared_data("gigaword", "test.article.txt"), shared_data("gigaword", "test.title.txt")
    vocab_for(tmp_path / "vocab.txt", open(article, encoding="utf-8"), open(title, encoding="utf-8"))
    gigaword.main(gigaword.parse_args(cli(["--train_src", article, "--train_ref", title, "--test_src", article,
                                       "--test_ref", title, "--existed_vocab", tmp_path / "vocab.txt",
                                       "--output_folder", tmp_path / "out", "--max_len", "32",
                                       "--format", "tfrecord"])))
    output = capsys.readouterr().out
    train, test = summary(output, "gigaword train"), summary(output, "gigaword test")
    assert test["kept"] == "1951" and int(test["truncated_source"]) > 0
    assert int(train["kept"]) == 1951 - int(train["dropped_source_too_long"]) - int(train["dropped_target_too_long"])
    assert test["truncated_source"] == train["dropped_source_too_long"]
    assert len(read_records(str(tmp_path / "out" / "gigaword_test.tfrecord"))) == 1951


def test_cornell_records_mode(tmp_path, capsys):
    folder = tmp_path / "pairs"
    for prefix, count in (("train", 6), ("test", 3)):
        write_lines(folder / f"{prefix}.src.txt", [f"hello there {i}" for i in range(count)])
        write_lines(folder / f"{prefix}.tgt.txt", [f"general kenobi {i}" for i in range(count)])
    vocab_for(tmp_path / "vocab.txt", ["hello there general kenobi 0 1 2 3 4 5"])
    cornell_dialog.main(cornell_dialog.parse_args(cli([
        "--src_folder", folder, "--existed_vocab", tmp_path / "vocab.txt", "--output_folder", tmp_path / "out",
        "--valid_prefix", "", "--format", "tfrecord", "--num_shards", "2"])))
    output = capsys.readouterr().out
    assert summary(output, "cornell train")["kept"] == "6" and summary(output, "cornell test")["kept"] == "3"
    assert sorted(os.listdir(tmp_path / "out")) == ["cornell_test.tfrecord0", "cornell_test.tfrecord1",
                                                     "cornell_train.tfrecord0", "cornell_train.tfrecord1"]
    assert len(read_records(str(tmp_path / "out" / "cornell_train.tfrecord"))) == 6


def test_raw_cornell_parser_on_the_sample():
    lines = shared_data(*RAW_SAMPLE, "movie_lines.head669.txt")
    conversations = shared_data(*RAW_SAMPLE, "movie_conversations.head200.txt")
    pairs, counts = cornell_dialog.parse_raw_corpus(lines, conversations)
    assert (counts["lines"], counts["conversations"], counts["pairs"], counts["pairs_skipped_missing_line"],
            counts["pairs_skipped_empty"], counts["malformed_lines"]) == (669, 201, 467, 0, 1, 0)
    # First conversation: ['L194', 'L195', 'L196', 'L197'] -> 3 pairs; text as in the corpus (double spaces kept).
    l194 = ("Can we make this quick?  Roxanne Korrine and Andrew Barrett are having an incredibly horrendous "
            "public break- up on the quad.  Again.")
    l195 = "Well, I thought we'd start with pronunciation, if that's okay with you."
    l196 = "Not the hacking and gagging and spitting part.  Please."
    l197 = "Okay... then how 'bout we try out some French cuisine.  Saturday?  Night?"
    assert pairs[:3] == [(l194, l195), (l195, l196), (l196, l197)]
    # Second conversation: ['L198', 'L199'].
    assert pairs[3] == ("You're asking me out.  That's so cute. What's your name again?", "Forget it.")
    # The last conversation of the sample is ['L929', 'L930', 'L931', 'L932', 'L933'].
    assert pairs[-4:] == [("What just happened?", "Your daughters went to the prom."),
                          ("Your daughters went to the prom.", "Did I have anything to say about it?"),
                          ("Did I have anything to say about it?", "Absolutely not."),
                          ("Absolutely not.", "That ' s what I thought")]


def test_raw_cornell_disjoint_sample_pairs_are_in_the_released_pair_files():
    pairs, counts = cornell_dialog.parse_raw_corpus(shared_data(*RAW_SAMPLE, "movie_lines.head669.txt"),
                                                    shared_data(*RAW_SAMPLE, "movie_conversations.head200.txt"),
                                                    stride=2)
    assert counts["pairs"] == 299
    released = set()
    for split in ("train", "valid", "test"):
        with open(shared_data("cornell", f"{split}.src.txt"), encoding="utf-8") as sources, \
                open(shared_data("cornell", f"{split}.tgt.txt"), encoding="utf-8") as targets:
            released.update(zip((s.rstrip("\n") for s in sources), (t.rstrip("\n") for t in targets)))
    assert [pair for pair in pairs if pair not in released] == [("How'd you do it?", "Do what?")]


def test_raw_cornell_missing_lines_and_undecodable_bytes(tmp_path):
    separator = b" +++$+++ "
    (tmp_path / "movie_lines.txt").write_bytes(b"\n".join([
        separator.join([b"L1", b"u0", b"m0", b"ANN", b"Caf\xe9 au lait?"]),           # Latin-1 e-acute
        separator.join([b"L2", b"u1", b"m0", b"BOB", b"It\x92s late.  Go."]),          # cp1252 apostrophe
        separator.join([b"L3", b"u0", b"m0", b"ANN", b"Bad \x81 byte"]),              # undefined in cp1252
        separator.join([b"L4", b"u1", b"m0", b"BOB", b""]),                            # empty utterance
        "L5 +++$+++ u0 +++$+++ m0 +++$+++ ANN +++$+++ Ça va.".encode("utf-8"),
        b"garbage line"]) + b"\n")
    (tmp_path / "movie_conversations.txt").write_text(
        "u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L1', 'L2', 'L3']\n"
        "u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L2', 'L99', 'L5']\n"
        "u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L3', 'L4', 'L5']\n", encoding="utf-8")
    pairs, counts = cornell_dialog.parse_raw_corpus(tmp_path / "movie_lines.txt",
                                                    tmp_path / "movie_conversations.txt")
    assert pairs == [("Café au lait?", "It’s late.  Go."), ("It’s late.  Go.", "Bad \x81 byte")]
    assert (counts["conversations"], counts["conversations_with_missing_lines"], counts["pairs_skipped_missing_line"],
            counts["pairs_skipped_empty"], counts["malformed_lines"], counts["non_utf8_lines"]) == (3, 1, 2, 2, 1, 3)


def test_raw_cornell_cli_splits_the_pairs(tmp_path):
    sample = shared_data(*RAW_SAMPLE)
    result = run_script("cornell_dialog.py", "--raw_folder", sample, "--pairs_output", tmp_path,
                        "--valid_size", 50, "--test_size", 100, "--seed", 3)
    assert result.returncode == 0, result.stderr
    counts = summary(result.stdout, "cornell pairs")
    assert (counts["pairs"], counts["train"], counts["valid"], counts["test"]) == ("467", "317", "50", "100")
    pairs, _ = cornell_dialog.parse_raw_corpus(os.path.join(sample, "movie_lines.head669.txt"),
                                               os.path.join(sample, "movie_conversations.head200.txt"))
    written = []
    for split, size in (("train", 317), ("valid", 50), ("test", 100)):
        sources = (tmp_path / f"{split}.src.txt").read_text(encoding="utf-8").splitlines()
        targets = (tmp_path / f"{split}.tgt.txt").read_text(encoding="utf-8").splitlines()
        assert len(sources) == len(targets) == size
        written.extend(zip(sources, targets))
    assert sorted(written) == sorted(pairs)


def test_bad_input_gives_one_line_errors(tmp_path):
    write_lines(tmp_path / "src.txt", ["a b", "c d", "e"])
    write_lines(tmp_path / "ref.txt", ["x", "y"])
    vocab_for(tmp_path / "vocab.txt", ["a b c d e x y"])
    out = tmp_path / "out"
    pair_args = ["--test_src", tmp_path / "src.txt", "--test_ref", tmp_path / "src.txt", "--output_folder", out]
    result = run_script("gigaword.py", "--train_src", tmp_path / "src.txt", "--train_ref", tmp_path / "ref.txt",
                        "--existed_vocab", tmp_path / "vocab.txt", *pair_args)
    assert_one_line_error(result, "misaligned pair files", "src.txt has 3 lines", "ref.txt has 2")
    result = run_script("gigaword.py", "--train_src", tmp_path / "src.txt", "--train_ref", tmp_path / "src.txt",
                        "--existed_vocab", tmp_path / "missing_vocab.txt", *pair_args)
    assert_one_line_error(result, "vocabulary file not found", "missing_vocab.txt")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "empty.txt").write_text("")
    result = run_script("news_crawl.py", "--src_folder", tmp_path / "corpus", "--existed_vocab",
                        tmp_path / "vocab.txt", "--output_folder", out)
    assert_one_line_error(result, "empty", "empty.txt")
    result = run_script("news_crawl.py", "--src_folder", tmp_path / "corpus", "--existed_vocab",
                        tmp_path / "vocab.txt", "--output_folder", out, "--suffix", ".bpe")
    assert_one_line_error(result, "no files ending with '.bpe'")
    (tmp_path / "raw").mkdir()
    write_lines(tmp_path / "raw" / "movie_lines.txt", ["L1 +++$+++ u0 +++$+++ m0 +++$+++ A +++$+++ hi"])
    write_lines(tmp_path / "raw" / "movie_conversations.txt", ["u0 +++$+++ u1 +++$+++ m0 +++$+++ L1, L2"])
    result = run_script("cornell_dialog.py", "--raw_folder", tmp_path / "raw", "--pairs_output", out)
    assert_one_line_error(result, "movie_conversations.txt:1", "expected")
    assert not out.exists()


def test_masking_pool_gives_the_examples_of_one_process():
    rng = np.random.default_rng(1)
    items = [(index * 3, " ".join(rng.choice(WORDS, int(rng.integers(1, 15))))) for index in range(50)]
    vocab = Dictionary.from_counter(collections.Counter(WORDS))
    options = dict(language_model="mass", mask_ratio=0.5, seed=4, chunk_size=7)
    one, unknown_one = mask_monolingual(items, vocab, processes=1, **options)
    two, unknown_two = mask_monolingual(items, vocab, processes=2, **options)
    assert unknown_one == unknown_two == 0 and len(one) == len(two) == 50
    assert all(a.equals(b) for a, b in zip(one, two))
    # Each sentence's draw depends on its line index only (keyed by (seed, 0, line index)).
    ids = vocab.encode_line(items[10][1])
    source, decoder_input, target, positions, _ = mask_sentences("mass", ids[None], [len(ids) - 1], 4, 0, [30], 0.5,
                                                                 len(vocab))
    assert one[10].equals(Example(ids, source[0], decoder_input[0], target[0], positions[0]))
