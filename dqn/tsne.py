"""A t-SNE map of the DQN's last hidden layer over the states it visits (Mnih et al. 2015,
Fig. 4): each point a state, placed by t-SNE of its activations, coloured by the network's
predicted state value max_a Q(s, a)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dqn.config import EnvConfig
from dqn.evaluation import visited_observations

FIGURE_INCHES, FIGURE_DPI = 8, 100   # an 800 x 800 PNG


def visited_states(q_net: torch.nn.Module, cfg: EnvConfig, states: int, eps: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(activations (S, H), max Q (S,)) over `states` consecutive decisions of one env."""
    obs = torch.as_tensor(visited_observations(q_net, cfg, states, eps, seed))
    with torch.no_grad():
        return q_net.embed(obs).numpy(), q_net(obs).max(dim=1).values.numpy()


def tsne_png(features: np.ndarray, values: np.ndarray, path: Path, title: str,
             seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, len(features) // 4)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca",
              random_state=seed).fit_transform(features)
    fig, ax = plt.subplots(figsize=(FIGURE_INCHES, FIGURE_INCHES), dpi=FIGURE_DPI)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", s=6)
    fig.colorbar(points, ax=ax, fraction=0.046, pad=0.04, label=r"$\max_a Q(s, a)$")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)   # no tight bbox: the PNG keeps the stated size
    plt.close(fig)
    return path
