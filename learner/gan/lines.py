"""The lines a GAN run prints: an evaluation's quality numbers and the kept generator."""

from __future__ import annotations


def format_quality(metrics: dict[str, float]) -> str:
    names = {"quality/classifier_heldout_acc": "classifier held-out acc",
             "quality/conditional_acc": "conditional acc",
             "quality/cfd": "classifier Fréchet distance (CFD)",
             "quality/cfd_real_vs_real": "CFD real-vs-real",
             "quality/cfd_ratio": "CFD / real-vs-real"}
    parts = [f"{label} {metrics[k]:.4g}" for k, label in names.items() if k in metrics]
    spreads = [f"{key.removeprefix('spread/real/')} {real:.3f}/"
               f"{metrics[key.replace('/real/', '/generated/')]:.3f}"
               for key, real in metrics.items() if key.startswith("spread/real/")]
    parts += [f"pixel spread real/samples: {', '.join(spreads)}"] if spreads else []
    games = [f"{key.removeprefix('games/cfd_ratio/')} {v:.3g}" for key, v in metrics.items()
             if key.startswith("games/cfd_ratio/")]
    parts += [f"each game's CFD / its real-vs-real: {', '.join(games)}"] if games else []
    if "quality/selection_cfd" in metrics:  # alone between report epochs
        ratio = metrics.get("quality/selection_cfd_ratio")
        parts.append(f"CFD of the selection draws {metrics['quality/selection_cfd']:.4g}"
                     + (f" ({ratio:.3g}x real-vs-real)" if ratio is not None else "")
                     + f" (best: epoch {int(metrics['best/epoch'])})")
    return "  ".join(parts)


def format_best(metrics: dict[str, float]) -> str:
    """The kept generator's line: its epoch, what chose it, its numbers."""
    return (f"epoch {int(metrics['best/epoch'])}"
            + (" (its live weights)" if metrics.get("best/live") else "")
            + ", chosen by the CFD of its selection draws "
            f"({metrics['best/selection_cfd']:.4g}); CFD "
            f"{metrics['best/quality/cfd']:.4g}, CFD / real-vs-real "
            f"{metrics['best/quality/cfd_ratio']:.4g}"
            + (f", conditional acc {metrics['best/quality/conditional_acc']:.4g}"
               if "best/quality/conditional_acc" in metrics else ""))
