"""Loss curves of a run: metrics.jsonl (train and valid records of each phase) -> PNG (matplotlib, Agg backend)."""
import json

from src.errors import UserError, atomic_path, require_file

PHASE_COLOURS = {"pretrain": "tab:blue", "finetune": "tab:orange"}


def read_metrics(path):
    """The records of a metrics.jsonl file; a one-line error naming the first bad line."""
    require_file(path, "metrics file")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}:{number}: not a JSON object") from None
            if not isinstance(record, dict) or record.get("type") not in ("train", "valid"):
                raise UserError(f"{path}:{number}: expected a record with type train or valid")
            records.append(record)
    if not records:
        raise UserError(f"{path}: no metrics records")
    return records


def plot_metrics(metrics_path, output_path):
    """Train and valid loss per update step, one panel per phase; returns output_path."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    records = read_metrics(metrics_path)
    phases = [phase for phase in PHASE_COLOURS if any(r.get("phase") == phase for r in records)]
    figure, axes = pyplot.subplots(1, len(phases), figsize=(6 * len(phases), 4), squeeze=False)
    for axis, phase in zip(axes[0], phases):
        colour = PHASE_COLOURS[phase]
        for kind, style in (("train", "-"), ("valid", "o--")):
            points = [(r["step"], r["loss"]) for r in records
                      if r.get("phase") == phase and r["type"] == kind and r.get("loss") is not None]
            if points:
                steps, losses = zip(*points)
                axis.plot(steps, losses, style, color=colour, alpha=1.0 if kind == "valid" else 0.7,
                          label=f"{kind} loss")
        axis.set_title(phase)
        axis.set_xlabel("update step")
        axis.set_ylabel("label-smoothed loss per token")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_path(output_path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)
    return output_path
