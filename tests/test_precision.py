"""The one precision rule of the DQN learner (`agent.precision`) and the language models
(`train.precision`)."""

import dataclasses

import pytest
import torch

from dqn.config import Config, NetworkConfig, load_config
from dqn.errors import UserError
from dqn.learning import DQNLearner
from dqn.precision import training_dtype


def test_training_dtype_auto_takes_bfloat16_only_on_a_cpu_with_amx(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_dtype("float32", cpu) == torch.float32
    assert training_dtype("bfloat16", cpu) == torch.bfloat16
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert training_dtype("auto", cpu) == (torch.bfloat16 if amx else torch.float32)
        assert training_dtype("auto", cuda) == torch.float32


@pytest.mark.parametrize("precision, amx, bf16", [
    ("float32", True, False),
    ("bfloat16", False, True),
    ("auto", True, True),
    ("auto", False, False),
])
def test_the_dqn_learner_follows_agent_precision(monkeypatch, precision, amx, bf16):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    base = dataclasses.replace(Config(), network=NetworkConfig(torso="nips2013"))
    cfg = dataclasses.replace(base, agent=dataclasses.replace(base.agent, precision=precision))
    assert DQNLearner(cfg, (4, 84, 84), 6, torch.device("cpu")).bf16 is bf16


def test_dqn_and_lm_take_the_same_precision_names():
    from dqn import schema
    from dqn.lm_config import LMConfig

    assert load_config("laptop").agent.precision == "float32"  # DQN: opt-in
    assert schema.load_config("lstm", (), LMConfig).train.precision == "auto"
    for name in ("auto", "float32", "bfloat16"):
        assert load_config("laptop", [f"agent.precision={name}"]).agent.precision == name
        assert schema.load_config("lstm", [f"train.precision={name}"],
                                  LMConfig).train.precision == name
    with pytest.raises(UserError, match="agent.precision"):
        load_config("laptop", ["agent.precision=fp16"])
    with pytest.raises(UserError, match="agent.bf16"):  # the old name is one clear line
        load_config("laptop", ["agent.bf16=true"])
