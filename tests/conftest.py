import os

import pytest

# Tests never talk to W&B; a real offline run is exercised where a test asks for it.
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "runs"
