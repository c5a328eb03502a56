"""The one precision rule of the DQN learner (`agent.precision`), the GANs and the language
models (`train.precision`), and the probe that decides what torch can run in bfloat16.

Every test that needs a CPU without bfloat16 support forces the probe's answer, so the
fallback runs on every machine, AMX or not."""

import dataclasses

import numpy as np
import pytest
import torch

from dqn import precision
from learner.lm.model import TBPTT, CharLM, passes_dtype
from dqn.config import Config, NetworkConfig, load_config
from learner.lm.corpus import Streams
from dqn.errors import UserError
from dqn.learning import DQNLearner
from learner.lm.config import ModelConfig
from dqn.precision import LAYERS, float32_layers, layers_of, training_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
FAKE_ERROR = "could not create a primitive descriptor (forced by the test)"


@pytest.fixture
def cpu(monkeypatch):
    """Sets what the CPU has: native bfloat16 matrix units or not, and the layers torch
    cannot run under bfloat16 autocast (the probe's answer, forced)."""
    def set_cpu(native: bool, failing: tuple[str, ...] = ()):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(precision, "bfloat16_error",
                            lambda layer, device_type: FAKE_ERROR if layer in failing else None)
        monkeypatch.setattr(precision, "_said", set())
    return set_cpu


@pytest.mark.parametrize("setting, native, failing, fallback, dtype", [
    ("float32", True, (), (), torch.float32),
    ("float32", False, ("conv2d",), (), torch.float32),
    ("auto", True, (), (), torch.bfloat16),
    ("auto", False, (), (), torch.float32),              # no native units: not worth it
    ("auto", True, ("conv2d",), (), torch.float32),      # never a precision that fails
    ("auto", True, ("lstm",), ("lstm",), torch.float32),  # not even in part
    ("bfloat16", False, (), (), torch.bfloat16),          # asked for: runs where it can
    ("bfloat16", True, ("conv2d",), (), torch.float32),   # a layer of the network cannot
    ("bfloat16", False, ("lstm",), ("lstm",), torch.bfloat16),  # that layer in float32
])
def test_training_dtype(cpu, setting, native, failing, fallback, dtype):
    cpu(native, failing)
    layers = ("conv2d", "linear") if not fallback else ("linear",)
    assert training_dtype(setting, CPU, layers, fallback) == dtype


def test_auto_is_float32_on_a_gpu(cpu):
    cpu(native=True)
    assert training_dtype("auto", CUDA, ("conv2d", "linear")) == torch.float32


def test_a_network_that_cannot_run_in_bfloat16_says_so_once_and_runs_in_float32(cpu, capsys):
    cpu(native=False, failing=("conv2d",))
    for _ in range(3):
        assert training_dtype("bfloat16", CPU, ("conv2d", "linear")) == torch.float32
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"[precision] torch cannot run a convolution under bfloat16 autocast "
                     f"on this cpu ({FAKE_ERROR}): the passes run in float32"]


def test_float32_layers_are_the_failing_ones_of_bfloat16_passes(cpu, capsys):
    cpu(native=False, failing=("lstm",))
    assert float32_layers(torch.float32, CPU, ("lstm", "gru")) == ()
    assert float32_layers(torch.bfloat16, CPU, ("lstm", "gru")) == ("lstm",)
    assert "an LSTM" in capsys.readouterr().err


def test_the_probe_returns_the_first_sentence_of_the_error_and_probes_once(monkeypatch):
    calls = []

    class Broken(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape)
            raise RuntimeError("no primitive for this. Run with X=1\nsecond line")

    monkeypatch.setattr(precision, "probe", lambda layer: (Broken(), torch.ones(2)))
    precision.bfloat16_error.cache_clear()
    try:
        assert precision.bfloat16_error("lstm", "cpu") == "no primitive for this"
        assert precision.bfloat16_error("lstm", "cpu") == "no primitive for this"
        assert len(calls) == 1
    finally:
        precision.bfloat16_error.cache_clear()


