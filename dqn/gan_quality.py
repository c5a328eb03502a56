"""A quality number people can trust, without Inception weights (none can be downloaded).

A small CNN learns to tell the games apart on the real training frames. It gives:

- its accuracy on held-out real frames (is the judge itself any good?);
- conditional accuracy: the fraction of samples drawn for game g that it calls g;
- the classifier Fréchet distance (CFD): the Fréchet distance between Gaussians
  fitted to real and generated frames in its penultimate-layer features,
      CFD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).
  This is FID's formula in *this classifier's* feature space, not the Inception FID:
  compare it only with the real-vs-real baseline computed the same way, the CFD
  between two disjoint halves of the held-out real frames.

Both halves have the same size and so has the generated set, drawn for the same games
as half B: the Fréchet distance of a finite sample is biased upward by fewer samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dqn.frames import FrameSet
from dqn.gan import to_unit

FEATURES = 64  # penultimate width: small, so covariances of ~1000 samples are sound


class GameClassifier(nn.Module):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.torso = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(4 * width * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.torso(to_unit(images_uint8))

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images_uint8))


class Quality(NamedTuple):
    heldout_accuracy: float      # classifier on held-out real frames
    conditional_accuracy: float  # samples called the game they were drawn for (nan if
                                 # unconditional)
    cfd: float                   # generated vs held-out real (half B)
    cfd_real_baseline: float     # held-out real half A vs half B
    # class name (or "all" when unconditional) -> (real, generated) pixel spread
    spread: dict[str, tuple[float, float]] | None = None

    @property
    def ratio(self) -> float:
        return self.cfd / max(self.cfd_real_baseline, 1e-12)

    def metrics(self) -> dict[str, float]:
        out = {"quality/classifier_heldout_acc": self.heldout_accuracy,
               "quality/cfd": self.cfd, "quality/cfd_real_vs_real": self.cfd_real_baseline,
               "quality/cfd_ratio": self.ratio}
        if not np.isnan(self.conditional_accuracy):
            out["quality/conditional_acc"] = self.conditional_accuracy
        for name, (real, generated) in (self.spread or {}).items():
            out[f"spread/real/{name}"] = real
            out[f"spread/generated/{name}"] = generated
        return out


def pixel_spread(images_uint8: np.ndarray | torch.Tensor) -> float:
    """How much the images of one set differ from one another: the per-pixel standard
    deviation across the set, averaged over pixels and channels, in the generator's
    [-1, 1] units. A generator that ignores its noise scores near 0."""
    x = torch.as_tensor(images_uint8).double() / 127.5
    return float(x.std(dim=0).mean()) if len(x) > 1 else 0.0


def nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))


def train_classifier(train: FrameSet, updates: int, width: int, seed: int,
                     batch: int = 64) -> GameClassifier:
    """A few hundred Adam updates on real frames; colour and layout make it easy."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = GameClassifier(len(train.names), width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = nchw(train.images), torch.from_numpy(train.labels)
    for _ in range(updates):
        idx = torch.randint(len(labels), (batch,), generator=gen)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: GameClassifier, images: torch.Tensor, batch: int = 500
            ) -> tuple[np.ndarray, np.ndarray]:
    """(features, predicted labels) of uint8 NCHW images."""
    feats = torch.cat([model.features(images[i:i + batch]) for i in
                       range(0, len(images), batch)])
    return feats.double().numpy(), model.head(feats).argmax(1).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of `a` and of `b`.

    Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a
    symmetric PSD matrix, so no general matrix square root is needed."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(s_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)


