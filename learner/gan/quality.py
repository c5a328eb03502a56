"""A quality number people can trust, without Inception weights (none can be downloaded).

A small CNN learns to tell the games apart on the real training frames. It gives:

- its accuracy on held-out real frames (is the judge itself any good?);
- conditional accuracy: the fraction of samples drawn for game g that it calls g;
- the classifier Fréchet distance (CFD): the Fréchet distance between Gaussians
  fitted to real and generated frames in its penultimate-layer features,
      CFD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).
  This is FID's formula in *this classifier's* feature space, not the Inception FID:
  compare it only with the real-vs-real baseline computed the same way, the CFD
  between two disjoint halves of the held-out real frames (the mean over many random
  splits: see Judge).

Both halves have the same size and so has the generated set, drawn for the same games:
the Fréchet distance of a finite sample is biased upward by fewer samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learner.gan.data import FrameSet
from learner.gan.model import to_unit

GAME_SPLITS = 25  # splits each game's own distance averages over (the whole set's: all)
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
    cfd: float                   # generated vs held-out real half B (mean over splits)
    cfd_real_baseline: float     # held-out real half A vs half B (mean over splits)
    # class name (or "all" when unconditional) -> (real, generated) pixel spread
    spread: dict[str, tuple[float, float]] | None = None
    # the judge's features of each draw (rows in the order of `Judge.labels`), kept for
    # `Judge.game_copied`; not a metric
    feats: list[np.ndarray] | None = None
    # class name -> (its samples' CFD to its own held-out frames, its real-vs-real CFD)
    games: dict[str, tuple[float, float]] | None = None

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
        for name, (cfd, baseline) in (self.games or {}).items():
            out[f"games/cfd/{name}"] = cfd
            out[f"games/cfd_ratio/{name}"] = cfd / max(baseline, 1e-12)
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


class Gaussian(NamedTuple):
    mean: np.ndarray
    cov: np.ndarray
    root: np.ndarray   # the symmetric square root of cov


def fit_gaussian(feats: np.ndarray) -> Gaussian:
    cov = np.cov(feats, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    return Gaussian(feats.mean(0), cov, (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T)


def frechet(a: Gaussian, b: Gaussian) -> float:
    """Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a
    symmetric PSD matrix, so no general matrix square root is needed."""
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(a.root @ b.cov @ a.root), 0, None)).sum()
    return float(((a.mean - b.mean) ** 2).sum() + np.trace(a.cov) + np.trace(b.cov)
                 - 2 * cross)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of `a` and of `b`."""
    return frechet(fit_gaussian(a), fit_gaussian(b))


