"""`raydqn lm ...`: train, sample and compare the character language models.

    raydqn lm train [--preset lstm] [--address ADDR] [section.key=value ...]
    raydqn lm sample RUN_DIR|STATE.pt [--prime "#include"] [--temperature 0.8]
                     [--length 500] [--seed 0] [--out FILE] [--cache]
    raydqn lm compare [--preset lstm] [--minutes 3] [--parameters N]
                      [--cells rnn,lstm,gru] [section.key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from dqn.errors import UserError

CELLS = ("rnn", "lstm", "gru")


def add_parser(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser("lm", help="character language models (RNN, LSTM, GRU) as Ray "
                        "Train jobs")
    cmds = lm.add_subparsers(dest="lm_command", required=True)
    train = cmds.add_parser("train", help="train one model; rerun the same run.name to resume")
    train.usage = "raydqn lm train [--preset NAME] [--address ADDR] [section.key=value ...]"
    train.add_argument("--preset", default="lstm", help="a configs/lm/ preset or a YAML path")
    train.add_argument("--address", help="Ray cluster to join, e.g. auto (sets ray.address)")
    smp = cmds.add_parser("sample", help="generate text from a checkpoint")
    smp.add_argument("checkpoint", metavar="RUN_DIR|STATE",
                     help="a run folder (its newest checkpoint) or a state.pt file")
    smp.add_argument("--prime", default="#include", help="text the sample continues")
    smp.add_argument("--temperature", type=float, default=0.8,
                     help="softmax temperature: lower is safer, higher more varied")
    smp.add_argument("--length", type=int, default=500, help="bytes to generate")
    smp.add_argument("--seed", type=int, default=0, help="same seed, same text")
    smp.add_argument("--out", help="also write the text (prime included) to this file")
    smp.add_argument("--cache", action="store_true",
                     help="mix in the run's cache (cache.*) as in scoring; it copies the "
                     "sample's own bytes back and falls into loops (docs/lm.md)")
    cmp = cmds.add_parser("compare", help="train rnn, lstm and gru under one parameter and "
                          "wall-clock budget; print one table")
    cmp.usage = ("raydqn lm compare [--preset NAME] [--minutes M] [--parameters N] "
                 "[--cells rnn,lstm,gru] [--address ADDR] [section.key=value ...]")
    cmp.add_argument("--preset", default="lstm", help="preset giving everything but the cell")
    cmp.add_argument("--minutes", type=float, default=3.0, help="training minutes per cell")
    cmp.add_argument("--parameters", type=int,
                     help="parameter budget per model (default: the preset's model's count)")
    cmp.add_argument("--cells", default=",".join(CELLS), help="comma-separated cells")
    cmp.add_argument("--address", help="Ray cluster to join, e.g. auto (sets ray.address)")


def run(args: argparse.Namespace) -> int:
    if args.lm_command == "sample":
        if args.overrides:
            raise UserError(f"lm sample takes no config overrides (got "
                            f"{' '.join(args.overrides)})")
        text = sample_command(Path(args.checkpoint), args.prime, args.temperature,
                              args.length, args.seed, cache=args.cache)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0
    overrides = args.overrides + ([f"ray.address={args.address}"] if args.address else [])
    if args.lm_command == "train":
        from dqn.schema import load_config
        from learner.lm.config import LMConfig
        from learner.lm.job import train_lm

        outcome = train_lm(load_config(args.preset, overrides, LMConfig))
        print(json.dumps({k: str(v) if isinstance(v, Path) else v
                          for k, v in dataclasses.asdict(outcome).items()}))
        return 0
    rows = compare_command(args.preset, overrides, args.minutes, args.parameters, args.cells)
    print(markdown_table(rows))
    return 0


def sample_command(path: Path, prime: str, temperature: float, length: int, seed: int,
                   cache: bool = False) -> str:
    """The prime followed by `length` sampled bytes, decoded leniently as UTF-8; from the
    network alone, or mixed with the run's cache (`cache.*`, when it had one)."""
    from learner.lm.model import CharLM, sample
    from learner.lm.config import CacheConfig, ModelConfig
    from dqn.process import torch_process
    from learner.lm.state import LMState
    from learner.train_job import latest_state

    if temperature <= 0:
        raise UserError(f"--temperature {temperature} must be positive")
    if length < 1:
        raise UserError(f"--length {length} must be at least 1")
    state = latest_state(path, LMState)
    torch_process(1)  # sampling is one byte at a time: threads only add overhead
    model = CharLM(_saved(ModelConfig, state.model_config))
    model.load_state_dict(state.model)
    memory = _saved(CacheConfig, state.cache_config) if cache else None
    text = sample(model, prime.encode(), length, temperature, seed, cache=memory)
    return (prime.encode() + text).decode("utf-8", errors="replace")


