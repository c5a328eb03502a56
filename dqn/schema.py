"""The configuration machinery every job shares: fields with help and bounds (`opt`),
presets in YAML, `section.key=value` overrides, and validation into frozen dataclasses.

Each job's root class (`dqn.config.Config` for the DQN trainer, `GanConfig`, `LMConfig`)
has one dataclass field per section; nothing here knows their sections. Every mistake
is a `UserError` of one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from dqn.errors import UserError

PRESETS = resources.files("configs")  # the YAML presets, shipped inside the package
PRECISIONS = ("auto", "float32", "bfloat16")  # of training passes: dqn/precision.py


def opt(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
        choices: tuple | None = None, pattern: str | None = None) -> Any:
    """A config field with a help string and its allowed range, choices or (for strings)
    the pattern the whole value must match, described by its help."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "pattern": pattern}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigRoot:
    """What every job's root config class shares: one dataclass field per section,
    its presets in `configs/<preset_folder>/`, and `check()` for rules across fields."""

    preset_folder: ClassVar[str] = ""

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def check(self) -> None:
        """Raise a UserError for values that are wrong together."""


def run_name_opt(default: str) -> Any:
    """The `run.name` field every job's config has: a plain folder name under out_dir."""
    return opt(default, "run name: a plain name (letters, digits, '.', '_', '-'; not "
               "starting with '.') for its folder under out_dir; rerun the same name to "
               "resume", pattern=r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def address_opt() -> Any:
    """The `ray.address` field every job's config has."""
    return opt(None, "cluster to join ('auto' or host:port); null starts an embedded local "
               "Ray unless RAY_ADDRESS is set")


@dataclass(frozen=True)
class JobRunConfig:
    """The `run` section of the Ray Train jobs (GAN, language models)."""

    name: str = run_name_opt("job")
    out_dir: str = opt("runs", "folder holding one sub-folder per run")
    seed: int = opt(0, "seed for data order, initial weights and sampling", lo=0)


@dataclass(frozen=True)
class ScalingSection:
    """The `ray` section of the Ray Train jobs: where and on how many workers."""

    address: str | None = address_opt()
    num_workers: int = opt(1, "Ray Train workers (DDP processes)", lo=1)
    cpus_per_worker: float = opt(1.0, "CPUs reserved per worker (its torch threads)", lo=0.0)
    use_gpu: bool | None = opt(None, "one GPU per worker; null uses GPUs when the cluster "
                               "has them")
    max_failures: int = opt(2, "worker-group failures retried from the latest checkpoint",
                            lo=0)


S = TypeVar("S")


def preset_names(schema: type) -> list[str]:
    folder = PRESETS.joinpath(schema.preset_folder) if schema.preset_folder else PRESETS
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(".yaml"))


def load_config(preset: str, overrides: list[str] | tuple[str, ...], schema: type[S]) -> S:
    """Defaults, then the preset (a name in configs/ or a YAML path), then overrides.

    `schema` is the root dataclass (one field per section); its `preset_folder` names
    the sub-folder of configs/ holding its presets."""
    raw = _read_preset(preset, schema)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or "." not in key:
            raise UserError(f"override {item!r} is not of the form section.key=value "
                            f"(for example replay.capacity_transitions=100000)")
        section, name = key.split(".", 1)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise UserError(f"config section {section!r} must be a mapping")
        raw[section][name] = yaml.safe_load(text) if text else ""
    return build_config(raw, schema)


def build_config(raw: dict[str, Any], schema: type[S]) -> S:
    """A validated config of type `schema` from nested dicts of plain values."""
    known = typing.get_type_hints(schema)
    known.pop("preset_folder", None)
    sections = {}
    for section, values in raw.items():
        if section not in known:
            raise UserError(f"unknown config section {section!r}{suggest(section, known)};"
                            f" allowed: {', '.join(known)}")
        if not isinstance(values, dict):
            raise UserError(f"config section {section!r} must be a mapping, got {values!r}")
        sections[section] = _build_section(section, known[section], values)
    config = schema(**sections)
    config.check()
    return config


def _read_preset(preset: str, schema: type, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset's sections, over those of the preset its `include:` names (a preset
    of the same job or a YAML path), key by key."""
    path = _preset_file(preset, schema)
    if str(path) in seen:
        raise UserError(f"preset {preset!r} includes itself: "
                        f"{' -> '.join([*seen, str(path)])}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"preset {str(path)!r} is not valid YAML: "
                        f"{str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"preset {str(path)!r} must hold a mapping of sections")
    base = raw.pop("include", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise UserError(f"preset {str(path)!r}: include must name one preset, got {base!r}")
    if Path(base).suffix and not Path(base).is_absolute():  # beside the including file
        base = str(Path(str(path)).parent / base)
    merged = _read_preset(base, schema, (*seen, str(path)))
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def _preset_file(preset: str, schema: type):
    """A preset's name in its job's folder of PRESETS, or a path to a YAML file."""
    if Path(preset).suffix:
        path = Path(preset)
    else:
        folder = PRESETS.joinpath(schema.preset_folder) if schema.preset_folder else PRESETS
        path = folder.joinpath(f"{preset}.yaml")
    if not path.is_file():
        raise UserError(f"preset {preset!r} not found; available presets: "
                        f"{', '.join(preset_names(schema))} (or a path to a YAML file)")
    return path


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        if name not in fields:
            raise UserError(f"unknown config key {key!r}{suggest(name, fields)}; allowed: "
                            f"{', '.join(f'{section}.{n}' for n in fields)}")
        kwargs[name] = _check_value(key, value, hints[name], fields[name].metadata)
    return cls(**kwargs)


def _check_value(key: str, value: Any, hint: Any, meta: Any) -> Any:
    value = _coerce(key, value, hint)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise UserError(f"config {key} = {value!r} is out of range; allowed: {bounds}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise UserError(f"config {key} = {value!r} is not allowed; choose one of "
                        f"{', '.join(map(str, choices))}")
    pattern = meta.get("pattern")
    if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise UserError(f"config {key} = {value!r} is not allowed; {meta['help']}")
    return value


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the field's type; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {key} = {value!r} must be a list of "
                            f"{TYPE_NAMES.get(item, item.__name__)} values")
        return tuple(_coerce(key, v, item) for v in value)
    if hint is float and isinstance(value, str):
        value = _parse_float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    ok = (isinstance(value, bool) if hint is bool
          else isinstance(value, int) and not isinstance(value, bool) if hint is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float
          else isinstance(value, hint))
    if not ok:
        raise UserError(f"config {key} = {value!r} is a {type(value).__name__}; "
                        f"it must be {TYPE_NAMES.get(hint, hint.__name__)}")
    return float(value) if hint is float else value


TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _parse_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