def balanced_halves(labels: np.ndarray, classes: int, per_class: int, splits: int,
                    seed: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """`splits` random splits of the indices of `labels` into two disjoint halves with
    the same number of entries of every class (`per_class`, as far as half a class
    allows). Returns the labels every half holds, in order, and the (A, B) pairs."""
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == label) for label in range(classes)]
    counts = [min(per_class, len(pool) // 2) for pool in pools]
    halves = []
    for _ in range(splits):
        shuffled = [rng.permutation(pool) for pool in pools]
        halves.append(tuple(np.concatenate([idx[start * k:(start + 1) * k]
                                            for idx, k in zip(shuffled, counts)])
                            for start in (0, 1)))
    return np.repeat(np.arange(len(pools)), counts), halves


class Judge:
    """The classifier, and `splits` random splits of the held-out real frames into two
    disjoint halves A and B with the same number of frames of every class (`samples` in
    all, as far as the held-out frames allow: with games this different, a few frames'
    imbalance would otherwise dominate the distance through the mean term).

    The baseline is the mean over the splits of the CFD from A to B, and a generator's
    CFD the mean over the splits of its samples' CFD to B, the samples drawn for the
    games a half holds and as many. One split is not enough: a few rare frames (space
    invaders' hold most of the features' spread) land in one half or the other, and the
    CFD of one split swings up to 15x from split to split (docs/gan.md)."""

    def __init__(self, model: GameClassifier, heldout: FrameSet, seed: int, samples: int,
                 splits: int = 200):
        self.model = model
        feats, predicted = predict(model, nchw(heldout.images))
        self.heldout_accuracy = float((predicted == heldout.labels).mean())
        classes = len(heldout.names)
        self.labels, self.halves = balanced_halves(
            np.asarray(heldout.labels), classes, max(1, samples // classes), splits, seed)
        self.images, self.heldout_labels, self.feats = heldout.images, heldout.labels, feats
        self._b = [fit_gaussian(feats[b]) for _, b in self.halves]
        real = np.array([frechet(fit_gaussian(feats[a]), gb)
                         for (a, _), gb in zip(self.halves, self._b)])
        self.baseline, self.baseline_splits = float(real.mean()), real
        self.names = heldout.names
        self._games(feats, classes)
        images_b = heldout.images[self.halves[0][1]]
        labels_b = heldout.labels[self.halves[0][1]]
        self.spread_real = {"all": pixel_spread(images_b)}
        self.spread_real.update({name: pixel_spread(images_b[labels_b == label])
                                 for label, name in enumerate(self.names)})

    def _games(self, feats: np.ndarray, classes: int) -> None:
        """Each game's own distance: its rows of half B on the first GAME_SPLITS splits,
        and its real-vs-real baseline (its rows of A against them): how well a game's
        own variety is drawn. It does not name the game that carries the overall
        distance; `game_copied` does (docs/gan.md)."""
        halves = self.halves[:GAME_SPLITS]
        self.game_rows = {label: rows for label in range(classes)
                          if len(rows := np.flatnonzero(self.labels == label)) > 1}
        self._game_b = {label: [fit_gaussian(feats[b][rows]) for _, b in halves]
                        for label, rows in self.game_rows.items()}
        self.game_baselines = {
            label: float(np.mean([frechet(fit_gaussian(feats[a][rows]), gb)
                                  for (a, _), gb in zip(halves, self._game_b[label])]))
            for label, rows in self.game_rows.items()}

    def game_distance(self, feats: list[np.ndarray], label: int) -> float:
        """The mean over draws and the game's splits of the CFD from the draws' rows of
        game `label` to its rows of half B."""
        rows = self.game_rows[label]
        return float(np.mean([frechet(gb, fit_gaussian(f[rows])) for f in feats
                              for gb in self._game_b[label]]))

    def distance(self, feats: np.ndarray) -> float:
        """The mean over the splits of the CFD from `feats` to half B."""
        g = fit_gaussian(feats)
        return float(np.mean([frechet(gb, g) for gb in self._b]))

    def score(self, draws: list[torch.Tensor], labels: np.ndarray | None) -> Quality:
        """`draws`: independent sets of uint8 NCHW samples, each one for every entry of
        `self.labels`, drawn for those games (`labels` None: an unconditional model chose
        its own games). The CFD is the mean over draws and splits: one draw of 1,000 is
        as uncertain as one split, a few odd samples weighing on it (docs/gan.md)."""
        scored = [predict(self.model, generated) for generated in draws]
        generated = torch.cat(draws)
        predicted = np.concatenate([p for _, p in scored])
        feats = [f for f, _ in scored]
        games = None
        if labels is None:   # the model chose its games: only the spread of the whole set
            cond = float("nan")
            spread = {"all": (self.spread_real["all"], pixel_spread(generated))}
        else:                # per game: samples drawn for it against its real frames
            labels = np.tile(labels, len(draws))
            cond = float((predicted == labels).mean())
            mine = [torch.from_numpy(labels == label) for label in range(len(self.names))]
            spread = {name: (self.spread_real[name], pixel_spread(generated[mine[label]]))
                      for label, name in enumerate(self.names)}
            games = {self.names[label]: (self.game_distance(feats, label), baseline)
                     for label, baseline in self.game_baselines.items()}
        cfd = float(np.mean([self.distance(f) for f in feats]))
        return Quality(self.heldout_accuracy, cond, cfd, self.baseline, spread, feats, games)

    def game_copied(self, feats: list[np.ndarray], game: int, copies: np.ndarray,
                    seed: int, subsets: int = 16) -> float:
        """The CFD of the draws' features `feats` (rows in the order of `self.labels`)
        with the rows of `game` swapped for features of that game's training frames
        (`copies`, `subsets` random subsets a draw, each without replacement; which
        frames are taken moves the CFD as much as which split does): the CFD the
        generator would score if it drew that game as well as a copy of its data does.
        The game whose swap lowers the CFD most is the one that carries the distance."""
        rng = np.random.default_rng(seed)
        mine = self.labels == game
        if int(mine.sum()) > len(copies):
            raise ValueError(f"{int(mine.sum())} rows of game {game} to swap, "
                             f"{len(copies)} copies")
        swapped = []
        for f in feats:
            for _ in range(subsets):
                f = f.copy()
                f[mine] = copies[rng.choice(len(copies), int(mine.sum()), replace=False)]
                swapped.append(self.distance(f))
        return float(np.mean(swapped))

    def selection_cfd(self, generated: torch.Tensor) -> float:
        """The CFD of a selection draw of samples (noise of its own): a run picks its
        best generator by the mean over a few, so that the one it reports is not the
        luckiest of many draws of the same noise."""
        return self.distance(predict(self.model, generated)[0])


def references(judge: Judge, train: FrameSet, seed: int) -> dict[str, float]:
    """The CFD to half B of frame sets made from real frames, each with B's games,
    averaged over the judge's splits: the scale to read a model's CFD on. Half A itself
    is the baseline; the training frames are what a model that copied its data would
    score; the others spoil half A a little (a 1-pixel shift, noise of 4 grey levels, a
    Gaussian blur of 1 pixel) or collapse it (every frame of a game its game's mean
    held-out frame, or one real frame repeated). Each spoilt pool is judged once and
    each split takes its half A's rows."""
    rng = np.random.default_rng(seed)
    pool, labels = judge.images, judge.heldout_labels
    noisy = np.clip(pool + rng.normal(0.0, 4.0, pool.shape).round(), 0, 255).astype(np.uint8)
    means = np.stack([pool[labels == label].mean(0).round().astype(np.uint8)
                      for label in range(len(judge.names))])
    feats = {name: predict(judge.model, nchw(images))[0] for name, images in (
        ("half A shifted 1 px", np.roll(pool, 1, axis=2)), ("half A + noise of 4/255", noisy),
        ("half A blurred 1 px", blurred(pool, 1.0)))}
    train_feats = predict(judge.model, nchw(train.images))[0]
    mean_feats = predict(judge.model, nchw(means))[0]
    games = [np.flatnonzero(judge.labels == label) for label in range(len(judge.names))]
    names = ["training frames", *feats, "per-game mean frame", "one real frame per game"]
    totals = dict.fromkeys(names, 0.0)
    for (half_a, _), gb in zip(judge.halves, judge._b):
        copied = np.concatenate([
            rng.choice(np.flatnonzero(train.labels == label), len(idx),
                       replace=len(idx) > (train.labels == label).sum())
            for label, idx in enumerate(games)])
        one = half_a.copy()
        for idx in games:
            if len(idx):
                one[idx] = half_a[idx[0]]
        sets = {"training frames": train_feats[copied],
                **{name: f[half_a] for name, f in feats.items()},
                "per-game mean frame": mean_feats[judge.labels],
                "one real frame per game": judge.feats[one]}
        for name, f in sets.items():
            totals[name] += frechet(gb, fit_gaussian(f)) / len(judge.halves)
    return {"half A (the baseline)": judge.baseline, **totals}


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
    from learner.gan.data import load_frames, split_heldout

    key = f"{heldout_fraction:g}-{seed}-{updates}-{width}"
    path = frames_path.with_name(f"{frames_path.stem}.judge-{key}.pt")
    if not path.is_file():
        train, _ = split_heldout(load_frames(frames_path), heldout_fraction, seed)
        save_judge(train_classifier(train, updates, width, seed), path)
    return path
