"""Character language models: the cells' maths, truncated BPTT, learning, sampling,
the Ray Train job (two workers, checkpoint, resume) and one-line errors."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dqn.errors import UserError
from learner.cli import main
from learner.lm.cells import GRUCell, LSTMCell, RNNCell
from learner.lm.cli import sample_command
from learner.lm.config import ModelConfig, TrainConfig
from learner.lm.corpus import Streams, load_corpus, spread
from learner.lm.model import (TBPTT, CharLM, evaluate, hidden_for_budget, learning_rate,
                              parameter_count, sample)
from learner.lm.state import LMState
from tests.cpu_support import runs_in_bfloat16

C_SNIPPET = (b"#include <linux/types.h>\n#define MAX_LEN 64\n\nstruct buf {\n\tint len;\n"
             b"\tchar data[MAX_LEN];\n};\n\nstatic int buf_put(struct buf *b, char c)\n{\n"
             b"\tif (b->len >= MAX_LEN)\n\t\treturn -1;\n\tb->data[b->len++] = c;\n"
             b"\treturn 0;\n}\n")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads and lose much when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("ours,theirs", [(RNNCell, torch.nn.RNNCell),
                                         (LSTMCell, torch.nn.LSTMCell),
                                         (GRUCell, torch.nn.GRUCell)])
def test_explicit_cells_equal_torch_cells_with_copied_weights(ours, theirs):
    torch.manual_seed(0)
    reference = theirs(5, 7).double()
    cell = ours(5, 7).double()
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64)
    h = torch.randn(3, 7, dtype=torch.float64)
    if ours is LSTMCell:
        c = torch.randn(3, 7, dtype=torch.float64)
        for got, want in zip(cell(x, (h, c)), reference(x, (h, c))):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(cell(x, h), reference(x, h), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_explicit_network_equals_the_fused_network(cell):
    torch.manual_seed(1)
    cfg = ModelConfig(cell=cell, embed_dim=6, hidden_size=9, num_layers=2)
    fused = CharLM(cfg)
    explicit = CharLM(dataclasses.replace(cfg, implementation="explicit"))
    explicit.embed.load_state_dict(fused.embed.state_dict())
    explicit.head.load_state_dict(fused.head.state_dict())
    explicit.rnn.load_fused(fused.rnn)
    inputs = torch.randint(0, 256, (2, 11))
    (got, got_state), (want, want_state) = (m(inputs, m.initial_state(2))
                                            for m in (explicit, fused))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    for a, b in zip(as_tuple(got_state), as_tuple(want_state), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def as_tuple(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def test_streams_are_contiguous_and_start_over_at_the_end():
    data = np.arange(43, dtype=np.uint8)  # 2 streams of 21 bytes (42 + 1 target)
    streams = Streams(data, n=2, k=5)
    assert streams.chunks_per_pass == 4
    first, second = streams.next(), streams.next()
    np.testing.assert_array_equal(first.inputs, [[0, 1, 2, 3, 4], [21, 22, 23, 24, 25]])
    np.testing.assert_array_equal(first.targets, first.inputs + 1)
    np.testing.assert_array_equal(second.inputs[:, 0], first.inputs[:, -1] + 1)
    assert first.fresh and not second.fresh
    streams.next(), streams.next()
    assert streams.next().fresh  # fifth chunk: the pass starts over


def test_validation_bytes_are_all_scored_or_spread_over_the_whole_split():
    data = np.arange(100, dtype=np.uint8)
    assert spread(data, 100, 4) is data  # it fits: every byte is scored
    picked = spread(data, 40, 4)  # 4 windows of 10, one at the start of each quarter
    np.testing.assert_array_equal(picked, np.concatenate(
        [np.arange(0, 10), np.arange(25, 35), np.arange(50, 60), np.arange(75, 85)]))
    assert picked.max() > 50  # not a prefix: the end of the split is scored too


def test_hidden_state_is_carried_across_chunks():
    """With a zero learning rate, the losses of consecutive TBPTT chunks must equal
    those of one forward pass over the whole stream; a reset state would not."""
    torch.manual_seed(2)
    data = np.frombuffer(C_SNIPPET, dtype=np.uint8)
    model = CharLM(ModelConfig(cell="lstm", embed_dim=8, hidden_size=16, num_layers=2))
    streams = Streams(data, n=2, k=10)
    tbptt = TBPTT(model, streams, grad_clip_norm=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    losses = [tbptt.step(optimizer).loss_nats for _ in range(streams.chunks_per_pass)]
    chunks = streams.passes()
    whole = torch.from_numpy(np.concatenate([c.inputs for c in chunks], 1).astype(np.int64))
    targets = torch.from_numpy(np.concatenate([c.targets for c in chunks], 1).astype(np.int64))
    logits, _ = model(whole, model.initial_state(2))
    per_byte = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    expected = per_byte.reshape(2, -1, 10).mean(dim=(0, 2)).tolist()
    assert losses == pytest.approx(expected, abs=1e-5)
    reset = model(whole[:, 10:20], model.initial_state(2))[0]
    reset_loss = F.cross_entropy(reset.transpose(1, 2), targets[:, 10:20]).item()
    assert abs(reset_loss - losses[1]) > 1e-3  # the test can tell a reset from a carry


def test_state_reset_zeroes_some_streams_and_keeps_the_others():
    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell="lstm", embed_dim=8, hidden_size=16))
    data = np.frombuffer(C_SNIPPET * 4, dtype=np.uint8)
    tbptt = TBPTT(model, Streams(data, n=64, k=4), grad_clip_norm=1.0, state_reset=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    tbptt.step(optimizer)
    carried = tbptt.state
    assert all(bool((s.abs().amax(dim=2) > 0).all()) for s in carried)  # every stream live
    restarted = tbptt_state_after(tbptt, optimizer)  # the step's first thing is the reset
    zeroed = (restarted[0].abs().amax(dim=(0, 2)) == 0) & (restarted[1].abs().amax(dim=(0, 2)) == 0)
    assert 10 < int(zeroed.sum()) < 54  # about half of 64 streams restart
    np.testing.assert_array_equal(restarted[0][:, ~zeroed], carried[0][:, ~zeroed])


def tbptt_state_after(tbptt: TBPTT, optimizer) -> tuple:
    """The state one step starts from (the reset applied), caught at the model's call."""
    seen = []
    hook = tbptt.model.rnn.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    tbptt.step(optimizer)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("cell", [pytest.param(cell, marks=runs_in_bfloat16(cell))
                                  for cell in ("rnn", "lstm", "gru")])
