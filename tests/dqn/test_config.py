"""Presets load; bad input is one clear line naming the key, the value and what is allowed."""

import re

import pytest

from dqn.config import load_config, preset_names
from dqn.errors import UserError


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_loads(preset):
    cfg = load_config(preset)
    assert cfg.run.total_env_steps > 0


def test_overrides_are_typed_and_applied():
    cfg = load_config("cartpole", ["replay.prioritized=true", "agent.learning_rate=1e-3",
                                   "network.mlp_hidden=[64, 32]", "run.stop_at_eval_return=null"])
    assert cfg.replay.prioritized is True
    assert cfg.agent.learning_rate == 1e-3
    assert cfg.network.mlp_hidden == (64, 32)
    assert cfg.run.stop_at_eval_return is None


def test_an_int_is_accepted_where_a_float_is_expected():
    assert load_config("cartpole", ["agent.gamma=1"]).agent.gamma == 1.0


@pytest.mark.parametrize("override,fragments", [
    (["replay.capcity_transitions=5"], ["unknown config key", "replay.capcity_transitions",
                                        "did you mean 'capacity_transitions'"]),
    (["replai.capacity_transitions=5"], ["unknown config section", "replai", "replay"]),
    (["replay.capacity_transitions=lots"], ["replay.capacity_transitions", "'lots'",
                                            "must be an integer"]),
    (["agent.batch_size=3.5"], ["agent.batch_size", "3.5", "must be an integer"]),
    (["agent.double_q=1"], ["agent.double_q", "must be true or false"]),
    (["agent.gamma=1.5"], ["agent.gamma = 1.5", "out of range", "[0.0, 1.0]"]),
    (["env.num_envs=0"], ["env.num_envs = 0", ">= 1"]),
    (["run.device=tpu"], ["run.device = 'tpu'", "auto, cpu, cuda"]),
    (["env.id=pongg"], ["env.id = 'pongg'", "not a game ale-py ships", "did you mean 'pong'"]),
    (["explore.eps_end=0.5", "explore.eps_start=0.1"], ["explore.eps_end", "eps_start"]),
    (["replay.capacity_transitions=100", "env.num_envs=64"], ["per env stream"]),
    (["ray.num_replay_shards=2"], ["ray.num_replay_shards = 2", "ray.num_collectors = 1"]),
    (["no_equals_sign"], ["section.key=value"]),
])
def test_bad_overrides_name_the_key_and_value(override, fragments):
    with pytest.raises(UserError) as err:
        load_config("laptop", override)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(UserError, match="preset 'nope' not found; available presets: .*laptop"):
        load_config("nope")


def test_invalid_yaml_preset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(bad))


def test_a_preset_includes_another_key_by_key(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("env:\n  id: pong\n  num_envs: 4\nrun:\n  name: base\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nenv:\n  num_envs: 2\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.env.id, cfg.env.num_envs, cfg.run.name) == ("pong", 2, "base")
    (tmp_path / "named.yaml").write_text("include: laptop\nrun:\n  name: mine\n")
    cfg = load_config(str(tmp_path / "named.yaml"))  # a name: the job's own preset
    assert cfg.network.torso == "nips2013" and cfg.run.name == "mine"


@pytest.mark.parametrize("text, fragment", [
    ("include: loop.yaml\n", "includes itself"),
    ("include: [laptop, pong]\n", "include must name one preset"),
    ("include: nowhere\n", "preset 'nowhere' not found"),
])
def test_a_bad_include_is_one_line(tmp_path, text, fragment):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(UserError, match=fragment):
        load_config(str(tmp_path / "loop.yaml"))


def test_presets_ship_inside_the_package():
    from importlib import resources

    shipped = resources.files("configs")
    assert shipped.joinpath("laptop.yaml").is_file()
    assert shipped.joinpath("lm", "lstm.yaml").is_file()
    assert "laptop" in preset_names() and "cartpole" in preset_names()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "/abs"])
def test_a_run_name_is_a_plain_folder_name(name):
    from dqn.schema import load_config as load_job_config
    from learner.lm.config import LMConfig

    with pytest.raises(UserError, match=f"run.name = '{re.escape(name)}' is not allowed"):
        load_config("cartpole", [f"run.name={name}"])
    with pytest.raises(UserError, match="run.name"):
        load_job_config("lstm", [f"run.name={name}"], LMConfig)
    assert load_config("cartpole", ["run.name=pong-seed_3.v2"]).run.name == "pong-seed_3.v2"
