"""Byzantine clients in the engine: attacks reach the wire, the server rejects what an honest client
could not have sent, and the robust rules hold where the mean breaks (methods on a tiny model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SMALL, read_rows, tiny_run_config
from test_methods_contract import Setup, bbc_task  # noqa: F401 (bbc_task is a fixture)

from zofo.core.config import RunConfig
from zofo.core.errors import ConfigError
from zofo.core.registry import METHODS
from zofo.engine.comm import transmit
from zofo.engine.loop import run
from zofo.methods.base import MethodDeclarationError, Payload
from zofo.robust.aggregators import combine
from zofo.robust.setting import selection_weights, validate_payload


def float_fields(name: str) -> bool:
    cls = METHODS.get(name)
    try:
        kinds = cls.payload_kinds(cls.Params())
    except MethodDeclarationError:
        return True  # kept, so that the test run for it fails naming what the class lacks
    return bool({"dense", "scalar"} & set(kinds.values()))


# FeedSign sends one bool: there is no number to make NaN, so the NaN attack does not apply to it (the
# config refuses it, tested below).
NAN_METHODS = [n for n in METHODS.names() if float_fields(n)]


@pytest.mark.parametrize("name", NAN_METHODS)
def test_nan_attackers_are_rejected_and_the_model_stays_finite(name: str, tmp_path: Path) -> None:
    rounds = 1 if METHODS.get(name).max_rounds == 1 else 2
    data = tiny_run_config(
        name,
        SMALL[name],
        federation={"rounds": rounds, "eval_every": 1},
        byzantine={"fraction": 0.34, "attack": "nan"},  # 1 of the 3 clients, in every round
    )
    out = run(RunConfig.from_dict(data), tmp_path / name, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    assert len(meta["robustness"]["byzantine_clients"]) == 1
    rows = read_rows(out)
    # Without validation the NaN would reach the weights and the eval loss (the run would end diverged).
    assert all(math.isfinite(r["eval_loss"]) for r in rows)
    assert [r["rejected"] for r in rows] == [0] + [1] * rounds
    assert rows[-1]["rejected_cum"] == rounds
    assert rows[-1]["attack"] == "nan" and rows[-1]["byz_frac"] == 0.34


def test_a_wrong_seed_is_rejected_for_zo_fedsgd(tmp_path: Path) -> None:
    data = tiny_run_config(
        "zo-fedsgd",
        {"lr": 1e-3},
        federation={"rounds": 2, "eval_every": 2},
        byzantine={"fraction": 0.34, "attack": "wrong-seed"},
    )
    rows = read_rows(run(RunConfig.from_dict(data), tmp_path / "z", progress=False))
    assert rows[-1]["rejected_cum"] == 2


def test_every_client_rejected_leaves_the_model_unchanged(bbc_task) -> None:  # noqa: F811
    s = Setup("fedavg", bbc_task, cohort=3)
    before = [p.detach().clone() for p in s.model.parameters()]
    bad: Payload = {
        "update": torch.full((5,), math.nan),
        "num_examples": torch.tensor([1], dtype=torch.uint32),
    }
    assert "shape" in validate_payload(transmit(bad)[0], s.method.payload_spec(1, 0))
    wrong_dtype = {"update": torch.zeros(3, dtype=torch.float64), "num_examples": bad["num_examples"]}
    assert "dtype" in validate_payload(wrong_dtype, s.method.payload_spec(1, 0))
    assert "fields" in validate_payload({"update": bad["update"]}, s.method.payload_spec(1, 0))
    assert all(torch.equal(p, b) for p, b in zip(s.model.parameters(), before, strict=True))


def honest_and_scaled(s: Setup, scale: float) -> list[Payload]:
    """Four honest FedAvg payloads and a fifth that is the first one scaled (model replacement)."""
    payloads = [transmit(s.method.client_update(1, s.client(k % 3, 1)))[0] for k in range(4)]
    attacker = dict(payloads[0])
    attacker["update"] = payloads[0]["update"] * scale
    return [*payloads, attacker]


@pytest.mark.parametrize("rule", ["mean", "median", "trimmed-mean", "krum", "multi-krum"])
def test_one_scaled_fedavg_attacker_breaks_the_mean_only(rule: str, bbc_task) -> None:  # noqa: F811
    s = Setup("fedavg", bbc_task, cohort=5, aggregator=rule)
    payloads = honest_and_scaled(s, scale=100.0)
    honest = torch.stack([p["update"] for p in payloads[:4]]).mean(0)
    w0 = torch.cat([p.detach().reshape(-1).clone() for p in s.method.trainable])
    s.method.aggregate(1, payloads)
    step = torch.cat([p.detach().reshape(-1) for p in s.method.trainable]) - w0
    err = float((step - honest).norm() / honest.norm())
    if rule == "mean":
        assert err > 10, "the mean should follow the attacker (about 20x the honest norm here)"
    else:
        assert err < 1.0, f"{rule}: {err:.2f} of the honest update's norm away from the honest mean"


@pytest.mark.parametrize("name", ["fedkseed", "ferret", "zo-fedsgd"])
def test_robust_scalar_rules_resist_a_huge_scalar(name: str, bbc_task) -> None:  # noqa: F811
    """One client's scalars replaced by 1e6: the mean moves the model by orders of magnitude more than
    the median does, for each way scalars are laid out (shared seeds, client seeds, blocks)."""
    moves = {}
    for rule in ("mean", "median"):
        s = Setup(name, bbc_task, cohort=5, aggregator=rule)
        w0 = [p.detach().clone() for p in s.model.parameters()]
        payloads = [transmit(s.method.client_update(1, s.client(k % 3, 1)))[0] for k in range(5)]
        kinds = s.cls.payload_kinds(s.method.params)
        for key, kind in kinds.items():
            if kind == "scalar":
                payloads[4][key] = torch.full_like(payloads[4][key], 1e6)
        s.method.aggregate(1, payloads)
        moves[rule] = max(
            float((p.detach() - b).abs().max()) for p, b in zip(s.model.parameters(), w0, strict=True)
        )
    assert moves["median"] * 100 < moves["mean"], moves
    assert math.isfinite(moves["median"]) and moves["median"] > 0


def test_selection_weights_reproduce_the_rules_on_scalars() -> None:
    values = torch.tensor([0.3, -2.0, 7.0, 0.1, 0.2])
    for rule, kw in [("mean", {}), ("median", {}), ("trimmed-mean", {"trim": 0.2})]:
        w = selection_weights(rule, values, trim=0.2)
        assert float(w.sum()) == pytest.approx(1.0)
        expected = combine(rule, "scalar", values.double(), **kw)
        assert float((w * values.double()).sum()) == pytest.approx(float(expected))
    # by hand: the median of 5 is 0.2 alone; trimming one from each end keeps 0.1, 0.2, 0.3
    assert selection_weights("median", values, 0.2).tolist() == [0, 0, 0, 0, 1.0]
    assert selection_weights("trimmed-mean", values, 0.2).tolist() == pytest.approx(
        [1 / 3, 0, 0, 1 / 3, 1 / 3]
    )


@pytest.mark.parametrize(
    ("method", "section", "value", "key"),
    [
        ("fedavg", "byzantine", {"fraction": 0.2, "attack": "reversed"}, "byzantine.attack"),  # a sign attack
        ("feedsign", "byzantine", {"fraction": 0.2, "attack": "nan"}, "byzantine.attack"),
        ("fedavg", "byzantine", {"fraction": 0.2}, "byzantine.attack"),  # Byzantine clients need an attack
        ("fedavg", "byzantine", {"fraction": 1.0, "attack": "scaled"}, "byzantine.fraction"),
        ("fedavg", "byzantine", {"fraction": 0.2, "attack": "scaledd"}, "byzantine.attack"),
        ("feedsign", "aggregator", {"name": "krum"}, "aggregator.name"),
        ("zo-fedsgd", "aggregator", {"name": "krum"}, "aggregator.name"),
        ("fedavg", "aggregator", {"name": "medain"}, "aggregator.name"),
        ("fedavg", "aggregator", {"trim": 0.5}, "aggregator.trim"),
    ],
)
def test_robust_settings_that_cannot_apply_are_refused(method, section, value, key) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(tiny_run_config(method, **{section: value}))
    assert err.value.key == key


def test_lora_exact_averaging_refuses_a_robust_rule() -> None:
    data = tiny_run_config("fedavg-lora", {"averaging": "exact"}, aggregator={"name": "median"})
    with pytest.raises(ConfigError, match="mean"):
        RunConfig.from_dict(data)


def test_honest_settings_keep_the_config_hash() -> None:
    """Runs written before the robustness settings existed keep their identity (and their checkpoints)."""
    plain = RunConfig.from_dict(tiny_run_config("fedavg"))
    explicit = RunConfig.from_dict(
        tiny_run_config("fedavg", byzantine={"fraction": 0.0, "attack": "none"}, aggregator={"name": "mean"})
    )
    attacked = RunConfig.from_dict(
        tiny_run_config("fedavg", byzantine={"fraction": 0.34, "attack": "scaled"})
    )
    assert plain.hash() == explicit.hash() != attacked.hash()


def test_ferret_rejects_block_starts_it_cannot_decode(bbc_task) -> None:  # noqa: F811
    s = Setup("ferret", bbc_task, cohort=3)
    payload = transmit(s.method.client_update(1, s.client(0, 1)))[0]
    assert s.method.check_payload(1, 0, payload) is None
    broken = dict(payload, block_starts=payload["block_starts"].clone())
    broken["block_starts"][0] = False  # the first direction belongs to no block
    assert "block_starts" in s.method.check_payload(1, 0, broken)
    extra = dict(payload, block_starts=payload["block_starts"].clone())
    extra["block_starts"][extra["block_starts"].logical_not().nonzero()[0]] = True  # one start too many
    assert "block_starts" in s.method.check_payload(1, 0, extra)