def test_bfloat16_passes_track_float32_and_carry_a_float32_state(cell):
    """The same weights and chunks: bfloat16 autocast changes each chunk's loss by well
    under 1 %, and the state carried to the next chunk stays float32."""
    data = np.frombuffer(C_SNIPPET * 4, dtype=np.uint8)
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(5)
        model = CharLM(ModelConfig(cell=cell, embed_dim=16, hidden_size=64, num_layers=2))
        tbptt = TBPTT(model, Streams(data, n=4, k=16), grad_clip_norm=1.0, dtype=dtype)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        losses[dtype] = [tbptt.step(optimizer).loss_nats for _ in range(4)]
        assert all(s.dtype == torch.float32 for s in as_tuple(tbptt.state))
    assert losses[torch.bfloat16] == pytest.approx(losses[torch.float32], rel=1e-2)
    assert losses[torch.bfloat16] != losses[torch.float32]  # the passes did run in bf16


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_recurrence_runs_the_cell_in_float32_inside_bfloat16_autocast(cell):
    """Where torch cannot run the fused cell under bfloat16 autocast, TBPTT sets
    float32_recurrence: the recurrent layers then give exactly their float32 outputs
    inside the autocast region (whether or not this CPU could run them in bfloat16)."""
    torch.manual_seed(7)
    model = CharLM(ModelConfig(cell=cell, embed_dim=8, hidden_size=16, num_layers=2))
    inputs = torch.randint(0, 256, (2, 9))
    want, want_state = model.hidden(inputs, model.initial_state(2))
    model.float32_recurrence = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_state = model.hidden(inputs, model.initial_state(2))
        logits = model.head(got)
    assert got.dtype == torch.float32 and logits.dtype == torch.bfloat16  # the head in bf16
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    for a, b in zip(as_tuple(got_state), as_tuple(want_state), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(
    torch.bfloat16, marks=runs_in_bfloat16("lstm"))])
