"""The GAN job: the networks as DCGAN describes them, the losses, a two-worker Ray Train
run that resumes, the sample command and one-line errors (the frames: test_data.py;
the quality numbers: test_quality.py)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dqn.schema import load_config, preset_names
from learner.gan.model import (Discriminator, GanParts, Generator, StepSettings, adam,
                               discriminator_loss, generator_loss, per_label, train_step)
from learner.gan.augment import _indexed, _Shift, augment_images
from learner.gan.average import AveragedGenerator
from learner.gan.config import GanConfig, GanModelConfig
from learner.cli import main
from learner.gan.state import GanState
from learner.lm.state import LMState

LOG2 = float(np.log(2.0))


@pytest.mark.parametrize("preset", preset_names(GanConfig))
def test_gan_presets_load(preset):
    cfg = load_config(preset, (), GanConfig)
    assert cfg.data.games and cfg.run.name.startswith("gan-")


def test_gan_presets_exist():
    assert {"conditional", "dcgan"} <= set(preset_names(GanConfig))


def layer_types(module):
    """The torch layer each of `module`'s layers is (learner.gan.conv's compute a convolution's
    gradients their own way, the layer is the same)."""
    return [next(c for c in type(m).__mro__ if c.__module__.startswith("torch.nn."))
            for m in module.net]


@pytest.mark.parametrize("size,conditional", [(16, False), (32, True), (64, True)])
def test_generator_is_transposed_convs_with_batchnorm_relu_and_tanh(size, conditional):
    cfg = GanModelConfig(conditional=conditional, latent_size=10, g_width=4, embed_size=3)
    g = Generator(cfg, size, num_classes=3)
    types = layer_types(g)
    hidden = int(np.log2(size)) - 2  # 4x4, then doubled up to `size`
    assert types == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU] * hidden + [
        nn.ConvTranspose2d, nn.Tanh]
    assert [m.stride for m in g.net if isinstance(m, nn.ConvTranspose2d)] == (
        [(1, 1)] + [(2, 2)] * hidden)
    labels = torch.tensor([0, 1, 2, 0, 1]) if conditional else None
    images = g(torch.randn(5, 10), labels)
    assert images.shape == (5, 3, size, size)
    assert images.abs().max() <= 1.0
    assert (g.embed is not None) == conditional


@pytest.mark.parametrize("size,conditional", [(16, False), (32, True), (64, True)])
def test_discriminator_is_strided_convs_with_leaky_relu_and_no_bn_first(size, conditional):
    cfg = GanModelConfig(conditional=conditional, d_width=4)
    d = Discriminator(cfg, size, num_classes=3)
    types = layer_types(d)
    hidden = int(np.log2(size)) - 2
    assert types == [nn.Conv2d, nn.LeakyReLU] + [nn.Conv2d, nn.BatchNorm2d,
                                                  nn.LeakyReLU] * (hidden - 1) + [nn.Conv2d]
    assert all(m.negative_slope == 0.2 for m in d.net if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.ReLU) for m in d.modules())
    labels = torch.tensor([0, 1, 2, 0]) if conditional else None
    assert d(torch.rand(4, 3, size, size) * 2 - 1, labels).shape == (4,)


def test_the_label_changes_what_the_conditional_generator_draws():
    g = Generator(GanModelConfig(latent_size=8, g_width=4), 16, num_classes=4).eval()
    z = torch.randn(1, 8).repeat(4, 1)
    images = g(z, torch.arange(4))
    assert not torch.allclose(images[0], images[1])


@pytest.mark.parametrize("real,fake,loss_d,loss_g", [
    # logits -> D = sigmoid(logit); hand-computed with D = 1/2 at logit 0
    (0.0, 0.0, 2 * LOG2, LOG2),
    (100.0, -100.0, 0.0, 100.0),   # D sure and right: G's loss is large
    (-100.0, 100.0, 200.0, 0.0),
])
def test_losses(real, fake, loss_d, loss_g):
    r, f = torch.tensor([real]), torch.tensor([fake])
    assert discriminator_loss(r, f).item() == pytest.approx(loss_d, abs=1e-4)
    assert generator_loss(f).item() == pytest.approx(loss_g, abs=1e-4)


def test_the_generator_loss_keeps_its_gradient_when_d_rejects_fakes():
    fake = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) ~ 3e-4
    generator_loss(fake).backward()
    # d/dl -log sigmoid(l) = sigmoid(l) - 1: near -1, where log(1 - D) has sigmoid(l) ~ 3e-4
    assert fake.grad.item() == pytest.approx(float(torch.sigmoid(torch.tensor(-8.0))) - 1)
    assert fake.grad.item() < -0.99


def test_one_training_step_changes_both_networks():
    torch.manual_seed(0)
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (g, d)]
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    stats = train_step(parts, torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(2, (8,)),
                       StepSettings(8))
    for module, old in zip((g, d), before):
        changed = [k for k, v in module.state_dict().items() if not torch.equal(v, old[k])]
        assert any(k.endswith("weight") for k in changed)
        assert "embed.weight" in changed
    assert 0 < stats.d_real < 1 and 0 < stats.d_fake < 1 and stats.loss_d > 0


def test_translation_shifts_each_image_whole_and_cutout_blanks_a_half_size_square():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32) + 1.0          # all pixels in [1, 2): zeros are fill
    moved = augment_images(x, "translation")
    assert moved.shape == x.shape
    shifts = []
    for src, out in zip(x, moved):
        # the image reappears whole, shifted by (dy, dx) with |dy|, |dx| <= 32 / 8
        hits = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                if torch.equal(out[:, max(dy, 0):32 + min(dy, 0), max(dx, 0):32 + min(dx, 0)],
                               src[:, max(-dy, 0):32 + min(-dy, 0),
                                   max(-dx, 0):32 + min(-dx, 0)])]
        assert len(hits) == 1
        dy, dx = hits[0]
        assert (out == 0).all(0).sum().item() == 32 * 32 - (32 - abs(dy)) * (32 - abs(dx))
        shifts.append(hits[0])
    assert len(set(shifts)) > 4                   # per image, not one shift for the batch
    cut = augment_images(x, "translation,cutout")
    blank = (cut == 0).all(1)                     # pixels zero in every channel
    assert all(b.sum().item() >= 16 * 16 for b in blank)
    assert augment_images(x, "none") is x
    with pytest.raises(ValueError, match="'flip'"):
        augment_images(x, "flip")


def test_augmentation_passes_the_gradient_to_the_generator():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    augment_images(x, "translation,cutout").sum().backward()
    # every pixel still in view and not cut out gets gradient 1, the rest 0
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0} and x.grad.sum() > 0


def test_the_cpu_shift_matches_the_indexed_crops_and_their_gradient():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 32, 32).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    dy, dx = torch.randint(0, 9, (8, 1, 1)), torch.randint(0, 9, (8, 1, 1))
    shifted = _Shift.apply(x, (dy.view(-1) - 4).tolist(), (dx.view(-1) - 4).tolist())
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4)).permute(0, 2, 3, 1)
    indexed = _indexed(padded, dy, dx, 32, 32).permute(0, 3, 1, 2)
    assert torch.equal(shifted, indexed) and shifted.shape == (8, 6, 32, 32)
    assert shifted.is_contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 6, 32, 32)
    grads = [torch.autograd.grad((crops * weight).sum(), x)[0]
             for crops in (shifted, indexed)]
    assert torch.equal(*grads) and grads[0].abs().sum() > 0


def test_per_label_picks_each_labels_row_and_sums_its_gradient():
    rows = torch.randn(3, 2, 4, 4, requires_grad=True)
    labels = torch.tensor([2, 0, 2, 2])
    picked = per_label(rows, labels)
    assert torch.equal(picked, rows.detach()[[2, 0, 2, 2]])
    picked.sum().backward()
    assert rows.grad[:, 0, 0, 0].tolist() == [1.0, 0.0, 3.0]
    assert torch.equal(per_label(rows, None), rows[:1])


def test_a_training_step_with_augmentation_changes_both_networks_and_not_the_batch():
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4)
    torch.manual_seed(0)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    real, labels = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(2, (8,))
    kept = real.clone()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in parts[:2]]
    stats = train_step(parts, real, labels, StepSettings(8, "translation,cutout"))
    for module, old in zip(parts[:2], before):
        assert any(not torch.equal(v, old[k]) for k, v in module.state_dict().items()
                   if k.endswith("weight"))
    assert torch.equal(real, kept) and not real.requires_grad and np.isfinite(stats.loss_d)


def test_latent_codes_are_read_back_from_the_fakes_and_the_code_loss_falls():
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4, latent_codes=2)
    torch.manual_seed(0)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    logits, read = d(torch.zeros(3, 3, 16, 16), torch.tensor([0, 1, 0]), codes=True)
    assert logits.shape == (3,) and read.shape == (3, 2)
    parts = GanParts(g, d, adam(g, 2e-3, 0.5), adam(d, 2e-3, 0.5))
    real, labels = torch.rand(16, 3, 16, 16) * 2 - 1, torch.randint(2, (16,))
    codes = [train_step(parts, real, labels, StepSettings(8, codes=2)).code
             for _ in range(80)]
    # D learns to read the codes and G to draw them: the error falls well below
    # the variance of the codes (1) that a blind guess of 0 scores
    assert np.mean(codes[:5]) > 0.5 and np.mean(codes[-10:]) < 0.5 * np.mean(codes[:5])
    assert train_step(parts, real, labels, StepSettings(8)).code == 0.0  # codes off
    with pytest.raises(ValueError, match="no code head"):
        Discriminator(GanModelConfig(d_width=4), 16, 2)(real, labels, codes=True)


def test_averaged_generator_follows_the_live_one_and_sets_its_own_batchnorm_stats():
    torch.manual_seed(0)
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4)
    g = Generator(cfg, 16, 2)
    ema = AveragedGenerator(g, decay=0.9)
    start = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    for _ in range(3):
        ema.update(g)
    # decays (1+t)/(10+t) for t = 1, 2, 3 (all below 0.9): start + (1 - prod) of the +1
    kept = (2 / 11) * (3 / 12) * (4 / 13)
    for p0, p in zip(start, ema.model.parameters()):
        torch.testing.assert_close(p, p0 + (1 - kept))
    assert all(not p.requires_grad for p in ema.model.parameters())
    drawer = ema.ready(batches=4, batch=16, seed=0)
    norm = next(m for m in drawer.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not drawer.training and norm.num_batches_tracked.item() == 4
    assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
    assert norm.momentum == 0.1


def one_line_error(capsys, args, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    for needle in needles:
        assert needle in err
    return err


def test_bad_inputs_give_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    one_line_error(capsys, ["gan", "data", "data.games=[pong,pongg]"], "'pongg'")
    one_line_error(capsys, ["gan", "train", f"data.image_folder={tmp_path / 'empty'}",
                            f"data.cache_dir={tmp_path}"], "holds no images")
    one_line_error(capsys, ["gan", "sample", str(tmp_path / "nowhere")], "does not exist")
    one_line_error(capsys, ["gan", "sample", str(tmp_path / "empty")], "no checkpoint")
    LMState({}, {}, {}, {}, {}, []).save(tmp_path / "lm.pt")
    one_line_error(capsys, ["gan", "sample", str(tmp_path / "lm.pt")],
                   "was written by the language-model job")
    plain = load_config("dcgan", ("model.g_width=4", "data.image_size=16"), GanConfig)
    GanState(plain.to_dict(), ("pong", "breakout"), {}, 1, 0,
             Generator(plain.model, 16, 2).state_dict(), {}, {}, {}, {}).save(
        tmp_path / "plain.pt")
    one_line_error(capsys, ["gan", "score", str(tmp_path / "plain.pt"), "--by-game"],
                   "--by-game needs a conditional model")
    one_line_error(capsys, ["gan", "train", "train.batch_size=5", "ray.num_workers=2"],
                   "train.batch_size = 5")
    one_line_error(capsys, ["gan", "train", "model.latent_codes=101"], "latent_codes = 101")
    # a run name holding another job, or a GAN of another shape, is refused before Ray;
    # a key the checkpoint lacks (an option added since) counts as its default
    saved = load_config("conditional", ("model.g_width=8",), GanConfig).to_dict()
    del saved["model"]["latent_codes"]
    lm = LMState({}, {}, {}, {}, {}, [])
    for name, state in [("lm", lm), ("old", _gan_state(saved))]:
        state.save(tmp_path / "runs" / name / "checkpoint_1" / "state.pt")
    train = ["gan", "train", f"run.out_dir={tmp_path / 'runs'}", "model.latent_codes=4"]
    one_line_error(capsys, [*train, "run.name=lm"], "was written by the language-model job "
                   "(raydqn lm train), not the GAN job (raydqn gan train); pick another")
    err = one_line_error(capsys, [*train, "run.name=old"], "model.g_width = 8 there, 32 now",
                         "model.latent_codes = 0 there, 4 now")
    assert err.count(" there, ") == 2


def _gan_state(config: dict) -> GanState:
    """A GAN checkpoint with `config` and nothing trained: what a resume checks."""
    return GanState(config, ("pong",), {}, 0, 0, {}, {}, {}, {}, {})


TINY = ["data.games=[pong,breakout]", "data.frames_per_game=40", "data.image_size=16",
        "data.keep_every_env_steps=2", "model.g_width=4", "model.d_width=4",
        "model.latent_size=8", "train.batch_size=8", "train.log_every_updates=2",
        "train.grid_images=8", "quality.classifier_updates=10", "quality.samples=16",
        "ray.num_workers=2", "ray.cpus_per_worker=0.5", "run.name=tiny",
        # the conditional preset's additions under DDP, with codes and cutout too
        "train.augment=translation,cutout", "model.latent_codes=2"]


@pytest.fixture(scope="module")
def ray_two_cpus():
    import ray

    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_worker_run_reports_checkpoints_resumes_and_samples(ray_two_cpus, tmp_path,
                                                                 capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative folders are the caller's, not the workers'
    # the live weights are candidates for the kept generator beside their average
    out = ["run.out_dir=runs", "data.cache_dir=data", "quality.keep_live=true"]
    # 2 games x 32 training frames, batch 8 -> 8 generator updates per epoch
    # a budget of 0 minutes: the first epoch shows the next would not fit, so it is last
    assert main(["gan", "train", *TINY, *out, "train.epochs=5", "train.budget_minutes=0"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["epoch"] == 1 and first["g_updates"] == 8
    assert first["quality/classifier_heldout_acc"] >= 0.5
    assert 0 <= first["quality/conditional_acc"] <= 1 and first["quality/cfd"] > 0
    assert first["spread/real/pong"] > 0 and first["spread/generated/breakout"] >= 0
    run = tmp_path / "runs" / "tiny"
    assert list(run.glob("checkpoint_*/state.pt")) and (run / "samples/epoch_001.png").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"losses/d", "losses/g", "D(x)", "D(G(z))", "losses/code"} <= set(rows[0])
    assert rows[0]["global/g_updates"] == 2

    assert main(["gan", "train", *TINY, *out, "train.epochs=2"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["epoch"] == 2 and second["g_updates"] == 16  # counters carried on
    assert not (run / "samples/epoch_003.png").exists()
    assert (run / "samples/epoch_002.png").is_file()

    grid = tmp_path / "grid.png"
    assert main(["gan", "sample", str(run), "--game", "breakout", "--n", "9",
                 "--out", str(grid)]) == 0
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(grid).size == (2 + 3 * 18, 2 + 3 * 18)  # 3x3 tiles of 16 + 2
    one_line_error(capsys, ["gan", "sample", str(run), "--game", "seaquest"],
                   "'seaquest'", "pong, breakout")
    chosen = [(r["quality/selection_cfd"], r["quality/selection_cfd_live"])
              for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if "quality/selection_cfd" in r]
    # the kept generator: the lowest selection CFD of either weights, carried across
    # the resume, its report numbers those of the weights it kept
    best = np.unravel_index(np.argmin(chosen), (len(chosen), 2))
    assert first["best/epoch"] == 1 and second["best/epoch"] == 1 + best[0]
    assert second["best/live"] == best[1] and second["best/selection_cfd"] == min(map(min, chosen))
    for flag, epoch, cfd in ((["--last"], 2, second["quality/cfd"]), ([], second[
            "best/epoch"], second["best/quality/cfd"])):  # the kept one by default
        assert main(["gan", "score", str(run), *flag]) == 0
        scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert scored["drawn_epoch"] == epoch and scored["quality/cfd"] == pytest.approx(cfd)
    assert main(["gan", "score", str(run), "--by-game"]) == 0
    by_game = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert by_game["quality/cfd"] == pytest.approx(second["best/quality/cfd"])
    assert {"by_game/pong", "by_game/breakout"} <= set(by_game)
    assert all(np.isfinite(by_game[f"by_game/{g}"]) for g in ("pong", "breakout"))


def test_the_step_settings_are_the_configs():
    step = StepSettings.of(load_config("conditional", (), GanConfig))
    assert step == StepSettings(latent_size=100, augment="translation", codes=8,
                                code_weight=1.0, mode_seeking=0.1)
    assert StepSettings.of(load_config("dcgan", (), GanConfig)) == StepSettings(
        100, "translation", 0, 1.0, 0.0)
