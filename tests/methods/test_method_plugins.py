"""A method is one file: written into a package outside zofo, named by the plugin seam of
``zofo.core.registry`` (``ZOFO_METHOD_PACKAGES``, or an entry point of the group ``zofo.methods``), it
is run and checked by the contract, bits, determinism, resume and robustness suites with no other edit;
one that lacks a declaration gets a clear error naming it; and the engine runs one that computes no
training loss. Each check runs in a fresh process, where the registry discovers its plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from conftest import ROOT, tiny_run_config

# FedSGD (McMahan et al. 2017) as a plugin would write it: the public method API only.
FEDSGD = '''
"""FedSGD: every client sends the gradient of one batch; the server steps along their mean."""

from dataclasses import dataclass

import torch

from zofo.core.config import positive
from zofo.core.registry import METHODS
from zofo.core.zo import trainable_parameters
from zofo.methods.base import FederatedMethod, Field


@dataclass(frozen=True)
class FedSGDParams:
    lr: float = 0.1

    def __post_init__(self):
        positive("method.params.lr", self.lr)


@METHODS.register("fedsgd-plugin")
class FedSGD(FederatedMethod):
    Params = FedSGDParams
    family = "fo"
    reference = "FedSGD, McMahan et al., AISTATS 2017"
    uplink = {"grad": Field("dense", ("d",), torch.float32)}
    test_params = {"lr": 1e-2}

    def setup(self):
        self.trainable = trainable_parameters(self.ctx.model)
        self.d = sum(p.numel() for p in self.trainable)

    def client_update(self, round_idx, client):
        self.ctx.model.train()
        grads = torch.autograd.grad(self.ctx.loss(next(client.batches)), self.trainable, allow_unused=True)
        self.ctx.model.eval()
        flat = [torch.zeros_like(p) if g is None else g for p, g in zip(self.trainable, grads)]
        return {"grad": torch.cat([g.reshape(-1) for g in flat]).float()}

    def aggregate(self, round_idx, payloads):
        grads = [pl["grad"] for pl in payloads]
        step = self.combine_clients(
            "dense", own=lambda: torch.stack(grads).mean(0), rows=lambda: torch.stack(grads)
        )
        with torch.no_grad():
            offset = 0
            for p in self.trainable:
                p.sub_(step[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=self.params.lr)
                offset += p.numel()
        return {"step": step}

    def formula_bits(self, d, n):
        return 32 * d, 32 * d
'''

# A method that never calls ctx.loss: each client names a seed, the server walks along z(seed).
RANDOM_WALK = """
from dataclasses import dataclass

import torch

from zofo.core.registry import METHODS
from zofo.core.seeds import seed32
from zofo.core.zo import SeededDirections, trainable_parameters
from zofo.methods.base import FederatedMethod, Field


@dataclass(frozen=True)
class WalkParams:
    step: float = 1e-3


@METHODS.register("random-walk")
class RandomWalk(FederatedMethod):
    Params = WalkParams
    family = "zo"
    reference = "a test method that computes no training loss"
    uplink = {"seed": Field("seed", (1,), torch.uint32)}
    test_params = {}

    @classmethod
    def aggregators(cls, params):
        return ("mean",)

    def setup(self):
        self.dirs = SeededDirections.from_config(trainable_parameters(self.ctx.model), self.ctx.zo)

    def client_update(self, round_idx, client):
        seed = seed32(self.ctx.seed, "walk", round_idx, client.client_id)
        return {"seed": torch.tensor([seed], dtype=torch.uint32)}

    def aggregate(self, round_idx, payloads):
        for pl in payloads:
            self.dirs.update(int(pl["seed"].item()), self.params.step)
        return {"seeds": torch.cat([pl["seed"] for pl in payloads])}

    def formula_bits(self, d, n):
        return 32, 32 * n
"""

# A method that forgets its uplink and its test settings.
INCOMPLETE = """
from dataclasses import dataclass

from zofo.core.registry import METHODS
from zofo.methods.base import FederatedMethod


@dataclass(frozen=True)
class HalfParams:
    lr: float = 1e-3


@METHODS.register("half-done")
class HalfDone(FederatedMethod):
    Params = HalfParams
    family = "fo"
    reference = "a test method that declares no uplink and no test_params"

    def setup(self):
        pass

    def client_update(self, round_idx, client):
        return {}

    def aggregate(self, round_idx, payloads):
        return {}

    def formula_bits(self, d, n):
        return 0, 0
"""

SUITES = ["test_methods_contract", "test_determinism", "test_resume", "test_robust_engine"]


def plugin_package(root: Path, name: str, modules: dict[str, str]) -> Path:
    """A package ``name`` under ``root`` holding one file per method."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for module, source in modules.items():
        (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def env_with(path: Path, **extra: str) -> dict[str, str]:
    pythonpath = [str(path), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, pythonpath)),
        **extra,
    }


