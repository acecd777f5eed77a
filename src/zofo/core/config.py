"""Frozen run configuration, checked once when built, with errors that name the key.

A run is fully described by one ``RunConfig``. It is built from a plain mapping (a YAML file, or the
workflow's resolved parameters) by ``RunConfig.from_dict``; every unknown key, wrong type or value out
of range fails there, before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zofo.core.errors import ConfigError, did_you_mean


def build(cls: type, data: Mapping[str, Any] | None, path: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``; ``path`` names the section in errors."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            path or "config", data, f"a mapping with keys {[f.name for f in dataclasses.fields(cls)]}"
        )
    prefix = f"{path}." if path else ""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{prefix}{key}", data[key], f"keys {sorted(fields)}" + did_you_mean(key, fields)
            )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, None, "a value (this key is required)")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, key)
            except ConfigError as e:
                errors.append(e.allowed)
        raise ConfigError(key, value, " or ".join(errors))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(key, value, f"one of {list(allowed)}" + did_you_mean(value, map(str, allowed)))
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
        return value
    if tp is int:
        number = _integer(value)
        if number is None:
            raise ConfigError(key, value, "an integer")
        return number
    if tp is float:
        number = _number(value)
        if number is None:
            raise ConfigError(key, value, "a number")
        if not math.isfinite(number):
            raise ConfigError(key, value, FINITE)
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string")
        return value
    raise TypeError(f"config type {tp} of {key} is not supported")


FINITE = "a finite number (NaN and infinity mean no setting)"


def _number(value: Any) -> float | None:
    """``value`` as a float, or None where it is no number. A string is parsed as one: YAML 1.1 reads
    ``1e-3`` (no dot) as a string while ``1.0e-3`` is a float, and a key typed as a number must get the
    same value however the number is spelled."""
    if isinstance(value, bool):  # an int subclass, but true/false is no number
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value)
    except OverflowError:  # an integer beyond the float range: a number, and not a finite one
        return math.inf
    except ValueError:
        return None
    return None


def _integer(value: Any) -> int | None:
    """``value`` as an int where it is an integer however spelled (``8``, ``8.0``, ``"1e3"``), else None.
    Strings are read exactly (decimal, not binary floating point), so a large integer written with an
    exponent is never rounded to a neighbour."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        try:
            exact = decimal.Decimal(value.strip().replace("_", ""))
        except decimal.InvalidOperation:
            return None
        # Bounded: int() of "1e999999999" would build a billion digits; no key wants such a number.
        if not exact.is_finite() or exact.adjusted() > 1000 or exact != exact.to_integral_value():
            return None
        return int(exact)
    return None


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_ALLOWED = "auto, cpu, cuda, cuda:N (N a GPU index) or mps"


