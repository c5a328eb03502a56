"""Checkpoint files: one typed record per trainer, its kind stored in the file and read
back without guessing; every other file is one clear line."""

import pytest
import torch

from dqn.checkpoint import (BestWeights, Checkpoint, DistributedCheckpoint, SerialCheckpoint,
                            best_return, best_weights)
from dqn.errors import UserError

CONFIG = {"env": {"id": "pong"}}
LEARNER = {"online": {"w": torch.ones(2)}, "updates": 7}


def _each_kind() -> list[Checkpoint]:
    return [SerialCheckpoint(CONFIG, LEARNER, 100, [{"env_steps": 50}], {"state": 1},
                             torch.zeros(3, dtype=torch.uint8)),
            DistributedCheckpoint(CONFIG, LEARNER, 100, episodes=4, collector_restarts=1),
            best_weights(CONFIG, LEARNER["online"], env_steps=100, returns=[1.0, 2.0])]


@pytest.mark.parametrize("checkpoint", _each_kind(), ids=lambda c: c.kind)
def test_each_kind_reads_back_as_itself_and_through_the_base(checkpoint, tmp_path):
    path = checkpoint.save(tmp_path / "c.pt")
    again = type(checkpoint).load(path)
    assert type(again) is type(checkpoint) and again.env_steps == 100
    assert again.game == "pong" and torch.equal(again.learner["online"]["w"], torch.ones(2))
    assert type(Checkpoint.load(path)) is type(checkpoint)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("written, read, line", [
    (0, DistributedCheckpoint, "was written by the single-process trainer (--serial), not "
                               "the distributed trainer; hint"),
    (1, SerialCheckpoint, "was written by the distributed trainer, not the single-process"),
    (2, DistributedCheckpoint, "was written by a run's best evaluation (best.pt"),
])
def test_a_checkpoint_of_another_kind_is_one_line(tmp_path, written, read, line):
    path = _each_kind()[written].save(tmp_path / "c.pt")
    with pytest.raises(UserError) as err:
        read.load(path, "; hint")
    assert line in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content, line", [
    (None, "does not exist"),
    (b"\x00garbage", "unreadable or corrupt"),
    ({"format": "raydqn-checkpoint-v1", "config": CONFIG}, "is not a raydqn-checkpoint-v2"),
    ({"format": "raydqn-checkpoint-v2", "kind": "video", "writer": "a video tool"},
     "was written by a video tool, not a DQN trainer"),      # a kind this reader lacks
    ({"format": "raydqn-checkpoint-v2", "kind": "distributed"}, "lacks 'config'"),
])
def test_what_is_no_checkpoint_of_ours_is_one_line(tmp_path, content, line):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UserError, match=line):
        Checkpoint.load(path)


def test_best_return_reads_the_best_weights_or_is_minus_infinity(tmp_path):
    assert best_return(tmp_path / "none.pt") == float("-inf")
    path = _each_kind()[2].save(tmp_path / "best.pt")
    assert best_return(path) == 1.5
    assert BestWeights.load(path).eval_episodes == 2
    _each_kind()[1].save(path)                      # not a best.pt: the next one replaces it
    assert best_return(path) == float("-inf")
