"""bench/reproduce_table.py: the results table from run folders, with missing runs named."""
import json
import os
import subprocess
import sys

import pytest

from conftest import shared_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(folder, wall_s, steps=(), valid_losses=(), files=None):
    """A run folder: wall_s, metrics.jsonl with train records at `steps` and valid records, and `files`."""
    os.makedirs(folder)
    with open(os.path.join(folder, "wall_s"), "w") as out:
        out.write(f"{wall_s}\n")
    with open(os.path.join(folder, "metrics.jsonl"), "w") as out:
        for step in steps:
            out.write(json.dumps({"type": "train", "step": step}) + "\n")
        for loss in valid_losses:
            out.write(json.dumps({"type": "valid", "loss": loss}) + "\n")
    for name, content in (files or {}).items():
        with open(os.path.join(folder, name), "w") as out:
            out.write(content if isinstance(content, str) else json.dumps(content))


def test_table_scores_degeneracy_and_missing_runs(tmp_path):
    run = tmp_path / "run"
    os.makedirs(run / "text" / "tok")
    (run / "text" / "tok" / "giga_test.title.txt").write_text("police kill man\nstocks rise\nstocks rise\n")
    write_run(run / "pretrain", 1333, steps=(10, 20, 400), valid_losses=(6.5, 5.25, 5.5))
    # unstemmed: 100, 0, 0 -> 33.33 for R-1/2/L; stemmed ("stock rising" = "stocks rise"): 100 each
    write_run(run / "gigaword_pretrained", 900, steps=(10, 150),
              files={"test.hyp.txt": "police kill man\nstock rising\nstock rising\n",
                     "test.hyp.txt.json": {"rouge1": 0.0}})
    write_run(run / "cornell_pretrained", 700, steps=(120,), files={"test.nll.txt.json": {"ppl": 120.456}})
    write_run(run / "gigaword_scratch", 880, steps=(500,))  # trained, not evaluated
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "reproduce_table.py"), str(run)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = (run / "results.md").read_text().splitlines()
    assert lines[2] == ("| MASS pre-trained | 33.33 | 33.33 | 33.33 | 100.00 | 100.00 | 100.00 | 120.46 | "
                        "150 (350) / 120 (320) | 900 / 700 |")
    assert lines[3].startswith("| from scratch | not run |")
    assert '| MASS pre-trained | 2.3 | 2 / 3 | "stock rising" (2) |' in lines
    assert ("MASS pre-training on news: 400 updates in 1333 s; held-out news valid loss 5.5000 at the end, best "
            "5.2500 (3 evaluations" in result.stdout)
    missing = json.loads((run / "results.json").read_text())["missing"]
    assert missing == ["gigaword_scratch", "cornell_scratch"]
    assert not list(run.glob("*.tmp"))


def test_bad_folder_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "reproduce_table.py"),
                             str(tmp_path / "absent")], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_quick_reproduction_fills_every_row(tmp_path):
    """QUICK=1 bench/reproduce.sh (every stage on 600-line subsets, ~7 minutes): every model is trained and scored."""
    shared_data("news", "news.en.txt")
    run = tmp_path / "quick"
    result = subprocess.run(["bash", os.path.join(REPO, "bench", "reproduce.sh"), str(run)],
                            env={**os.environ, "QUICK": "1"}, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["missing"] == []
    table = (run / "results.md").read_text()
    assert "not run" not in table and "MASS pre-trained |" in table