def check_device_name(name: object, key: str = "device") -> None:
    """Raise ConfigError unless ``name`` is a device the ``device`` key accepts (available here or not:
    the workflow plans runs for machines it is not on)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(key, name, DEVICE_ALLOWED)


def positive(key: str, value: float | int, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, float) and not math.isfinite(value):  # an int is always finite
        raise ConfigError(key, value, FINITE)
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, value, ">= 0" if allow_zero else "> 0")


@dataclass(frozen=True)
class ModelConfig:
    # A packaged asset name (`zofo list`), a local folder with a transformers model, or a hub id.
    name: str = "smollm2-135m"
    # For hub ids and local folders: how the model is used ("causal-lm" scores label words / generates,
    # "encoder" gets a classification head initialised from the embeddings of the label names).
    kind: Literal["auto", "causal-lm", "encoder"] = "auto"
    revision: str | None = None
    # Keep only the first `layers` transformer blocks of the pretrained model (embeddings, final norm
    # and head kept): a smaller member of the same family from the same pretrained weights, with no
    # retraining. null keeps them all.
    layers: int | None = None

    def __post_init__(self) -> None:
        if self.layers is not None and (isinstance(self.layers, bool) or self.layers < 1):
            raise ConfigError("model.layers", self.layers, "an integer >= 1, or null for every layer")


@dataclass(frozen=True)
class TaskConfig:
    # A registered task (`zofo list`), or "hub-classification" with `dataset` set to a hub id or folder.
    name: str = "bbc-news"
    # Tokens of the input text kept in the prompt; longer texts are truncated (cost grows with it).
    max_input_tokens: int = 32
    # Tokens generated when scoring generation tasks (greedy decoding).
    max_new_tokens: int = 32
    # Which split the run reports: "test" (never used for tuning) or "validation" (carved from train).
    eval_split: Literal["test", "validation"] = "test"
    # Evaluate on the first n examples of that split (a fixed subset: the same for every run); null = all.
    eval_max_examples: int | None = None
    eval_batch_size: int = 32
    # Only for hub-classification: dataset id or local folder, its columns and the label words.
    dataset: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    label_words: tuple[str, ...] = ()
    # Generation tasks: "rouge" (rouge 1.0.1, the FedKSeed/Ferret papers' scorer) or "rouge-score".
    rouge_scorer: Literal["rouge", "rouge-score"] = "rouge"

    def __post_init__(self) -> None:
        positive("task.max_input_tokens", self.max_input_tokens)
        positive("task.max_new_tokens", self.max_new_tokens)
        positive("task.eval_batch_size", self.eval_batch_size)
        if self.eval_max_examples is not None:
            positive("task.eval_max_examples", self.eval_max_examples)


@dataclass(frozen=True)
class PartitionConfig:
    # iid | dirichlet (over labels) | natural (one group of `key` values per client) | pathological
    # (each client holds exactly `classes_per_client` labels); `zofo list`.
    name: str = "dirichlet"
    num_clients: int = 5
    # Dirichlet concentration: small = skewed label mix per client, large = close to iid.
    alpha: float = 0.5
    # Every client gets at least this many training examples (the Dirichlet draw is repeated until so).
    min_size: int = 8
    # The column whose values define natural clients (e.g. "category").
    key: str = "category"
    # Pathological partition only: the number of distinct labels on every client (McMahan et al.
    # 2017 use 2); 1 is the most extreme label skew.
    classes_per_client: int = 2

    def __post_init__(self) -> None:
        positive("partition.num_clients", self.num_clients)
        positive("partition.alpha", self.alpha)
        positive("partition.min_size", self.min_size, allow_zero=True)
        positive("partition.classes_per_client", self.classes_per_client)


@dataclass(frozen=True)
class FederationConfig:
    # Communication rounds. For FeedSign and ZO-FedSGD one round is one aggregation step.
    rounds: int = 10
    # Clients sampled (without replacement) per round; null = all clients.
    clients_per_round: int | None = None
    # Examples per client batch.
    batch_size: int = 8
    # Evaluate the global model every this many rounds (round 0 and the last round always).
    eval_every: int = 5

    def __post_init__(self) -> None:
        positive("federation.rounds", self.rounds)
        positive("federation.batch_size", self.batch_size)
        positive("federation.eval_every", self.eval_every)
        if self.clients_per_round is not None:
            positive("federation.clients_per_round", self.clients_per_round)


@dataclass(frozen=True)
class ZOConfig:
    # Perturbation scale of the two-point estimate (MeZO: 1e-3; FedKSeed code: 5e-4).
    eps: float = 1e-3
    # lean: z regenerated from its seed at every use (memory at inference level);
    # fast: z kept in memory while a step uses it (one regeneration per seed and step; same numbers).
    mode: Literal["lean", "fast"] = "fast"
    # Fold the restore after an estimate into the next pass along the same z (the update, or the next
    # client sharing the seed): one pass fewer per step, which in lean mode is one regeneration fewer.
    # Equal to the separate passes up to float rounding; false gives the plain step's arithmetic bit
    # for bit.
    fuse: bool = True
    # Where every seeded direction (ZO's z, Ferret's projections) comes from: "philox" is zofo.core.philox,
    # bitwise the same on every device and CPU (what mixed hardware needs); "torch" is torch's CPU
    # mt19937 randn, as the official codes draw, whose fp32 values depend on the CPU's instruction set.
    generator: Literal["torch", "philox"] = "torch"
    # Clients that evaluate the same perturbed weights (FeedSign's, which share each step's seed) are
    # simulated with one batched forward per side instead of one forward per client. Each client's loss
    # equals its own forward's up to float rounding (not bit for bit: the matrix products see other
    # shapes), and nothing sent changes. Off by default, so that runs recorded before the key existed
    # keep their identity; the default study turns it on.
    batch_clients: bool = False
    # Memory (MiB) fast mode may spend on directions kept for a later pass in the same round: FedKSeed's
    # server reuses its clients' z instead of regenerating them. The numbers are the same at any value.
    cache_mb: int = 4096

    def __post_init__(self) -> None:
        positive("zo.eps", self.eps)
        if not isinstance(self.batch_clients, bool):
            raise ConfigError("zo.batch_clients", self.batch_clients, "true or false")
        if isinstance(self.cache_mb, bool) or not isinstance(self.cache_mb, int) or self.cache_mb < 0:
            raise ConfigError("zo.cache_mb", self.cache_mb, "a whole number of MiB, 0 or more")


@dataclass(frozen=True)
class ByzantineConfig:
    # Share of the clients that are Byzantine: exactly floor(fraction * num_clients + 1/2) of them
    # (round half up), drawn once per run from the run seed (zofo.robust.attacks.byzantine_clients).
    fraction: float = 0.0
    # What they do to their uplink payloads: `zofo list` shows the attacks and the payload kinds each
    # one targets (sign, scalar, dense, seed); "none" sends honest payloads.
    attack: str = "none"
    # Magnitude of the scaling attacks (scaled, scaled-negative, huge, gaussian, random).
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ConfigError("byzantine.fraction", self.fraction, "a number in [0, 1)")
        positive("byzantine.strength", self.strength)
        from zofo.robust.attacks import ATTACKS  # here: robust imports torch, config stays light

        names = ["none", *sorted(ATTACKS)]
        if self.attack not in names:  # checked before fraction 0 drops it: a typo is named either way
            raise ConfigError(
                "byzantine.attack", self.attack, f"one of {names}" + did_you_mean(self.attack, names)
            )
        if self.fraction == 0:
            # No attacker, so no attack: an attack named at fraction 0 changes nothing a run does, and
            # keeping it would make the honest run of a Byzantine study a second copy of the honest run
            # of every other study (different config, different folder, computed twice).
            object.__setattr__(self, "attack", "none")
            object.__setattr__(self, "strength", 1.0)


@dataclass(frozen=True)
class AggregatorConfig:
    # How the server combines the clients' numbers: mean (each method's own rule, the default) | median
    # | trimmed-mean | krum | multi-krum (dense updates only). FeedSign's sign vote is a majority by
    # definition and accepts mean or majority, both meaning the vote.
    name: str = "mean"
    # trimmed-mean: the share of values dropped at each end, per coordinate.
    trim: float = 0.2
    # krum / multi-krum: the number of Byzantine clients the rule is built to tolerate.
    f: int = 1
    # multi-krum: rows averaged; null = n - f.
    m: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.trim < 0.5:
            raise ConfigError("aggregator.trim", self.trim, "a number in [0, 0.5)")
        positive("aggregator.f", self.f, allow_zero=True)
        if self.m is not None:
            positive("aggregator.m", self.m)


@dataclass(frozen=True)
class MethodConfig:
    name: str = "fedavg"
    # Method hyperparameters, checked against the method's own Params dataclass.
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    zo: ZOConfig = field(default_factory=ZOConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    byzantine: ByzantineConfig = field(default_factory=ByzantineConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    # The one seed every random draw of the run derives from (zofo.core.seeds).
    seed: int = 0
    # Torch threads for this run; the workflow sets it to the job's cores. Part of the run's identity (its
    # hash): the thread count changes the float rounding of the CPU kernels.
    threads: int = 1
    # Where prepared assets (converted model weights) are cached. Not part of the run's identity.
    assets_dir: str = "resources"
    # Free-form label stored with the results (e.g. the study the run belongs to).
    label: str = ""
    # Save a checkpoint at every evaluation row and resume from it when the run folder has one
    # (a killed run continues where it was and ends with the same results as an uninterrupted one).
    # Not part of the run's identity: with or without checkpoints, a run computes the same numbers.
    checkpoint: bool = True
    # Where the run computes: auto (cuda if available, else mps, else cpu) | cpu | cuda | cuda:N | mps.
    # Not part of the run's identity (its hash): the same experiment on another device is the same run.
    device: str = "auto"
    # Precision of the model's weights; losses are computed in float32 either way. Reduced precision
    # changes the numbers, so a non-default dtype is part of the run's identity.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        positive("threads", self.threads)
        check_device_name(self.device)
        dtypes = typing.get_args(typing.get_type_hints(RunConfig)["dtype"])
        if self.dtype not in dtypes:
            raise ConfigError(
                "dtype", self.dtype, f"one of {list(dtypes)}" + did_you_mean(self.dtype, dtypes)
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("seed", self.seed, SEED_ALLOWED)
        # Checked here, not when the model and data are loaded: both follow from the config alone.
        n = self.partition.num_clients
        if self.federation.clients_per_round is not None and self.federation.clients_per_round > n:
            raise ConfigError(
                "federation.clients_per_round",
                self.federation.clients_per_round,
                f"at most partition.num_clients = {n}, or null for every client",
            )
        if self.byzantine.fraction > 0:
            from zofo.robust.attacks import byzantine_clients  # the engine's own count rule

            byzantine_clients(n, self.byzantine.fraction, self.seed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        cfg = build(cls, data, "")
        cfg = cfg.with_resolved_params()
        cfg.check_names()
        return cfg

    def with_resolved_params(self) -> RunConfig:
        """This config with every given ``method.params`` value as the method's Params reads it: a number
        is stored as the number it means however it was spelled (``1e-3``, ``1.0e-3``, ``0.001``), so
        spellings of one value give one config and one hash. Keys left out stay out (the hash of a run
        that relies on a default does not change when it is written out)."""
        params = self.method_params()
        resolved = {k: _plain(getattr(params, k)) for k in self.method.params}
        return dataclasses.replace(self, method=MethodConfig(self.method.name, resolved))

    def check_names(self) -> None:
        """Resolve every registered name now, so a typo fails before any weights or data load."""
        from zofo.assets.catalog import check_model_name
        from zofo.core.registry import METHODS, PARTITIONERS, TASKS

        self.method_params()
        method_cls = METHODS.get(self.method.name, "method.name")
        if method_cls.max_rounds is not None and self.federation.rounds > method_cls.max_rounds:
            raise ConfigError(
                "federation.rounds",
                self.federation.rounds,
                f"at most {method_cls.max_rounds} for {self.method.name}",
            )
        TASKS.get(self.task.name, "task.name")
        PARTITIONERS.get(self.partition.name, "partition.name")
        check_model_folder(self.model.name)
        check_model_name(self.model.name)
        from zofo.robust.setting import check_robust_setting

        check_robust_setting(method_cls, self.method_params(), self.byzantine, self.aggregator)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_config_file(path))

    def method_params(self) -> Any:
        from zofo.core.registry import METHODS

        method_cls = METHODS.get(self.method.name, "method.name")
        return build(method_cls.Params, self.method.params, "method.params")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def hash(self) -> str:
        """Hash of the resolved config: runs with equal hashes are the same experiment.

        The rule: the hash holds what changes a run's numbers, and nothing else, with one deliberate
        exception: the device (the same experiment on another device is the same run). Settings added
        after results existed (the robustness sections, model.layers, zo.generator, dtype) leave the
        hash alone while at their defaults, which reproduce the earlier behaviour exactly: an honest run
        of the full model keeps its identity. ``NOT_IDENTITY`` lists the keys left out, and why."""
        return config_hash(self.to_dict())


def _field_defaults(cls: type) -> dict[str, Any]:
    # Read from the fields, not from an instance: building one would run its checks, which import torch.
    return {f.name: f.default for f in dataclasses.fields(cls)}


HASH_WHEN_SET = {
    "byzantine": _field_defaults(ByzantineConfig),
    "aggregator": _field_defaults(AggregatorConfig),
    "model.layers": None,
    "zo.generator": "torch",
    "zo.batch_clients": False,
    "dtype": "float32",
}
# Keys left out of a run's identity:
# - device: where a run computes. By design the same experiment on another device is the same run,
#   although float rounding may differ there (a reduced dtype, which changes far more, does enter).
# - assets_dir: where converted weights are cached; the same weights load from any folder.
# - checkpoint: whether checkpoints are written; a resumed run ends bit-identical to an uninterrupted
#   one (tests/methods/test_resume.py), and a run without checkpoints computes the same rounds.
# `threads` stays in, by measurement: torch's CPU kernels divide matrix products and reductions by the
# thread count, which changes float rounding, and runs at 1 and 2 threads differ in the last bits of
# eval_loss and train_loss (tiny-llama with FeedSign and with FedAvg, tiny-bert and MiniLM-L6 cut to
# one block with FedAvg). The thread count is part of what a run computes, and a run resumed at
# another count would not end where the uninterrupted one does.
# - zo.cache_mb: how many directions fast mode keeps; a kept z is bitwise the regenerated one.
NOT_IDENTITY = ("device", "assets_dir", "checkpoint", "zo.cache_mb")
# The seeds every consumer of the run seed accepts: torch.manual_seed takes [-2**63, 2**64), numpy's
# SeedSequence and philox keys (zofo.core.philox.key_of) take no negative seed, and the tables read the
# seed column as int64, where a seed of 2**63 or more would turn the column unsigned or float.
MAX_SEED = 2**63 - 1
SEED_ALLOWED = f"an integer in [0, {MAX_SEED}] (0 to 2**63 - 1)"
# A hub id: owner/name, one slash. A model name of any other shape with a slash can only be a path.
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_model_folder(name: str, key: str = "model.name") -> None:
    """Raise ConfigError where ``name`` names a local folder that holds no model (an empty folder, a
    file, or a path that exists nowhere and cannot be a hub id); packaged names and hub ids pass."""
    from zofo.assets.catalog import PACKAGED

    if name in PACKAGED:
        return
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                key, name, "a local model folder with config.json and weights; this folder has no config.json"
            )
        return
    if path.exists():
        raise ConfigError(
            key, name, "a local model folder, a packaged asset or a hub id; this path is a file"
        )
    path_only = (
        name.startswith((".", "/", "~")) or "\\" in name or ("/" in name and not _HUB_ID.fullmatch(name))
    )
    if path_only:
        raise ConfigError(
            key,
            name,
            "an existing local model folder (nothing is at this path), or a hub id of the form owner/name",
        )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds. Refused: a missing file, invalid YAML, a key given twice in
    one mapping (YAML loaders keep the later value silently), and a file with no mapping at all (an
    empty file would otherwise run every default, model download included; ``{}`` asks for that)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file", str(path), "an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config file", str(path), f"a readable UTF-8 text file ({e})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError(
            "config file",
            str(path),
            "a YAML mapping of config keys; this file has none (write {} to run every default)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            "config file", str(path), f"a YAML mapping at the top level, not {type(data).__name__}"
        )
    return data


def parse_yaml(text: str, where: str, prefix: str = "") -> Any:
    """``text`` parsed as one YAML document (None where it holds none), refusing a key given twice in a
    mapping with the key's dotted path (under ``prefix``) and both lines. ``where`` names the source."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, prefix, where, set())
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError("config file" if not prefix else prefix, where, f"valid YAML ({e})") from None
    finally:
        loader.dispose()


