"""Marks for tests that need what torch can do on this CPU, decided by torch's own answer."""

import pytest

from dqn.precision import bfloat16_error


def runs_in_bfloat16(layer: str):
    """Skips a test of real bfloat16 passes through `layer` where torch cannot run it on
    this CPU (the probe's own answer; the fallback is tested on every CPU by forcing it)."""
    error = bfloat16_error(layer, "cpu")
    return pytest.mark.skipif(error is not None, reason=f"torch cannot run {layer} under "
                              f"bfloat16 autocast on this CPU: {error}")
