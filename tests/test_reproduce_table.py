"""bench/reproduce_table.py: the results table from run folders, with missing runs named."""
import json
import os
import subprocess
import sys

import pytest

from conftest import shared_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(folder, epochs, wall_s, scores_name=None, scores=None):
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as out:
        json.dump({"dataset_config": {"epochs": epochs, "batch_size": 64}}, out)
    with open(os.path.join(folder, "wall_s"), "w") as out:
        out.write(f"{wall_s}\n")
    if scores_name:
        with open(os.path.join(folder, scores_name), "w") as out:
            json.dump(scores, out)


def test_table_rows_and_missing_runs(tmp_path):
    run = tmp_path / "run"
    write_run(run / "pretrain", 1, 1333)
    write_run(run / "gigaword_pretrained", 3, 900, "test.hyp.txt.json",
              {"rouge1": 25.126, "rouge2": 8.5, "rougeL": 23.994, "examples": 1951})
    write_run(run / "cornell_pretrained", 3, 700, "test.nll.txt.json", {"ppl": 120.456})
    write_run(run / "gigaword_scratch", 3, 880)  # trained, not evaluated
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "reproduce_table.py"), str(run)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = (run / "results.md").read_text().splitlines()
    assert lines[2] == "| MASS pre-trained | 25.13 | 8.50 | 23.99 | 120.46 | 3 / 3 | 900 / 700 |"
    assert lines[3].startswith("| from scratch, same fine-tuning epochs | not run |")
    assert "MASS pre-training on news: 1333 s (64 sentences per update" in result.stdout
    missing = json.loads((run / "results.json").read_text())["missing"]
    assert missing == ["gigaword_scratch", "cornell_scratch", "gigaword_scratch_long", "cornell_scratch_long"]
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
