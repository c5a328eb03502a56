"""The GPU path, where torch sees a CUDA device (skipped elsewhere, so on CI and laptops).

The learner on cuda computes the update the CPU computes; the distributed trainer puts
its learner actor on the GPU by itself, collectors still get CPU weights, and the
checkpoint it writes loads in a process that has no GPU.
"""

import pytest
import ray
import torch

from dqn.config import load_config
from dqn.learning import DQNLearner
from dqn.networks import QNetwork
from learner.bench.system import synthetic_batch
from learner.driver import DistributedTrainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

PONG_SHAPE, PONG_ACTIONS = (4, 84, 84), 6


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("preset", ["laptop", "pong"])   # 2013 and Nature networks
@pytest.mark.parametrize("precision,tol,weight_tol", [("float32", 1e-2, 3e-2),
                                                      ("bfloat16", 6e-2, 6e-2)])
def test_cuda_update_matches_the_cpu_update(preset, precision, tol, weight_tol):
    """Losses and priorities within `tol`; weights after three Adam steps at lr 1e-3 (a
    change of ~15 % of a bias's norm) within `weight_tol`: Adam divides tiny gradients
    by their own size, so cuda's tf32 convolutions move a few weights by ~1.5 %."""
    cfg = load_config(preset, [f"agent.precision={precision}", "agent.learning_rate=1e-3"])
    cpu = DQNLearner(cfg, PONG_SHAPE, PONG_ACTIONS, torch.device("cpu"))
    gpu = DQNLearner(cfg, PONG_SHAPE, PONG_ACTIONS, torch.device("cuda"))
    assert gpu.bf16 == (precision == "bfloat16")
    assert next(gpu.online.parameters()).is_cuda
    for seed in range(3):
        batch = synthetic_batch(32, PONG_SHAPE, PONG_ACTIONS, seed=seed)
        ours, ref = gpu.update(batch), cpu.update(batch)
        assert abs(ours.td_loss - ref.td_loss) <= tol * abs(ref.td_loss)
        assert _rel(torch.as_tensor(ours.td_abs), torch.as_tensor(ref.td_abs)) <= tol
    for (name, p_gpu), p_cpu in zip(gpu.online.state_dict().items(),
                                    cpu.online.state_dict().values()):
        assert _rel(p_gpu.cpu(), p_cpu) <= weight_tol, name
    assert gpu.updates == cpu.updates == 3


def test_trainer_puts_the_learner_on_the_gpu_and_checkpoints_load_on_a_cpu(run_dir):
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.cluster_resources().get("GPU", 0) >= 1
        cfg = load_config("laptop", [
            f"run.out_dir={run_dir}", "run.name=gpu", "env.num_envs=4",
            "replay.capacity_transitions=20000", "replay.learning_starts_env_steps=1000",
            "agent.update_every_env_steps=16", "ray.chunk_env_steps=16",
            "ray.publish_every_updates=10", "run.total_env_steps=2500"])
        trainer = DistributedTrainer(cfg, progress=False)
        result = trainer.run()
        assert trainer.last_report.device.startswith("cuda")
        # collectors (CPU actors, no GPU visible) loaded the published weights
        assert result.updates > 20 and min(trainer.collector_version) > 1
    finally:
        ray.shutdown()
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=False)
    assert all(t.device.type == "cpu" for t in state["learner"]["online"].values())
    net = QNetwork(PONG_SHAPE, PONG_ACTIONS, cfg.network)
    net.load_state_dict(state["learner"]["online"])
    q = net(torch.as_tensor(synthetic_batch(2, PONG_SHAPE, PONG_ACTIONS).obs))
    assert q.shape == (2, PONG_ACTIONS) and torch.isfinite(q).all()
