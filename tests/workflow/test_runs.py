"""The smoke workflow's run folders (config/smoke.yaml, run once: conftest.smoke): one per run its
studies declare, each finished, with the config its study declares and rows of its own method and seed."""

from __future__ import annotations

import json
import math

from conftest import read_rows

from zofo.core.config import RunConfig

from .conftest import Smoke


def test_every_declared_run_and_no_other_has_a_folder(smoke: Smoke) -> None:
    runs = smoke.results / "runs"
    written = {str(meta.parent.relative_to(runs)) for meta in runs.glob("**/meta.json")}
    assert written == set(smoke.runs) | set(smoke.rule_runs)


def test_every_run_finished_ok(smoke: Smoke) -> None:
    status = {
        path: json.loads((smoke.run_folder(path) / "meta.json").read_text())["status"]
        for path in [*smoke.runs, *smoke.rule_runs]
    }
    assert set(status.values()) == {"ok"}, {p: s for p, s in status.items() if s != "ok"}


def test_each_run_records_the_config_its_study_declares(smoke: Smoke) -> None:
    # --configfile replaces the default study rather than merging into it: each run's resolved config
    # is the smoke file's alone (its defaults, its method block, its grid cell), nothing from config.yaml.
    for path, cfg in smoke.runs.items():
        recorded = json.loads((smoke.run_folder(path) / "meta.json").read_text())["config"]
        assert recorded == RunConfig.from_dict(cfg).to_dict(), path


def test_every_row_is_its_runs_method_and_seed_with_a_finite_metric(smoke: Smoke) -> None:
    for path, cfg in {**smoke.runs, **smoke.rule_runs}.items():
        rows = read_rows(smoke.run_folder(path))
        assert rows, path
        assert {(r["method"], r["seed"]) for r in rows} == {(cfg["method"]["name"], cfg["seed"])}, path
        assert all(math.isfinite(r["metric"]) for r in rows), path


def test_a_nan_attackers_payloads_are_rejected_every_round(smoke: Smoke) -> None:
    attacked = {
        path: cfg
        for path, cfg in smoke.runs.items()
        if cfg.get("byzantine", {}).get("attack") == "nan" and cfg["byzantine"].get("fraction")
    }
    assert attacked
    for path, cfg in attacked.items():
        byzantine = round(cfg["byzantine"]["fraction"] * cfg["partition"]["num_clients"])
        last = read_rows(smoke.run_folder(path))[-1]
        assert last["rejected_cum"] == cfg["federation"]["rounds"] * byzantine, path


def test_a_method_written_as_a_rule_joins_with_a_run_folder_of_its_own(smoke: Smoke) -> None:
    # local-only (workflow/rules/methods/local_only.smk): one model per client, nothing sent.
    assert smoke.rule_runs
    for path, cfg in smoke.rule_runs.items():
        meta = json.loads((smoke.run_folder(path) / "meta.json").read_text())
        assert meta["method"]["written_by"].startswith("workflow rule local_only"), path
        assert len(meta["per_client"]) == cfg["partition"]["num_clients"], path
        rows = read_rows(smoke.run_folder(path))
        assert all(r["bits_up_cum"] == 0 and r["bits_down_cum"] == 0 for r in rows), path


def test_every_run_sends_its_formulas_bits_per_client_and_round(smoke: Smoke) -> None:
    # Counted from the serialised payloads, against the formula each method declares in meta.json.
    for path, cfg in smoke.runs.items():
        meta = json.loads((smoke.run_folder(path) / "meta.json").read_text())
        last = read_rows(smoke.run_folder(path))[-1]
        sent = cfg["partition"]["num_clients"] * last["round"]  # every client in every round
        formula = meta["formula_bits"]
        assert (last["bits_up_cum"], last["bits_down_cum"]) == (
            formula["uplink"] * sent,
            formula["downlink"] * sent,
        ), path


def test_feedsign_sends_one_bit_each_way_and_zo_fedsgd_a_seed_and_a_scalar(smoke: Smoke) -> None:
    # Per client and round: FeedSign one sign up and the voted sign down; ZO-FedSGD a 32-bit seed and a
    # 32-bit scalar up, and every client's pair down.
    checked = set()
    for path, cfg in smoke.runs.items():
        method, clients = cfg["method"]["name"], cfg["partition"]["num_clients"]
        want = {"feedsign": (1, 1), "zo-fedsgd": (64, 64 * clients)}.get(method)
        if want is not None:
            last = read_rows(smoke.run_folder(path))[-1]
            sent = clients * last["round"]
            assert (last["bits_up_cum"] / sent, last["bits_down_cum"] / sent) == want, path
            checked.add(method)
    assert checked == {"feedsign", "zo-fedsgd"}
