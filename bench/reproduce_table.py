"""Results table of bench/reproduce.sh (protocol v2): RUN/results.md and RUN/results.json from the runs' outputs.

    python bench/reproduce_table.py RUN

Per task and arm (MASS pre-trained then fine-tuned; from random weights): the test scores, the updates it trained
(the pre-trained arm's total counts half the pre-training, which serves both tasks), its wall time, and for
Gigaword ROUGE-1/2/L F1 with and without the Porter stemmer (rouge-score, computed here from RUN/TASK_ARM/test.hyp.txt
and the reference titles RUN/text/tok/giga_test.title.txt) and the degeneracy of the hypotheses: mean length in
words, distinct hypotheses, the most repeated one and its count. Also the pre-training valid curve's end (best and
last valid loss on the held-out news). A run that is missing (not trained or not evaluated yet) shows as "not run".
"""
import collections
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ARMS = (("pretrained", "MASS pre-trained"), ("scratch", "from scratch"))
SCORES = {"gigaword": "test.hyp.txt.json", "cornell": "test.nll.txt.json"}


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def metrics(folder):
    """The records of FOLDER/metrics.jsonl."""
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def trained_updates(folder):
    """Optimizer updates of a run: the last step its train log records."""
    return max((record["step"] for record in metrics(folder) if record["type"] == "train"), default=0)


def degeneracy(hypotheses):
    lengths = [len(line.split()) for line in hypotheses]
    top, count = collections.Counter(hypotheses).most_common(1)[0] if hypotheses else ("", 0)
    return {"mean_length": sum(lengths) / max(len(lengths), 1), "distinct": len(set(hypotheses)),
            "hypotheses": len(hypotheses), "most_repeated": top, "most_repeated_count": count}


def gigaword_scores(run, folder):
    from src.metrics import rouge_scores
    with open(os.path.join(folder, "test.hyp.txt"), encoding="utf-8") as handle:
        hypotheses = handle.read().splitlines()
    with open(os.path.join(run, "text", "tok", "giga_test.title.txt"), encoding="utf-8") as handle:
        references = handle.read().splitlines()
    return {"rouge": rouge_scores(references, hypotheses, use_stemmer=False),
            "rouge_stemmed": rouge_scores(references, hypotheses, use_stemmer=True), **degeneracy(hypotheses)}


def task_result(run, task, arm, pretrain_updates):
    """Scores, updates and wall seconds of one fine-tuning run, or None when it has no test scores."""
    folder = os.path.join(run, f"{task}_{arm}")
    if not (os.path.exists(os.path.join(folder, SCORES[task])) and os.path.exists(os.path.join(folder, "wall_s"))):
        return None
    with open(os.path.join(folder, "wall_s"), encoding="utf-8") as handle:
        wall_s = int(handle.read())
    scores = gigaword_scores(run, folder) if task == "gigaword" else read_json(os.path.join(folder, SCORES[task]))
    updates = trained_updates(folder)
    total = updates + (pretrain_updates / 2 if arm == "pretrained" else 0)
    return {"scores": scores, "updates": updates, "total_updates": total, "wall_s": wall_s}


def pretraining(run):
    folder = os.path.join(run, "pretrain")
    if not os.path.exists(os.path.join(folder, "wall_s")):
        return None
    with open(os.path.join(folder, "wall_s"), encoding="utf-8") as handle:
        wall_s = int(handle.read())
    valid = [record for record in metrics(folder) if record["type"] == "valid"]
    return {"wall_s": wall_s, "updates": trained_updates(folder),
            "valid_last": valid[-1]["loss"] if valid else None, "valid_best": min((r["loss"] for r in valid),
                                                                                default=None),
            "valid_points": len(valid)}


def rouge_cells(result, key):
    if result is None:
        return "not run | | "
    scores = result["scores"][key]
    return f"{scores['rouge1']:.2f} | {scores['rouge2']:.2f} | {scores['rougeL']:.2f}"


def main(run):
    pre = pretraining(run)
    pretrain_updates = pre["updates"] if pre else 0
    rows, missing = [], []
    for arm, label in ARMS:
        row = {"model": label, "arm": arm}
        for task in SCORES:
            row[task] = task_result(run, task, arm, pretrain_updates)
            if row[task] is None:
                missing.append(f"{task}_{arm}")
        rows.append(row)
    table = ["| model | Gigaword R-1 | R-2 | R-L | (stemmed) R-1 | R-2 | R-L | Cornell PPL | updates giga / cornell "
             "(total with pre-training share) | wall s giga / cornell |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        giga, cornell = row["gigaword"], row["cornell"]
        ppl = f"{cornell['scores']['ppl']:.2f}" if cornell else "not run"
        updates = " / ".join(f"{part['updates']} ({part['total_updates']:g})" if part else "-"
                             for part in (giga, cornell))
        walls = " / ".join(str(part["wall_s"]) if part else "-" for part in (giga, cornell))
        table.append(f"| {row['model']} | {rouge_cells(giga, 'rouge')} | {rouge_cells(giga, 'rouge_stemmed')} | "
                     f"{ppl} | {updates} | {walls} |")
    table += ["", "| Gigaword hypotheses | mean length (words) | distinct | most repeated (count) |",
              "|---|---|---|---|"]
    for row in rows:
        giga = row["gigaword"]
        if giga:
            scores = giga["scores"]
            table.append(f"| {row['model']} | {scores['mean_length']:.1f} | {scores['distinct']} / "
                         f"{scores['hypotheses']} | \"{scores['most_repeated']}\" ({scores['most_repeated_count']}) |")
    if pre:
        last = f"{pre['valid_last']:.4f}" if pre["valid_last"] is not None else "-"
        best = f"{pre['valid_best']:.4f}" if pre["valid_best"] is not None else "-"
        table.append(f"\nMASS pre-training on news: {pre['updates']} updates in {pre['wall_s']} s; held-out news "
                     f"valid loss {last} at the end, best {best} ({pre['valid_points']} evaluations; "
                     f"pretrain/metrics.jsonl).")
    else:
        missing.insert(0, "pretrain")
    if missing:
        table.append(f"Not run yet: {', '.join(missing)} (rerun bench/reproduce.sh on this folder to complete).")
    temporary = os.path.join(run, "results.json.tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump({"rows": rows, "pretrain": pre, "missing": missing}, out, indent=2)
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