@pytest.mark.parametrize("layer", LAYERS)
def test_the_probe_tells_the_truth_about_this_cpu(layer):
    """What the probe says of a layer is what a larger pass of that layer does here."""
    module, x = precision.probe(layer)
    module = {"conv2d": torch.nn.Conv2d(4, 16, 5), "linear": torch.nn.Linear(8, 32)}.get(
        layer, module)
    x = {"conv2d": torch.randn(3, 4, 20, 20), "linear": torch.randn(5, 8)}.get(layer, x)
    error = precision.bfloat16_error(layer, "cpu")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(x)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
        ran = True
    except RuntimeError:
        ran = False
    assert ran is (error is None), error


def test_layers_of_names_the_kinds_of_layer_in_a_network():
    base = Config()
    nature = DQNLearner(base, (4, 84, 84), 6, CPU).online
    assert layers_of(nature) == ("conv2d", "linear")
    lm = CharLM(ModelConfig(cell="gru", embed_dim=8, hidden_size=16, num_layers=1))
    assert layers_of(lm) == ("linear", "gru")
    explicit = CharLM(ModelConfig(cell="lstm", embed_dim=8, hidden_size=16, num_layers=1,
                                  implementation="explicit"))
    assert layers_of(explicit) == ("linear",)  # its cells are matrix products


@pytest.mark.parametrize("setting, native, failing, bf16", [
    ("float32", True, (), False),
    ("bfloat16", False, (), True),
    ("auto", True, (), True),
    ("auto", False, (), False),
    ("bfloat16", True, ("conv2d",), False),
])
def test_the_dqn_learner_follows_agent_precision(cpu, setting, native, failing, bf16):
    cpu(native, failing)
    base = dataclasses.replace(Config(), network=NetworkConfig(torso="nips2013"))
    cfg = dataclasses.replace(base, agent=dataclasses.replace(base.agent, precision=setting))
    assert DQNLearner(cfg, (4, 84, 84), 6, CPU).bf16 is bf16


def test_an_lstm_that_cannot_run_in_bfloat16_runs_in_float32_inside_bfloat16_passes(
        cpu, capsys):
    """The forced 'unsupported' answer: the LSTM gets float32 inputs and weights, the
    head still runs in bfloat16, and training goes on (the loss tracks float32's)."""
    cpu(native=True, failing=("lstm",))
    data = np.frombuffer(b"static int buf_put(struct buf *b, char c) { return 0; }\n" * 8,
                         dtype=np.uint8)
    losses = {}
    for setting in ("float32", "bfloat16"):
        torch.manual_seed(5)
        model = CharLM(ModelConfig(cell="lstm", embed_dim=16, hidden_size=32, num_layers=2))
        dtype = passes_dtype(model, setting)
        tbptt = TBPTT(model, Streams(data, n=4, k=16), grad_clip_norm=1.0, dtype=dtype)
        seen = {}
        model.rnn.register_forward_pre_hook(lambda m, args: seen.update(inputs=args[0]))
        model.head.register_forward_hook(lambda m, args, out: seen.update(logits=out))
        model.rnn.register_forward_hook(lambda m, args, out: seen.update(outputs=out[0]))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        losses[setting] = [tbptt.step(optimizer).loss_nats for _ in range(3)]
        assert seen["inputs"].dtype == torch.float32
        assert seen["outputs"].dtype == torch.float32
        assert seen["logits"].dtype == dtype
    assert dtype == torch.bfloat16 and model.float32_recurrence
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=1e-2)
    assert capsys.readouterr().err.count("torch cannot run an LSTM") == 1
    # auto does not choose a precision in which a part of the model cannot run
    assert passes_dtype(model, "auto") == torch.float32


def test_dqn_and_lm_take_the_same_precision_names():
    from dqn import schema
    from learner.lm.config import LMConfig

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