class Judge:
    """The classifier plus two disjoint halves A and B of the held-out real frames.

    The halves hold the same number of frames of every class (`samples` in all, as
    far as the held-out frames allow): with games this different, a few frames'
    imbalance between two sets would otherwise dominate the distance through the
    mean term. Conditional samples are drawn for B's labels, so they match it too."""

    def __init__(self, model: GameClassifier, heldout: FrameSet, seed: int, samples: int):
        self.model = model
        feats, predicted = predict(model, nchw(heldout.images))
        self.heldout_accuracy = float((predicted == heldout.labels).mean())
        rng = np.random.default_rng(seed)
        classes = len(heldout.names)
        per_class = max(1, samples // classes)
        half_a, half_b = [], []
        for label in range(classes):
            idx = rng.permutation(np.flatnonzero(heldout.labels == label))
            k = min(per_class, len(idx) // 2)
            half_a.append(idx[:k])
            half_b.append(idx[k:2 * k])
        half_a = rng.permutation(np.concatenate(half_a))
        half_b = rng.permutation(np.concatenate(half_b))
        self.feats_a, self.feats_b = feats[half_a], feats[half_b]
        self.images_a, self.labels_a = heldout.images[half_a], heldout.labels[half_a]
        self.labels_b = heldout.labels[half_b]  # the games to draw samples for
        self.baseline = frechet_distance(self.feats_a, self.feats_b)
        self.names = heldout.names
        images_b = heldout.images[half_b]
        self.spread_b = {"all": pixel_spread(images_b)}
        self.spread_b.update({name: pixel_spread(images_b[self.labels_b == label])
                              for label, name in enumerate(self.names)})

    def score(self, generated: torch.Tensor, labels: np.ndarray | None) -> Quality:
        """`generated`: uint8 NCHW samples, as many as half B holds, drawn for the games
        in `labels_b` (`labels` None: an unconditional model chose its own games)."""
        feats, predicted = predict(self.model, generated)
        cond = float("nan") if labels is None else float((predicted == labels).mean())
        if labels is None:   # the model chose its games: only the spread of the whole set
            spread = {"all": (self.spread_b["all"], pixel_spread(generated))}
        else:                # per game: samples drawn for it against its real frames
            mine = [torch.from_numpy(labels == label) for label in range(len(self.names))]
            spread = {name: (self.spread_b[name], pixel_spread(generated[mine[label]]))
                      for label, name in enumerate(self.names)}
        return Quality(self.heldout_accuracy, cond, frechet_distance(feats, self.feats_b),
                       self.baseline, spread)

    def selection_cfd(self, generated: torch.Tensor) -> float:
        """The CFD of samples drawn for half A's games (as many as it holds) to half A:
        the number a run picks its best generator by, so that the one it reports, on
        half B, is not the luckiest of many draws against B itself."""
        return frechet_distance(predict(self.model, generated)[0], self.feats_a)


def references(judge: Judge, train: FrameSet, seed: int) -> dict[str, float]:
    """The CFD to half B of frame sets made from real frames, each with B's games: the
    scale to read a model's CFD on. Half A itself is the baseline; the training frames
    are what a model that copied its data would score; the others spoil half A a little
    (a 1-pixel shift, noise of 4 grey levels, a Gaussian blur of 1 pixel) or collapse
    it (every frame of a game its mean frame, or one real frame repeated)."""
    rng = np.random.default_rng(seed)
    a, labels = judge.images_a, judge.labels_a
    games = [np.flatnonzero(labels == label) for label in range(len(judge.names))]
    copied = np.concatenate([rng.choice(np.flatnonzero(train.labels == label), len(idx),
                                        replace=len(idx) > (train.labels == label).sum())
                             for label, idx in enumerate(games)])
    mean_frames, one_frame = a.copy(), a.copy()
    for idx in games:
        if len(idx):
            mean_frames[idx] = a[idx].mean(0).round().astype(np.uint8)
            one_frame[idx] = a[idx[0]]
    noisy = np.clip(a + rng.normal(0.0, 4.0, a.shape).round(), 0, 255).astype(np.uint8)
    sets = {"half A (the baseline)": a, "training frames": train.images[copied],
            "half A shifted 1 px": np.roll(a, 1, axis=2), "half A + noise of 4/255": noisy,
            "half A blurred 1 px": blurred(a, sigma=1.0),
            "per-game mean frame": mean_frames, "one real frame per game": one_frame}
    return {name: frechet_distance(predict(judge.model, nchw(images))[0], judge.feats_b)
            for name, images in sets.items()}


def blurred(images_nhwc: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of each channel, edges replicated; uint8 in and out."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    t = nchw(images_nhwc).float()
    c = t.shape[1]
    t = F.pad(t, (radius,) * 4, mode="replicate")
    t = F.conv2d(t, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(t, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_judge(model: GameClassifier, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state": model.state_dict(), "num_classes": model.head.out_features,
                "width": model.torso[0].out_channels}, tmp)
    tmp.replace(path)
    return path


def load_judge(path: Path) -> GameClassifier:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = GameClassifier(saved["num_classes"], saved["width"])
    model.load_state_dict(saved["state"])
    return model.eval()


def image_grid(images_nchw: np.ndarray, columns: int | None = None, pad: int = 2
               ) -> np.ndarray:
    """uint8 NCHW images tiled into one HWC picture with `pad`-pixel gray gutters."""
    n, _, h, w = images_nchw.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 128, np.uint8)
    for i, img in enumerate(images_nchw):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = img.transpose(1, 2, 0)
    return grid


def write_png(picture_hwc: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture_hwc).save(path)
    return path


def judge_file(frames_path: Path, heldout_fraction: float, seed: int, updates: int,
               width: int) -> Path:
    """The classifier trained on `frames_path`'s training split, cached beside it."""
    from dqn.frames import load_frames, split_heldout

    key = f"{heldout_fraction:g}-{seed}-{updates}-{width}"
    path = frames_path.with_name(f"{frames_path.stem}.judge-{key}.pt")
    if not path.is_file():
        train, _ = split_heldout(load_frames(frames_path), heldout_fraction, seed)
        save_judge(train_classifier(train, updates, width, seed), path)
    return path
