"""`bench gan` on a tiny setting: both sides run and report, and the bare side's networks
are the job's with torch's own convolution classes, computing the same thing."""

import pytest
import torch

from dqn.schema import load_config
from learner.bench.gan import bench_gan, plain_layers
from learner.gan.config import GanConfig
from learner.gan.model import Discriminator, Generator

TINY = ["train.batch_size=8", "data.image_size=16", "model.g_width=4", "model.d_width=4",
        "model.latent_size=8", "model.latent_codes=2", "ray.cpus_per_worker=1"]


def test_bench_gan_reports_both_sides_and_their_ratio():
    report = bench_gan("conditional", TINY, seconds=1.0)
    for side in ("", "bare_"):
        rate, ms = report[f"{side}updates_per_s"], report[f"{side}ms_per_update"]
        assert rate > 0 and ms == pytest.approx(1000 / rate, rel=0.02)
        assert report[f"{side}cpu_ms_per_update"] > 0
    assert report["ratio"] == pytest.approx(report["updates_per_s"]
                                            / report["bare_updates_per_s"], rel=0.02)
    assert report["ratio"] > 0 and report["batch_size"] == 8 and report["image_size"] == 16
    assert report["precision"] in ("float32", "bfloat16")


def test_the_bare_networks_are_torch_layers_with_the_same_weights_and_outputs():
    cfg = load_config("conditional", ("model.g_width=32", "model.d_width=32"), GanConfig)
    torch.manual_seed(0)
    nets = Generator(cfg.model, 32, 4), Discriminator(cfg.model, 32, 4)
    for net in nets:
        plain = plain_layers(net)
        ours_kinds = {type(m).__module__ for m in net.modules()}
        assert "learner.gan.conv" in ours_kinds               # the job's layers are there
        assert "learner.gan.conv" not in {type(m).__module__ for m in plain.modules()}
        assert plain.state_dict().keys() == net.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                     net.state_dict().values()))
    g, d = (n.eval() for n in nets)
    z, labels = torch.randn(3, cfg.model.latent_size), torch.tensor([0, 1, 3])
    with torch.no_grad():
        images = g(z, labels)
        torch.testing.assert_close(plain_layers(g)(z, labels), images)
        torch.testing.assert_close(plain_layers(d)(images, labels), d(images, labels))
