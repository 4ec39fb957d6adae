"""Results table of bench/reproduce.sh: RUN/results.md and RUN/results.json from the runs' test scores.

    python bench/reproduce_table.py RUN

A run that is missing (not trained or not evaluated yet) shows as "not run"; the script says which.
"""
import json
import os
import sys

VARIANTS = (("pretrained", "MASS pre-trained"), ("scratch", "from scratch, same fine-tuning epochs"),
            ("scratch_long", "from scratch, same total compute"))
TASKS = {"gigaword": "test.hyp.txt.json", "cornell": "test.nll.txt.json"}


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def task_result(run, task, variant):
    """Scores, epochs and wall seconds of one fine-tuning run, or None when it has no test scores."""
    folder = os.path.join(run, f"{task}_{variant}")
    scores = os.path.join(folder, TASKS[task])
    if not (os.path.exists(scores) and os.path.exists(os.path.join(folder, "wall_s"))):
        return None
    with open(os.path.join(folder, "wall_s"), encoding="utf-8") as handle:
        wall_s = int(handle.read())
    return {"scores": read_json(scores), "epochs": read_json(os.path.join(folder, "config.json"))["dataset_config"]
            ["epochs"], "wall_s": wall_s}


def main(run):
    rows, missing = [], []
    for variant, label in VARIANTS:
        row = {"model": label, "variant": variant}
        for task in TASKS:
            row[task] = task_result(run, task, variant)
            if row[task] is None:
                missing.append(f"{task}_{variant}")
        rows.append(row)
    with open(os.path.join(run, "pretrain", "wall_s"), encoding="utf-8") as handle:
        pretrain_s = int(handle.read())
    pre_config = read_json(os.path.join(run, "pretrain", "config.json"))
    table = ["| model | Gigaword R-1 | R-2 | R-L | Cornell PPL | epochs (giga / cornell) | wall s (giga / cornell) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        giga, cornell = row["gigaword"], row["cornell"]
        rouge = (f"{giga['scores']['rouge1']:.2f} | {giga['scores']['rouge2']:.2f} | {giga['scores']['rougeL']:.2f}"
                 if giga else "not run | | ")
        ppl = f"{cornell['scores']['ppl']:.2f}" if cornell else "not run"
        epochs = " / ".join(str(part["epochs"]) if part else "-" for part in (giga, cornell))
        walls = " / ".join(str(part["wall_s"]) if part else "-" for part in (giga, cornell))
        table.append(f"| {row['model']} | {rouge} | {ppl} | {epochs} | {walls} |")
    table.append(f"\nMASS pre-training on news: {pretrain_s} s ({pre_config['dataset_config']['batch_size']} "
                 f"sentences per update; see pretrain/metrics.jsonl).")
    if missing:
        table.append(f"Not run yet: {', '.join(missing)} (rerun bench/reproduce.sh on this folder to complete).")
    temporary = os.path.join(run, "results.json.tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump({"rows": rows, "pretrain_wall_s": pretrain_s, "missing": missing}, out, indent=2)
    os.replace(temporary, os.path.join(run, "results.json"))
    with open(os.path.join(run, "results.md.tmp"), "w", encoding="utf-8") as out:
        out.write("\n".join(table) + "\n")
    os.replace(os.path.join(run, "results.md.tmp"), os.path.join(run, "results.md"))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print("usage: python bench/reproduce_table.py RUN_FOLDER", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
