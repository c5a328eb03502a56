"""A two-node cluster simulated with ray.cluster_utils.Cluster."""

import time

import ray
from ray.cluster_utils import Cluster

from dqn.config import load_config
from learner.driver import DistributedTrainer


def test_collectors_spread_over_nodes_and_learner_goes_where_configured(run_dir):
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "resources": {"learner_node": 1}})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cfg = load_config("cartpole", [f"run.out_dir={run_dir}", "run.name=cluster",
                                       "ray.num_collectors=4", "ray.collector_cpus=0.5",
                                       "ray.learner_resource=learner_node",
                                       "replay.learning_starts_env_steps=200"])
        trainer = DistributedTrainer(cfg, progress=False)
        try:
            _, learner_node = ray.get(trainer.learner.where.remote())
            nodes = {ray.get(c.where.remote())[1] for c in trainer.collectors}
            deadline = time.time() + 60
            while trainer.updates == 0 and time.time() < deadline:
                trainer.step()
            assert trainer.updates > 0
        finally:
            trainer.close()
        assert learner_node == cluster.head_node.node_id
        assert nodes == {cluster.head_node.node_id, worker.node_id}
    finally:
        ray.shutdown()
        cluster.shutdown()
