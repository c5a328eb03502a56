"""The evaluate command on a checkpoint from a short real training run."""

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from dqn.config import load_config
from dqn.scores import reference_scores
from dqn.serial import train
from learner.cli import main


@pytest.fixture(scope="module")
def pong_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config("laptop", [f"run.out_dir={out}", "run.name=short", "env.num_envs=4",
                                 "run.total_env_steps=600", "replay.capacity_transitions=4000",
                                 "replay.learning_starts_env_steps=300",
                                 "run.eval_every_env_steps=100000"])
    return train(cfg, progress=False).checkpoint


def test_json_has_the_documented_keys_and_consistent_numbers(pong_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval.json"
    video, tsne = tmp_path / "episode.mp4", tmp_path / "tsne.png"
    assert main(["evaluate", str(pong_checkpoint.parent), "--episodes", "2", "--workers", "0",
                 "--json", str(out), "--video", str(video), "--tsne", str(tsne),
                 "--tsne-states", "60", "--dormant", "40"]) == 0
    table = capsys.readouterr().out
    assert "pong" in table and "median HNS" in table and "eps 0.001" in table
    r = json.loads(out.read_text())
    for key in ("game", "checkpoint", "protocol", "episodes", "returns", "mean", "median",
                "std", "min", "max", "human_normalized", "frames"):
        assert key in r
    assert r["game"] == "pong" and r["episodes"] == len(r["returns"]) == 2
    assert r["mean"] == pytest.approx(np.mean(r["returns"]))
    assert r["median"] == pytest.approx(np.median(r["returns"]))
    assert (r["min"], r["max"]) == (min(r["returns"]), max(r["returns"]))
    ref = reference_scores()["pong"]
    assert r["human_normalized"] == pytest.approx((r["mean"] - ref.random) /
                                                  (ref.human - ref.random))
    assert r["frames"] == 4 * sum(r["lengths"])
    assert all(-21 <= x <= 21 for x in r["returns"])
    assert r["protocol"]["sticky_action_prob"] == 0.25 and r["protocol"]["eps"] == 0.001
    # the video: one frame per decision plus the final one, in colour
    frames = iio.imread(video)
    assert frames.shape[0] == r["video"]["env_steps"] + 1
    assert frames.shape[1:] == (210, 160, 3)
    picture = iio.imread(tsne)
    assert picture.shape[:2] == (800, 800)
    # dormant units of the 2013 network, trained and at init, on 40 visited states
    d = r["dormant"]
    assert d["states"] == 40 and d["units"] == {"conv1": 16, "conv2": 32, "fc1": 256}
    for which in ("trained", "initial"):
        assert all(round(d[which][k] * n) == d[which][k] * n for k, n in d["units"].items())
        assert d[which]["all"] * 304 == pytest.approx(sum(d[which][k] * n
                                                          for k, n in d["units"].items()))
    assert "dormant units on 40 visited states" in table and "conv1 " in table


def test_episodes_spread_over_ray_workers(pong_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "learner.cli", "evaluate",
                           str(pong_checkpoint), "--episodes", "3", "--workers", "2",
                           "--protocol", "nature", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["episodes"] == 3 and r["protocol"]["eps"] == 0.05
    assert r["protocol"]["sticky_action_prob"] == 0.0


def test_several_checkpoints_make_one_table_with_median_and_mean_hns(pong_checkpoint,
                                                                    tmp_path, capsys):
    out = tmp_path / "all.json"
    assert main(["evaluate", str(pong_checkpoint), str(pong_checkpoint.parent), "--episodes",
                 "1", "--workers", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    body = json.loads(out.read_text())
    assert len(body["runs"]) == 2 and body["games_with_reference"] == 2
    hns = [r["human_normalized"] for r in body["runs"]]
    assert body["median_hns"] == pytest.approx(np.median(hns))
    assert body["mean_hns"] == pytest.approx(np.mean(hns))
    assert table.count("pong ") == 2 and "over 2 game(s)" in table


def test_same_seed_same_scores(pong_checkpoint):
    from learner.evaluate import evaluate_checkpoint

    runs = [evaluate_checkpoint(pong_checkpoint, episodes=2, workers=0, protocol="machado",
                                seed=3)["returns"] for _ in range(2)]
    assert runs[0] == runs[1]


def test_network_shape_mismatch_is_one_clear_line(pong_checkpoint, tmp_path):
    import torch

    state = torch.load(pong_checkpoint, weights_only=False)
    state["config"]["network"]["dueling"] = True       # weights of a plain head
    reshaped = tmp_path / "reshaped.pt"
    torch.save(state, reshaped)
    proc = subprocess.run([sys.executable, "-m", "learner.cli", "evaluate", str(reshaped),
                           "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "holds a network of another shape" in proc.stderr


@pytest.mark.parametrize("args,fragment", [
    (["missing/checkpoint.pt"], "does not exist"),
    (["{ckpt}", "--episodes", "0"], "--episodes 0 must be at least 1"),
    (["{ckpt}", "--game", "breakout"], "was trained on 'pong', not 'breakout'"),
    (["{corrupt}"], "unreadable or corrupt"),
    (["{ckpt}", "--video", "out.gif"], "must name a .mp4 file"),
    (["{ckpt}", "--dormant", "-1"], "--dormant -1 must be 0 (off) or a number of states"),
])
def test_bad_input_is_one_clear_line(pong_checkpoint, tmp_path, args, fragment):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    args = [a.format(ckpt=pong_checkpoint, corrupt=corrupt) for a in args]
    proc = subprocess.run([sys.executable, "-m", "learner.cli", "evaluate", *args,
                           "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert fragment in proc.stderr


@pytest.mark.parametrize("option, target, fragment", [
    ("--json", "{file}/out.json", "is a file, not a folder"),
    ("--video", "{file}/deeper/out.mp4", "is a file, not a folder"),
    ("--tsne", "{folder}.png", "is a folder; name a file in it"),
])
def test_every_output_path_is_checked_before_any_play(pong_checkpoint, tmp_path, capsys,
                                                      option, target, fragment):
    (tmp_path / "a_file").write_text("taken")
    (tmp_path / "a_folder.png").mkdir()
    path = target.format(file=tmp_path / "a_file", folder=tmp_path / "a_folder")
    assert main(["evaluate", str(pong_checkpoint), "--workers", "0", option, path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} ") and fragment in err and err.count("\n") == 1
    assert (tmp_path / "a_file").read_text() == "taken"      # nothing written is lost


def test_video_of_a_classic_control_env_is_one_line_without_pygame(tmp_path, capsys):
    import importlib.util

    from dqn.checkpoint import best_weights
    from dqn.networks import QNetwork

    cfg = load_config("cartpole")
    net = QNetwork((4,), 2, cfg.network)
    ckpt = best_weights(cfg.to_dict(), net.state_dict(), env_steps=0,
                        returns=[0.0]).save(tmp_path / "cartpole.pt")
    code = main(["evaluate", str(ckpt), "--workers", "0", "--episodes", "1",
                 "--video", str(tmp_path / "cartpole.mp4")])
    if importlib.util.find_spec("pygame") is None:
        assert code == 2
        assert "--video of CartPole-v1 needs pygame" in capsys.readouterr().err
    else:
        assert code == 0 and (tmp_path / "cartpole.mp4").stat().st_size > 0