def _saved(section: type, values: dict):
    """A config section from a checkpoint's copy of it: a key it lacks takes its default;
    a key the section no longer has (a setting removed since, none of which bears on
    using trained weights) is left out."""
    names = {f.name for f in dataclasses.fields(section)}
    return section(**{k: v for k, v in values.items() if k in names})


def compare_command(preset: str, overrides: list[str], minutes: float,
                    parameters: int | None, cells: str) -> list[dict]:
    """Train each cell at the hidden size matching the parameter budget, for the same
    minutes; rows for the table, also written to <out_dir>/<run.name>-compare.{json,md}."""
    from learner.lm.model import hidden_for_budget, parameter_count
    from dqn.schema import load_config
    from learner.lm.config import LMConfig
    from learner.lm.job import prepare, train_lm

    chosen = [c.strip() for c in cells.split(",") if c.strip()]
    bad = [c for c in chosen if c not in CELLS]
    if bad or not chosen:
        raise UserError(f"--cells {cells!r}: unknown cell {', '.join(bad) or '(none)'}; "
                        f"choose from {', '.join(CELLS)}")
    if minutes <= 0:
        raise UserError(f"--minutes {minutes} must be positive")
    base = load_config(preset, overrides + [f"train.budget_minutes={minutes}"], LMConfig)
    budget = parameters or parameter_count(base.model)
    configs = []
    for cell in chosen:
        model = dataclasses.replace(base.model, cell=cell)
        model = dataclasses.replace(model, hidden_size=hidden_for_budget(model, budget))
        run = dataclasses.replace(base.run, name=f"{base.run.name}-{cell}")
        configs.append(dataclasses.replace(base, model=model, run=run))
    corpora = [prepare(cfg) for cfg in configs]  # every mistake shows before any training
    rows = []
    for cfg, corpus in zip(configs, corpora):
        outcome = train_lm(cfg, corpus)
        rows.append({"cell": cfg.model.cell, "hidden_size": cfg.model.hidden_size,
                     "layers": cfg.model.num_layers, "parameters": parameter_count(cfg.model),
                     "tokens_per_s": round(outcome.tokens_per_s),
                     "train_tokens": outcome.train_bytes, "minutes": round(outcome.minutes, 2),
                     "val_bpc": round(outcome.val_bpc, 4),
                     "val_bpc_network": round(outcome.val_bpc_network, 4)})
    out = Path(base.run.out_dir) / f"{base.run.name}-compare"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown_table(rows) + "\n")
    print(f"table written to {out}.json and {out}.md", file=sys.stderr)
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = ["cell", "layers x hidden", "parameters", "tokens/s", "tokens trained", "minutes",
            "validation bits/char", "network alone (no cache)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['layers']} x {r['hidden_size']} | "
                     f"{r['parameters']:,} | {r['tokens_per_s']:,} | {r['train_tokens']:,} | "
                     f"{r['minutes']} | {r['val_bpc']:.3f} | "
                     f"{r['val_bpc_network']:.3f} |")
    return "\n".join(lines)