def pytest_run(env: dict[str, str], select: str, report: Path) -> dict[str, dict[str, list[str]]]:
    """The four suites in a fresh pytest process, only the tests whose id contains ``select``: per
    module, the passed, failed and errored tests' names (and the messages of the failures)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        select,
        f"--junitxml={report}",
    ]
    cmd += [str(ROOT / "tests" / "methods" / f"{m}.py") for m in SUITES]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    out: dict[str, dict[str, list[str]]] = {m: {"passed": [], "failed": [], "error": []} for m in SUITES}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is None:
            out.setdefault(module, {"passed": [], "failed": [], "error": []})["passed"].append(
                case.get("name")
            )
        else:
            kind = "failed" if bad.tag == "failure" else "error"
            text = (bad.get("message") or "") + (bad.text or "")
            out.setdefault(module, {"passed": [], "failed": [], "error": []})[kind].append(
                f"{case.get('name')}: {text}"
            )
    return out


def test_a_new_method_file_is_run_by_every_suite_with_no_other_edit(tmp_path: Path) -> None:
    root = plugin_package(tmp_path / "plugins", "zofo_plugin_methods", {"fedsgd": FEDSGD})
    env = env_with(root, ZOFO_METHOD_PACKAGES="zofo_plugin_methods")
    results = pytest_run(env, "fedsgd-plugin", tmp_path / "report.xml")
    for module in SUITES:
        got = results[module]
        assert not got["failed"] and not got["error"], (module, got["failed"] + got["error"])
        assert got["passed"], f"{module} collected no test for the plugin method"
    passed = {n.split("[")[0] for m in SUITES for n in results[m]["passed"]}
    # the contract (declarations, the model restored, payloads on the wire), its bits checks (payload
    # against formula, logged against formula), determinism, resume after a crash, and robustness
    assert {
        "test_the_class_declares_what_the_engine_and_the_suites_read",
        "test_client_update_leaves_the_model_as_found",
        "test_payloads_round_trip_and_bits_match_formula",
        "test_e2e_logged_bits_match_formula",
        "test_same_seed_same_rounds_jsonl",
        "test_resume_after_interruption_equals_uninterrupted",
        "test_nan_attackers_are_rejected_and_the_model_stays_finite",
    } <= passed, sorted(passed)


def test_a_method_lacking_declarations_fails_naming_them_not_at_collection(tmp_path: Path) -> None:
    root = plugin_package(tmp_path / "plugins", "zofo_plugin_half", {"half": INCOMPLETE})
    env = env_with(root, ZOFO_METHOD_PACKAGES="zofo_plugin_half")
    results = pytest_run(env, "half-done", tmp_path / "report.xml")
    for module in SUITES:
        got = results[module]
        assert got["failed"] or got["error"], f"{module} ran no test of the incomplete method"
    # Every module collected (a broken collection shows as one error named after the module).
    problems = [f for m in results for f in results[m]["error"] + results[m]["failed"]]
    assert not [f for f in problems if "collection failure" in f or "ERROR collecting" in f], problems
    failed = [f for m in SUITES for f in results[m]["failed"] + results[m]["error"]]
    declared = [f for f in failed if f.startswith("test_the_class_declares")]
    assert declared and "uplink" in declared[0] and "test_params" in declared[0], declared
    # The suites that run the method say what it lacks, naming the class.
    runs = [f for f in failed if f.startswith("test_same_seed_same_rounds_jsonl")]
    assert runs and "HalfDone declares no test_params" in runs[0], runs

    # The engine refuses it before any work, naming the missing uplink (exit code 2, as any bad input).
    cfg = tmp_path / "half.yaml"
    cfg.write_text(yaml.safe_dump(tiny_run_config("half-done")))
    cmd = [sys.executable, "-m", "zofo.cli", "run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "HalfDone declares no uplink" in proc.stderr


def test_the_engine_runs_a_method_that_computes_no_training_loss(tmp_path: Path) -> None:
    root = plugin_package(tmp_path / "plugins", "zofo_plugin_walk", {"walk": RANDOM_WALK})
    env = env_with(root, ZOFO_METHOD_PACKAGES="zofo_plugin_walk")
    cfg = tmp_path / "walk.yaml"
    cfg.write_text(yaml.safe_dump(tiny_run_config("random-walk", federation={"rounds": 2, "eval_every": 1})))
    # With the progress bar: its postfix shows each evaluated round's training loss, here none.
    cmd = [sys.executable, "-m", "zofo.cli", "run", str(cfg), "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    rows = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["train_loss"] for r in rows] == [None, None, None]
    assert rows[-1]["eval_loss"] != rows[0]["eval_loss"], "the walk moved the model"
    assert rows[-1]["bits_up"] == 3 * 32


def test_an_installed_distribution_joins_through_its_entry_point(tmp_path: Path) -> None:
    site = plugin_package(tmp_path / "site", "zofo_ep_methods", {"walk": RANDOM_WALK})
    dist = site / "zofo_ep_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zofo-ep-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[zofo.methods]\nwalk = zofo_ep_methods\n")
    code = "from zofo.core.registry import METHODS; print(METHODS.names())"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env_with(site), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'random-walk'" in proc.stdout and "'fedavg'" in proc.stdout


def test_a_plugin_name_that_does_not_import_is_named_with_its_source(tmp_path: Path) -> None:
    env = env_with(tmp_path, ZOFO_METHOD_PACKAGES=" zofo_no_such_package ")
    proc = subprocess.run(
        [sys.executable, "-m", "zofo.cli", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "environment variable ZOFO_METHOD_PACKAGES: got 'zofo_no_such_package'" in proc.stderr
