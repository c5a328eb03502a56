"""The GAN job's configuration (presets in configs/gan/).

Sizes follow DCGAN (Radford et al. 2016): 100-d noise, Adam at 2e-4 with beta1 = 0.5,
widths doubling per layer from `width` at the image end. Image sizes are powers of two
from 16 (two up-sampling layers) to 128.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from dqn.schema import PRECISIONS, ConfigRoot, JobRunConfig, ScalingSection, opt
from dqn.errors import UserError
from learner.gan.data import FramePlan, check_games


# what learner.gan.augment.augment_images applies to every image the discriminator sees
AUGMENTATIONS = ("none", "translation", "translation,cutout", "color,translation")


@dataclass(frozen=True)
class GanDataConfig:
    games: tuple[str, ...] = opt(("pong", "breakout", "space_invaders", "seaquest"),
                                 "ALE games rendered as the data; the label is the game")
    frames_per_game: int = opt(3000, "frames kept per game", lo=8)
    keep_every_env_steps: int = opt(6, "keep one frame every this many env steps (4 "
                                    "emulator frames each), so kept frames differ", lo=1)
    image_size: int = opt(64, "frames are resized to image_size x image_size RGB",
                          choices=(16, 32, 64, 128))
    resize: str = opt("area", "how screens shrink to image_size: area (averaging: small "
                      "objects blend into the background), nearest (one screen pixel "
                      "each: small objects keep their colour or vanish) or salient (the "
                      "pixel that stands out of each patch: no object lost; "
                      "learner/gan/data.py)", choices=("area", "nearest", "salient"))
    dqn_checkpoints: tuple[str, ...] = opt((), "DQN checkpoints whose games are played "
                                           "eps-greedily; other games play random actions")
    dqn_eps: float = opt(0.05, "epsilon of the DQN policies", lo=0.0, hi=1.0)
    image_folder: str | None = opt(None, "a folder of images (one sub-folder per class) "
                                   "used instead of ALE frames")
    heldout_fraction: float = opt(0.2, "fraction of each class held out to score the "
                                  "models", lo=0.05, hi=0.5)
    cache_dir: str = opt("runs/gan_data", "where the built .npz data sets are cached")


@dataclass(frozen=True)
class GanModelConfig:
    conditional: bool = opt(True, "condition both networks on the class label (Mirza & "
                            "Osindero 2014): an embedding beside the generator's noise, "
                            "a learned image-sized plane as one more discriminator "
                            "input; false trains a plain DCGAN")
    latent_size: int = opt(100, "noise dimensions fed to the generator", lo=1)
    g_width: int = opt(64, "generator channels at its last hidden layer; doubling "
                       "towards the noise", lo=1)
    d_width: int = opt(64, "discriminator channels at its first layer; doubling "
                       "towards the logit", lo=1)
    embed_size: int = opt(16, "size of the label embedding fed to the generator beside "
                          "the noise", lo=1)
    latent_codes: int = opt(0, "noise dimensions the discriminator must read back from "
                            "a generated image (InfoGAN's continuous codes, Chen et al. "
                            "2016), so that a game's samples differ with their noise; "
                            "0: off", lo=0)
    d_residual: float = opt(0.0, "give the discriminator three more input channels: "
                            "this many times the image minus its class's mean training "
                            "frame, where small moving objects (paddles, ball) stand out "
                            "from the fixed layout; 0: off", lo=0.0)
    g_mean_frame: bool = opt(False, "the generator draws on its game's mean training "
                             "frame: a learned image per label, started at that frame, "
                             "is added before the tanh, so the convolutions need only "
                             "draw what differs from it (the moving objects)")
    g_class_norm: bool = opt(False, "conditional only: each of the generator's batch "
                             "norms gains a scale and shift per label (conditional batch "
                             "norm, de Vries et al. 2017), so the label steers every "
                             "layer, not only the input")


@dataclass(frozen=True)
class GanTrainConfig:
    epochs: int = opt(20, "passes over the training frames", lo=1)
    budget_minutes: float | None = opt(None, "stop before train.epochs when the next "
                                       "epoch would end past this many minutes of the "
                                       "run (from its first command's start: frames, "
                                       "judge and Ray's start count; summed over "
                                       "resumes; the step-size decay follows the "
                                       "shortened plan); null: no clock limit", lo=0.0)
    batch_size: int = opt(64, "images per update over all workers (split evenly)", lo=1)
    lr_g: float = opt(2e-4, "generator Adam step size (DCGAN)", lo=0.0)
    lr_d: float = opt(2e-4, "discriminator Adam step size (DCGAN)", lo=0.0)
    lr_decay_start: float = opt(1.0, "share of the run's generator updates after which "
                                "both step sizes fall linearly to 0 at the last update "
                                "(pix2pix, CycleGAN: settles the game's late swings); "
                                "1: constant", lo=0.0, hi=1.0)
    beta1: float = opt(0.5, "Adam beta1 (DCGAN: 0.5 steadies the game)", lo=0.0, hi=1.0)
    augment: str = opt("none", "differentiable augmentation of every image D sees, real "
                       "or fake (DiffAugment): translation shifts by up to 1/8 of the "
                       "size; cutout also blanks a random half-size square; color first "
                       "moves brightness, saturation and contrast at random",
                       choices=AUGMENTATIONS)
    code_weight: float = opt(1.0, "weight of the code loss, the mean squared error of "
                             "the discriminator's reading of model.latent_codes, in both "
                             "networks' losses", lo=0.0)
    mode_seeking: float = opt(0.0, "weight of the mode-seeking term (MSGAN, Mao et al. "
                              "2019): the fakes come in pairs of one label and two noise "
                              "vectors, and the generator's loss gains this times "
                              "1 / (|G(z1) - G(z2)| / |z1 - z2|), so samples of a game "
                              "must differ as their noise does; 0: off", lo=0.0)
    ema_decay: float = opt(0.999, "samples, scores and `gan sample` use an exponential "
                           "moving average of the generator's weights with this decay per "
                           "update; 0 uses the live generator", lo=0.0, hi=0.99999)
    precision: str = opt("auto", "float32, or bfloat16: both networks' training passes "
                         "under bfloat16 autocast (weights, Adam, the losses and every "
                         "sample and score stay float32); auto: bfloat16 on a CPU with "
                         "AMX tiles or AVX-512 BF16, float32 elsewhere and on GPUs",
                         choices=PRECISIONS)
    log_every_updates: int = opt(20, "generator updates between metric rows", lo=1)
    grid_images: int = opt(64, "images in the per-epoch sample grid (fixed noise)", lo=1)


@dataclass(frozen=True)
class GanQualityConfig:
    classifier_updates: int = opt(300, "updates of the game classifier on real frames",
                                  lo=1)
    classifier_width: int = opt(16, "channels of the classifier's first conv", lo=1)
    samples: int = opt(1000, "generated images scored per evaluation, and frames in "
                       "each held-out half (capped by half the held-out frames)", lo=8)
    splits: int = opt(200, "random splits of the held-out frames into two halves: the "
                      "real-vs-real baseline and every CFD are means over them", lo=1)
    draws: int = opt(8, "independent draws of `samples` generated images the reported "
                     "CFD is the mean over", lo=1)
    selection_draws: int = opt(4, "more draws, from noise of their own, whose mean CFD "
                               "chooses the kept generator (quality.keep_best): one draw "
                               "of samples is too noisy to choose by", lo=1)
    keep_best: bool = opt(True, "keep the generator of the evaluated epoch whose "
                          "selection draws (quality.selection_draws) have the lowest CFD; `gan "
                          "sample` and `gan score` use it (--last: the last epoch's), and "
                          "its numbers are printed beside the last epoch's")
    keep_live: bool = opt(False, "with train.ema_decay and keep_best: the live weights "
                          "are candidates too, by selection draws of their own, so that a "
                          "run stopped while still improving (the average lags) keeps "
                          "its latest weights")
    every_epochs: int = opt(1, "epochs between quality evaluations (the last always "
                            "runs)", lo=1)
    early_every_epochs: int | None = opt(None, "epochs between quality evaluations "
                                         "before the step sizes start to fall "
                                         "(train.lr_decay_start), when the CFD still "
                                         "swings; empty: every_epochs", lo=1)
    report_every_epochs: int | None = opt(None, "epochs between the report draws "
                                          "(quality.draws: the CFD curve and the other "
                                          "numbers); evaluations between them draw only "
                                          "the selection draws of quality.keep_best, "
                                          "and the kept generator's numbers are drawn "
                                          "when the run ends (the last epoch always "
                                          "reports); 0: only the last epoch (the curve "
                                          "is then the selection draws'); empty: every "
                                          "evaluation", lo=0)


@dataclass(frozen=True)
class GanConfig(ConfigRoot):
    """DCGAN / conditional GAN on Atari frames, trained as a Ray Train job."""

    preset_folder: ClassVar[str] = "gan"
    data: GanDataConfig = field(default_factory=GanDataConfig)
    model: GanModelConfig = field(default_factory=GanModelConfig)
    train: GanTrainConfig = field(default_factory=GanTrainConfig)
    quality: GanQualityConfig = field(default_factory=GanQualityConfig)
    run: JobRunConfig = field(default_factory=lambda: JobRunConfig(name="gan"))
    ray: ScalingSection = field(default_factory=ScalingSection)

    def check(self) -> None:
        if self.data.image_folder is None:
            if not self.data.games:
                raise UserError("config data.games is empty; name at least one ALE game")
            check_games(self.data.games)
        if self.model.latent_codes > self.model.latent_size:
            raise UserError(f"config model.latent_codes = {self.model.latent_codes} exceeds "
                            f"model.latent_size = {self.model.latent_size}")
        if self.train.batch_size % self.ray.num_workers:
            raise UserError(f"config train.batch_size = {self.train.batch_size} must be a "
                            f"multiple of ray.num_workers = {self.ray.num_workers}")
        if self.model.d_residual and "color" in self.train.augment:
            raise UserError(f"config model.d_residual = {self.model.d_residual} needs "
                            f"train.augment without colour (got {self.train.augment!r})")
        if self.model.g_class_norm and not self.model.conditional:
            raise UserError("config model.g_class_norm = true needs model.conditional = true")

    def frame_plan(self) -> FramePlan:
        d = self.data
        return FramePlan(d.games, d.frames_per_game, d.keep_every_env_steps, d.image_size,
                         self.run.seed, tuple(str(Path(p).resolve()) for p in
                                              d.dqn_checkpoints), d.dqn_eps, d.resize)


def last_evaluation_scale(q: GanQualityConfig) -> float:
    """How many times the longest evaluation so far the last epoch's may take. With
    report draws during the run the longest already held them; with report draws only
    at the end (quality.report_every_epochs 0) the evaluations drew only selection
    draws, and the last epoch adds the report draws of its own generator and of one kept
    earlier (its draws against theirs: the fixed costs make this an overestimate)."""
    if q.report_every_epochs != 0:
        return 1.0
    selection = (1 + q.keep_live) * q.selection_draws if q.keep_best else 0
    return (selection + (1 + q.keep_best) * q.draws) / max(selection, 1)


CLOSING = 10.0  # seconds from the last epoch's numbers to the command's end (4-7 measured)


def planned_epochs(t: GanTrainConfig, epoch: int, seconds: float, before: float = 0.0,
                   longest: float = 0.0) -> int:
    """The epochs the run will have trained when it stops, after `epoch` epochs in
    `seconds`, `before` seconds having gone before its first update: train.epochs, or
    fewer where train.budget_minutes runs out first (no epoch is started that would not
    end within the budget at the pace so far). The last epoch scores more than the
    average one (the report draws, those of the kept generator) and the command closes
    after it: the longest evaluation so far, `longest`, and `CLOSING` seconds more are
    kept back for that."""
    if t.budget_minutes is None or epoch == 0 or seconds <= 0:  # no pace known yet
        return t.epochs
    spare = t.budget_minutes * 60 - before - seconds - longest - CLOSING
    fit = epoch + int(spare // (seconds / epoch))
    return max(epoch, min(t.epochs, fit))