def test_tiny_model_overfits_a_tiny_corpus(dtype):
    torch.manual_seed(3)
    data = np.frombuffer(C_SNIPPET, dtype=np.uint8)
    model = CharLM(ModelConfig(cell="lstm", embed_dim=16, hidden_size=64, num_layers=1))
    streams = Streams(data, n=1, k=len(data) // 2)
    tbptt = TBPTT(model, streams, grad_clip_norm=1.0, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    # 500 steps: at Adam 2e-2 the loss still spikes now and then on the way down
    for _ in range(500):
        tbptt.step(optimizer)
    nats, _, count = evaluate(model, streams)
    assert nats / count < 0.05  # from ln 256 = 5.5 nats per byte to near zero


def test_sampling_is_reproducible_for_a_seed():
    torch.manual_seed(4)
    model = CharLM(ModelConfig(cell="gru", embed_dim=8, hidden_size=16, num_layers=1))
    first = sample(model, b"#include", 64, temperature=1.0, seed=7)
    assert len(first) == 64
    assert sample(model, b"#include", 64, temperature=1.0, seed=7) == first
    assert sample(model, b"#include", 64, temperature=1.0, seed=8) != first


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_parameter_count_and_budget_matching(cell):
    cfg = ModelConfig(cell=cell, embed_dim=64, hidden_size=256, num_layers=2)
    assert parameter_count(cfg) == sum(p.numel() for p in CharLM(cfg).parameters())
    budget = parameter_count(ModelConfig())  # the default 2x256 LSTM
    matched = dataclasses.replace(cfg, hidden_size=hidden_for_budget(cfg, budget))
    assert abs(parameter_count(matched) - budget) / budget < 0.02


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(learning_rate=1.0, warmup_updates=10, final_lr_fraction=0.1)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 0.0) == pytest.approx(1.0)
    assert learning_rate(cfg, 100, 0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(0.1)


def test_corpus_split_is_by_file_and_deterministic(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i:02d}.c").write_bytes(f"/* file {i} */\n".encode() * 3)
    a = load_corpus([str(tmp_path / "*.c")], val_fraction=0.1)
    b = load_corpus([str(tmp_path)], val_fraction=0.1)
    assert (a.train_files, a.val_files) == (18, 2)
    assert a.train.tobytes() == b.train.tobytes() and a.val.tobytes() == b.val.tobytes()
    held_out = {line for line in a.val.tobytes().split(b"\n") if line}
    assert not held_out & set(a.train.tobytes().split(b"\n"))


def test_the_default_corpus_is_source_code():
    corpus = load_corpus()
    assert len(corpus.train) > 100_000 and len(corpus.val) > 0
    assert b"#define" in corpus.train.tobytes() or b"def " in corpus.train.tobytes()


def test_sample_reads_a_checkpoint_that_names_a_setting_removed_since(tmp_path):
    """A checkpoint's model_config may hold keys ModelConfig has since lost (and lack
    new ones): sampling uses the rest, the same text as from the model itself."""
    cfg = ModelConfig(cell="lstm", embed_dim=8, hidden_size=16, num_layers=1)
    torch.manual_seed(6)
    model = CharLM(cfg)
    saved = {**dataclasses.asdict(cfg), "weight_drop": 0.0}
    del saved["implementation"]
    path = tmp_path / "state.pt"
    LMState(saved, {}, model.state_dict(), {}, {}, []).save(path)
    text = sample_command(path, "#if", temperature=0.8, length=40, seed=3)
    assert text == "#if" + sample(model, b"#if", 40, 0.8, seed=3).decode("utf-8", "replace")


TINY = ["model.embed_dim=8", "model.hidden_size=16", "train.streams_per_worker=4",
        "train.chunk_bytes=16", "train.eval_every_updates=20", "train.log_every_updates=10",
        "train.checkpoint_every_updates=30", "train.eval_max_bytes=4000", "train.eval_streams=2",
        "train.sample_bytes=40", "ray.num_workers=2", "ray.cpus_per_worker=0.5"]


@pytest.fixture
def one_ray(monkeypatch):
    """One local Ray for both runs of a test (the CLI joins it instead of starting its
    own): saves a Ray start and stop per run."""
    import ray

    monkeypatch.setenv("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_worker_run_checkpoints_resumes_and_samples(one_ray, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)  # a relative run.out_dir: the workers run elsewhere
    run_dir = tmp_path / "runs"
    corpus = tmp_path / "code"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"f{i}.c").write_bytes(C_SNIPPET.replace(b"64", str(i).encode()) * 4)
    args = ["lm", "train", "run.out_dir=runs", "run.name=tiny", "train.budget_minutes=null",
            f"corpus.paths=[{corpus}]", "corpus.val_fraction=0.2", "cache.size=64", *TINY]
    assert main(args + ["train.budget_bytes=6000"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["train_bytes"] == 6016  # 47 updates x 2 workers x 4 streams x 16 bytes
    assert math.isfinite(first["val_bpc"]) and first["val_bpc"] < 8.5
    assert math.isfinite(first["val_bpc_network"])  # scored with and without the cache
    assert first["val_bpc"] != first["val_bpc_network"]
    assert len(list((run_dir / "tiny").glob("checkpoint_*/state.pt"))) == 2  # num_to_keep
    assert main(args + ["train.budget_bytes=9000"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["updates"] == first["updates"] + (9088 - 6016) // 128
    rows = [json.loads(x) for x in (run_dir / "tiny" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["global/train_tokens"] for r in rows if "losses/train_bpc" in r]
    assert steps == sorted(steps) and steps[-1] == 9088  # one axis, continued on resume
    assert any("losses/val_bpc" in r for r in rows)
    assert (run_dir / "tiny" / "samples.txt").read_bytes().startswith(b"===== ")
    out = tmp_path / "sample.txt"
    assert main(["lm", "sample", str(run_dir / "tiny"), "--prime", "#def", "--length", "30",
                 "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"#def") and len(out.read_text()) >= 30
    assert main(["lm", "sample", str(run_dir / "tiny"), "--prime", "#def", "--length", "30",
                 "--cache", "--out", str(out)]) == 0  # the run's cache mixed in
    assert out.read_bytes().startswith(b"#def") and len(out.read_text()) >= 30
    assert main(args + ["train.budget_bytes=9000", "model.cell=gru"]) == 2  # a resumed run must keep its model
    assert "trained with another model (model.cell = 'lstm' there" in capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", [
    (["lm", "train", "model.cell=lstn"], "config model.cell = 'lstn' is not allowed"),
    (["lm", "train", "corpus.paths=[/nonexistent/*.c]"], "'/nonexistent/*.c' matches no file"),
    (["lm", "train", "corpus.paths=[{empty}]"], "holds no text: 1 file(s), 0 of them binary"),
    (["lm", "train", "train.budget_minutes=null"], "set at least one"),
    (["lm", "train", "model.forget_bias=1.0"], "unknown config key 'model.forget_bias'"),
    (["lm", "sample", "/nonexistent/run"], "checkpoint '/nonexistent/run' does not exist"),
    (["lm", "sample", "{empty}"], "is unreadable or corrupt"),
    (["lm", "compare", "--cells", "rnn,lstn"], "unknown cell lstn"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, fragment, tmp_path, capsys):
    empty = tmp_path / "empty.c"
    empty.write_bytes(b"")
    assert main([a.replace("{empty}", str(empty)) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert fragment in err


def test_binary_files_are_skipped_and_a_corpus_of_none_else_is_one_line(tmp_path):
    (tmp_path / "a.c").write_bytes(C_SNIPPET)
    (tmp_path / "b.c").write_bytes(C_SNIPPET * 2)
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    corpus = load_corpus([str(tmp_path)], val_fraction=0.5)
    assert corpus.binary_files == 1 and corpus.train_files + corpus.val_files == 2
    assert b"PNG" not in corpus.train.tobytes() + corpus.val.tobytes()
    only = tmp_path / "bin"
    only.mkdir()
    (only / "x.o").write_bytes(b"\x7fELF\0\0" * 10)
    with pytest.raises(UserError, match="holds no text: 1 file.s., 1 of them binary"):
        load_corpus([str(only)])