def _source(node: yaml.Node) -> str:
    """A nested value as the file spells it (one line, shortened), for a message."""
    start, end = node.start_mark, node.end_mark
    if start.buffer is None:
        return "(a nested value)"
    text = " ".join(start.buffer[start.index : end.index].split())
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse_duplicate_keys(node: yaml.Node, path: str, where: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node already checked (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor" may repeat by design
                continue
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            dotted = f"{path}.{name}" if path else name
            line = key_node.start_mark.line + 1
            if (key_node.tag, name) in lines:
                shown = value_node.value if isinstance(value_node, yaml.ScalarNode) else _source(value_node)
                raise ConfigError(
                    dotted,
                    shown,
                    f"one value per key: {dotted} is given on line {lines[key_node.tag, name]} and again "
                    f"on line {line} of {where}",
                )
            lines[key_node.tag, name] = line
            _refuse_duplicate_keys(value_node, dotted, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}[{i}]", where, seen)


def flat_keys(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as ``{dotted key: value}``; an empty mapping stays a value of its own
    (``method.params: {}``), so two mappings that differ only there still differ."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flat_keys(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def config_hash(resolved: Mapping[str, Any]) -> str:
    """``RunConfig.hash`` of a resolved config mapping (``RunConfig.to_dict()``'s form, as meta.json
    records it), without building the config: a results checker recomputes a run's hash without
    importing torch or the method registry."""
    data = copy.deepcopy(dict(resolved))
    for dotted in NOT_IDENTITY:
        *head, leaf = dotted.split(".")
        node = data
        for part in head:
            node = node.get(part, {})
        node.pop(leaf, None)
    for dotted, default in HASH_WHEN_SET.items():
        *head, leaf = dotted.split(".")
        node = data
        for part in head:
            node = node.get(part, {})
        # A config recorded before the key existed lacks it: the same as the default it had then.
        if leaf in node and node[leaf] == default:
            del node[leaf]
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
