"""Learning curves rendered from a run's logged metrics (runs/<name>/metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from dqn.errors import UserError
from dqn.metrics import STEP_KEY

CURVES = (("charts/episodic_return", "training episodes (mean of recent)"),
          ("eval/mean_return", "evaluation (mean over eval episodes)"))


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} has no metrics.jsonl; give a run folder such as "
                        f"runs/laptop-pong")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{str(path)!r} line {number} is not JSON") from None
    return rows


def best_evaluation(rows: list[dict]) -> tuple[int, float] | None:
    """(frames, mean return) of the best logged evaluation, the later one on a tie: the
    weights the trainer kept as best.pt."""
    points = sorted((r[STEP_KEY], r["eval/mean_return"]) for r in rows if "eval/mean_return" in r)
    if not points:
        return None
    top = max(mean for _, mean in points)
    return [p for p in points if p[1] == top][-1]


def learning_curve(run_dir: Path, out: Path, title: str | None = None) -> Path:
    """Episode return against emulator frames: training and evaluation curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    drawn = 0
    for key, label in CURVES:
        points = [(r[STEP_KEY], r[key]) for r in rows if key in r]
        if points:
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label,
                     marker="o" if key.startswith("eval") else None, markersize=3)
            drawn += 1
    if not drawn:
        raise UserError(f"{str(run_dir)!r} has logged no episode returns yet")
    best = best_evaluation(rows)
    if best is not None and (run_dir / "best.pt").is_file():
        ax.plot([best[0]], [best[1]], marker="*", markersize=14, linestyle="none",
                color="tab:red", label=f"best evaluation, kept as best.pt ({best[1]:+.1f})")
    ax.set_xlabel("emulator frames")
    ax.set_ylabel("episode return (unclipped)")
    ax.set_title(title or run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
