"""The drift section: what a shared-seed method does when client and server draw z on different hardware.

Shared-seed methods send seeds, not vectors: the clients move their copy of the model along z(s) and
the server moves the global model along its own regeneration of z(s). If the two parties' z(s) differ,
their models drift apart while nothing in the protocol notices. This section measures that drift for
zofo's FeedSign and FedKSeed (``zofo.methods``) with stock seeded ``torch.randn`` (``zo.generator:
torch``) and with the portable generator (``zo.generator: philox``), on the CPU, by simulating the
hardware difference:

- ``same``: client and server draw alike (the control: no drift unless something else differs).
- ``isa``: the clients draw under ``ATEN_CPU_CAPABILITY=default`` and the server under ``avx2``; each
  party runs in its own process with that variable set, and records
  ``torch.backends.cpu.get_cpu_capability()`` to show which kernels actually ran. torch's fp32 normal
  sampler transforms uniforms with vectorised log/cos whose last bits depend on the instruction set.
- ``wave``: a model of two different GPUs. Seeded CUDA ``randn`` maps element positions to counter
  offsets by launch waves, so past one wave (W = 159,744 elements between two GPU models, the
  divergence point reported in PyTorch issue 196613) the values come from different offsets of the
  stream, and so does every later draw (each call advances the generator by whole waves). Modelled
  with the CPU generator: the server draws a tensor longer than W as its first W values, then skips W
  more values of the stream, then draws the rest; the skipped offset stays skipped for every later
  tensor. For the portable generator the same server draws a long tensor as two launches, positions
  [0, W) and [W, n) (``zofo.core.philox.normal_(out, seed, stream, start)``), the analogue of a different
  launch split. ``WaveDirections`` is this server's ``SeededDirections``.

The simulation, honest about who holds what:

1. A *clients* process (capability default) runs the rounds: each round's cohort runs the method's
   ``client_update`` on the clients' copy of the model, the uploads cross the wire codec, and the
   clients apply the round's broadcast with their own z (the method's ``aggregate``, which is a pure
   function of the uploads: every client computes the same vote or pool change the server broadcasts,
   and the server's broadcast is checked equal to it). Each FeedSign client restores its exact copy of
   the global weights after estimating (FedKSeed's clients do so by design), so the only difference
   left between the parties is the z they draw. It records the uploads and its final weights.
2. A *server* process per scenario replays the uploads through the method's ``aggregate`` on its own
   model with its own z, evaluates that model (the server's model is the one a run reports), and
   measures its weights against the clients' final copy.

The server's actions depend on the uploads only, and the uploads on the clients' model only, so the
replay is exactly the interleaved protocol. Reported: max |w_server - w_clients|, the L2 drift relative
to the clients' own update ||w_clients - w0||, the server's accuracy from round 0 to the last, and the
clients' copy's accuracy at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from zofo.bench.common import log
from zofo.bench.options import BenchOptions

WAVE = 159_744
SCENARIOS: tuple[str, ...] = ("same", "isa", "wave")
CLIENT_CAPABILITY = "default"
SERVER_CAPABILITY = {"same": "default", "isa": "avx2", "wave": "default"}
PARTY_TIMEOUT_S = 3600
# The default study's settings (config/config.yaml), except FedKSeed's local steps: one per round, so
# that 30 rounds cost what 6 rounds of the study's 5 steps do (the server applies as many seeds) while
# the drift compounds over as many server updates as FeedSign's tens of rounds. Tiny models (tests,
# --quick) use the smoke study's short inputs and FedKSeed's small pool.
METHOD_PARAMS = {
    "feedsign": {"lr": 1e-3},
    "fedkseed": {"lr": 2e-4, "K": 4096, "local_steps": 1},
}
TINY_METHOD_PARAMS = {
    "feedsign": {"lr": 1e-3},
    "fedkseed": {"lr": 1e-4, "K": 16, "local_steps": 2},
}
CSV_COLUMNS: tuple[str, ...] = (
    "method",
    "generator",
    "scenario",
    "client_capability",
    "server_capability",
    "model",
    "rounds",
    "z_differ",
    "z_max_abs_diff",
    "max_abs_drift",
    "rel_l2_drift",
    "rel_l2_weights",
    "server_metric_start",
    "server_metric_end",
    "clients_metric_end",
    "broadcasts_equal",
    "seconds",
)


def probe_seed(seed: int) -> int:
    """The seed whose z both parties draw before training, to compare the directions themselves."""
    from zofo.core.seeds import seed32

    return seed32(seed, "bench", "drift", "probe")


def _tiny(model: str) -> bool:
    return model in ("tiny-llama", "tiny-bert")


def run_config(opts: BenchOptions, method: str, generator: str) -> dict[str, Any]:
    """The RunConfig mapping both parties build their method from."""
    tiny = _tiny(opts.drift_model)
    rounds = opts.drift_rounds if method == "feedsign" else opts.drift_fedkseed_rounds
    return {
        "model": {"name": opts.drift_model},
        "task": {
            "name": "bbc-news",
            "max_input_tokens": 8 if tiny else 24,
            "eval_max_examples": 32 if tiny else 200,
            "eval_batch_size": 32,
        },
        "partition": {"name": "dirichlet", "num_clients": 5, "alpha": 0.5},
        # The server's model is evaluated at round 0 and after the last round: what the table reports.
        "federation": {"rounds": rounds, "batch_size": 2 if tiny else 8, "eval_every": rounds},
        # fuse off: a FeedSign client's held perturbation would otherwise be absorbed by the update it
        # applies after restoring its exact copy of the weights (see the module docstring).
        "zo": {"eps": 1e-3, "mode": "fast", "fuse": False, "generator": generator},
        "method": {"name": method, "params": (TINY_METHOD_PARAMS if tiny else METHOD_PARAMS)[method]},
        "seed": opts.seed,
        "threads": 1,
        "assets_dir": opts.assets_dir,
        "checkpoint": False,
        "label": "bench-drift",
    }


# ----------------------------------------------------------------------------------------------------
# The wave model's server directions
# ----------------------------------------------------------------------------------------------------


class WaveDirections:
    """The server's directions under the wave model (module docstring): the subset of
    ``SeededDirections`` a server's update uses (``update``, ``axpy``, ``settle``, ``clear``,
    ``regenerations``), always regenerating (lean), never held."""

    def __init__(self, params: Sequence[torch.Tensor], eps: float, generator: str, wave: int = WAVE):
        if wave % 16:
            # torch's CPU sampler transforms blocks of 16: a head that is a multiple of 16 long gets
            # exactly the values the whole draw would have.
            raise ValueError(f"wave: got {wave}; allowed: a multiple of 16")
        self.params = list(params)
        self.eps = float(eps)
        self.generator = generator
        self.wave = wave
        self.regenerations = 0

    def z(self, seed: int) -> list[torch.Tensor]:
        """This server's z(seed), one tensor per parameter."""
        self.regenerations += 1
        out = []
        if self.generator == "philox":
            from zofo.core import philox

            for i, p in enumerate(self.params):
                z = torch.empty(p.numel(), dtype=p.dtype, device=p.device)
                if p.numel() > self.wave:
                    philox.normal_(z[: self.wave], seed, i, 0)
                    philox.normal_(z[self.wave :], seed, i, self.wave)
                else:
                    philox.normal_(z, seed, i)
                out.append(z.view(p.shape))
            return out
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        for p in self.params:
            n = p.numel()
            if n > self.wave:
                head = torch.randn(self.wave, generator=g, dtype=p.dtype)
                torch.randn(self.wave, generator=g, dtype=p.dtype)  # the other GPU's extra wave
                tail = torch.randn(n - self.wave, generator=g, dtype=p.dtype)
                z = torch.cat([head, tail])
            else:
                z = torch.randn(n, generator=g, dtype=p.dtype)
            out.append(z.view(p.shape).to(p.device))
        return out

    @torch.no_grad()
    def axpy(self, seed: int, alpha: float) -> None:
        from zofo.core.zo import add_scaled_

        for p, z in zip(self.params, self.z(seed), strict=True):
            add_scaled_(p, z, float(alpha), portable=self.generator == "philox")

    def update(self, seed: int, coeff: float) -> None:
        self.axpy(seed, -float(coeff))

    def settle(self) -> None:
        return None

    def clear(self) -> None:
        return None

    @property
    def holding(self) -> bool:
        return False


# ----------------------------------------------------------------------------------------------------
# One party process
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyTask:
    role: str  # "clients" or "server"
    method: str
    generator: str
    scenario: str  # the server's scenario; "" for the clients
    config: dict
    log_path: str  # the clients' record: uploads, broadcasts, final weights
    out_path: str  # this task's JSON summary


class Party:
    """What one party process keeps between its tasks: the prepared data and the model's first weights
    (every task starts from them)."""

    def __init__(self) -> None:
        self.prepared: dict[str, Any] = {}

    def prepare(self, config: dict) -> Any:
        from zofo.core.config import RunConfig
        from zofo.engine.loop import prepare

        cfg = RunConfig.from_dict(config)
        key = json.dumps({k: config[k] for k in ("model", "task", "partition", "seed")}, sort_keys=True)
        if key not in self.prepared:
            prep = prepare(cfg)
            state = {k: v.detach().clone() for k, v in prep.model.state_dict().items()}
            self.prepared[key] = (prep, state)
        prep, state = self.prepared[key]
        prep.model.load_state_dict(state)
        return cfg, prep

    def method(self, cfg: Any, prep: Any) -> Any:
        from zofo.core.registry import METHODS
        from zofo.methods.base import RunContext

        torch.set_num_threads(cfg.threads)
        n = cfg.partition.num_clients
        ctx = RunContext(
            model=prep.model,
            loss=prep.objective.loss,
            zo=cfg.zo,
            seed=cfg.seed,
            num_clients=n,
            cohort_size=cfg.federation.clients_per_round or n,
            aggregator=cfg.aggregator,
        )
        method = METHODS.get(cfg.method.name)(cfg.method_params(), ctx)
        method.setup()
        return method

    def clients(self, task: PartyTask) -> dict[str, Any]:
        from zofo.core.seeds import numpy_rng
        from zofo.core.zo import trainable_parameters
        from zofo.engine.comm import transmit
        from zofo.engine.loop import client_batches, sample_cohort
        from zofo.methods.base import ClientData

        cfg, prep = self.prepare(task.config)
        initial = {k: v.detach().clone() for k, v in prep.model.state_dict().items()}
        method = self.method(cfg, prep)
        params = trainable_parameters(prep.model)
        n = cfg.partition.num_clients
        bs = cfg.federation.batch_size
        z_probe = [z.detach().clone() for z in method.dirs.z(probe_seed(cfg.seed))]
        method.dirs.clear()
        rounds = []
        for r in range(1, cfg.federation.rounds + 1):
            cohort = sample_cohort(n, cfg.federation.clients_per_round or n, numpy_rng(cfg.seed, "cohort", r))
            exact = [p.detach().clone() for p in params] if task.method == "feedsign" else None
            uploads = []
            for k in cohort:
                client = ClientData(
                    client_id=k,
                    num_examples=len(prep.shards[k]),
                    batches=client_batches(
                        prep.objective,
                        prep.train,
                        prep.shards[k],
                        bs,
                        numpy_rng(cfg.seed, "batches", "round", r, "client", k),
                    ),
                    batch_size=bs,
                )
                uploads.append(transmit(method.client_update(r, client))[0])
            if exact is not None:
                with torch.no_grad():
                    for p, w in zip(params, exact, strict=True):
                        p.copy_(w)
            broadcast = transmit(method.aggregate(r, uploads))[0]
            method.end_round(r)
            rounds.append(
                {
                    "round": r,
                    "cohort": [(k, len(prep.shards[k])) for k in cohort],
                    "uploads": uploads,
                    "broadcast": broadcast,
                }
            )
        final = [p.detach().clone() for p in params]
        scores = prep.objective.evaluate(prep.eval_data)
        torch.save({"rounds": rounds, "final": final, "z_probe": z_probe, "initial": initial}, task.log_path)
        return {"clients_metric_end": float(scores["metric"])}

    def server(self, task: PartyTask) -> dict[str, Any]:
        from zofo.core.zo import trainable_parameters

        cfg, prep = self.prepare(task.config)
        record = torch.load(task.log_path, weights_only=False)
        # The server starts from the clients' very weights: a model part computed by a forward pass
        # (MiniLM's cosine head, from the label names' embeddings) or a random init comes out an ulp
        # apart under another instruction set, and the simulation is about the directions alone.
        prep.model.load_state_dict(record["initial"])
        method = self.method(cfg, prep)
        params = trainable_parameters(prep.model)
        w0 = [p.detach().clone() for p in params]
        if task.scenario == "wave":
            method.dirs = WaveDirections(method.dirs.params, cfg.zo.eps, cfg.zo.generator)
        mine = [z.detach().clone() for z in method.dirs.z(probe_seed(cfg.seed))]
        method.dirs.clear()
        differ = sum(int((a != b).sum()) for a, b in zip(mine, record["z_probe"], strict=True))
        z_max = max(
            float((a.double() - b.double()).abs().max()) for a, b in zip(mine, record["z_probe"], strict=True)
        )
        every = cfg.federation.eval_every
        metrics = {0: float(prep.objective.evaluate(prep.eval_data)["metric"])}
        equal = True
        for entry in record["rounds"]:
            r = entry["round"]
            if task.method == "fedkseed":
                # The server knows the cohort it sampled; the engine records it through client_update,
                # which runs only on the clients' side here.
                method.expect_cohort(r, entry["cohort"])
            broadcast = method.aggregate(r, entry["uploads"])
            method.end_round(r)
            equal &= all(torch.equal(broadcast[k], entry["broadcast"][k]) for k in entry["broadcast"])
            if r % every == 0 or r == cfg.federation.rounds:
                metrics[r] = float(prep.objective.evaluate(prep.eval_data)["metric"])
        clients = record["final"]
        diff2 = sum(
            float((p.detach().double() - c.double()).square().sum())
            for p, c in zip(params, clients, strict=True)
        )
        upd2 = sum(float((c.double() - w.double()).square().sum()) for c, w in zip(clients, w0, strict=True))
        norm2 = sum(float(c.double().square().sum()) for c in clients)
        max_abs = max(float((p.detach() - c).abs().max()) for p, c in zip(params, clients, strict=True))
        return {
            "z_differ": differ / sum(z.numel() for z in mine),
            "z_max_abs_diff": z_max,
            "max_abs_drift": max_abs,
            "rel_l2_drift": math.sqrt(diff2 / upd2) if upd2 > 0 else math.nan,
            "rel_l2_weights": math.sqrt(diff2 / norm2),
            "server_metric_start": metrics[0],
            "server_metric_end": metrics[max(metrics)],
            "server_metrics": metrics,
            "broadcasts_equal": bool(equal),
        }

    def run(self, task: PartyTask) -> None:
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        try:
            out = self.clients(task) if task.role == "clients" else self.server(task)
        finally:
            torch.set_num_threads(threads)
        out.update(
            {
                "role": task.role,
                "method": task.method,
                "generator": task.generator,
                "scenario": task.scenario,
                "capability": torch.backends.cpu.get_cpu_capability(),
                "seconds": time.perf_counter() - t0,
            }
        )
        Path(task.out_path).write_text(json.dumps(out))


def party_main(argv: Sequence[str]) -> int:
    """``python -m zofo.bench --party TASKS.json``: run one party process's tasks in order."""
    p = argparse.ArgumentParser(prog="python -m zofo.bench --party", description="one drift party process")
    p.add_argument("--party", required=True, help="JSON list of PartyTask fields")
    a = p.parse_args(argv)
    party = Party()
    for fields in json.loads(Path(a.party).read_text()):
        task = PartyTask(**fields)
        log(
            f"drift party ({torch.backends.cpu.get_cpu_capability()}): {task.role} {task.method} "
            f"{task.generator} {task.scenario}"
        )
        party.run(task)
    return 0


# ----------------------------------------------------------------------------------------------------
# The parent: schedule the parties, collect the table
# ----------------------------------------------------------------------------------------------------


def _spawn(tasks: Sequence[PartyTask], capability: str, work: Path, index: int) -> subprocess.Popen:
    import zofo

    spec = work / f"party-{index}.json"
    spec.write_text(json.dumps([asdict(t) for t in tasks]))
    env = dict(os.environ)
    src = str(Path(zofo.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env["ATEN_CPU_CAPABILITY"] = capability
    env["HF_HUB_OFFLINE"] = "1"
    # one thread per party: J parties share the machine's cores
    env["OMP_NUM_THREADS"] = "1"
    stderr = open(work / f"party-{index}.log", "w")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(
        [sys.executable, "-m", "zofo.bench", "--party", str(spec)],
        env=env,
        stderr=stderr,
        stdout=subprocess.DEVNULL,
    )
    proc.log_file = stderr  # type: ignore[attr-defined]
    return proc


def _run_parties(groups: Sequence[tuple[str, list[PartyTask]]], jobs: int, work: Path) -> None:
    """Run each (capability, tasks) group as one process, at most ``jobs`` at a time."""
    pending = list(enumerate(groups))
    running: list[tuple[int, subprocess.Popen]] = []
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < jobs:
            i, (cap, tasks) = pending.pop(0)
            running.append((i, _spawn(tasks, cap, work, i)))
        time.sleep(0.2)
        for i, proc in list(running):
            if proc.poll() is None:
                if time.monotonic() - started > PARTY_TIMEOUT_S:
                    proc.kill()
                continue
            proc.log_file.close()
            running.remove((i, proc))
            if proc.returncode != 0:
                for _, other in running:
                    other.kill()
                tail = (work / f"party-{i}.log").read_text()[-4000:]
                raise RuntimeError(f"drift party {i} failed (exit {proc.returncode}):\n{tail}")


def _split(tasks: list[PartyTask], capability: str, parts: int) -> list[tuple[str, list[PartyTask]]]:
    parts = max(1, min(parts, len(tasks)))
    return [(capability, tasks[i::parts]) for i in range(parts) if tasks[i::parts]]


def drift_frame(opts: BenchOptions, work: Path) -> pd.DataFrame:
    """Run every party and return one row per (method, generator, scenario)."""
    generators = ("torch", "philox")
    # One chain per (method, generator) in a process of the clients' capability: the clients' run,
    # then the replays of the servers that draw like the clients (same prepared data, no new start-up).
    # The servers on another capability replay in processes of their own once every chain is done.
    chains: list[list[PartyTask]] = []
    others: dict[str, list[PartyTask]] = {}
    for method in opts.drift_methods:
        for gen in generators:
            config = run_config(opts, method, gen)
            log_path = str(work / f"{method}-{gen}-clients.pt")
            chain = [
                PartyTask(
                    "clients", method, gen, "", config, log_path, str(work / f"{method}-{gen}-clients.json")
                )
            ]
            for scenario in SCENARIOS:
                task = PartyTask(
                    "server",
                    method,
                    gen,
                    scenario,
                    config,
                    log_path,
                    str(work / f"{method}-{gen}-{scenario}.json"),
                )
                cap = SERVER_CAPABILITY[scenario]
                (chain if cap == CLIENT_CAPABILITY else others.setdefault(cap, [])).append(task)
            chains.append(chain)
    n_other = sum(len(t) for t in others.values())
    log(f"drift: {len(chains)} clients runs, each with its same-capability replays; then {n_other} replays")
    jobs = opts.drift_jobs
    groups = [
        (CLIENT_CAPABILITY, [t for c in chains[i::jobs] for t in c]) for i in range(min(jobs, len(chains)))
    ]
    _run_parties(groups, jobs, work)
    groups = []
    for cap, tasks in others.items():
        groups += _split(tasks, cap, jobs)
    _run_parties(groups, jobs, work)
    rows = []
    for method in opts.drift_methods:
        for gen in generators:
            c = json.loads((work / f"{method}-{gen}-clients.json").read_text())
            for scenario in SCENARIOS:
                s = json.loads((work / f"{method}-{gen}-{scenario}.json").read_text())
                rows.append(
                    {
                        "method": method,
                        "generator": gen,
                        "scenario": scenario,
                        "client_capability": c["capability"],
                        "server_capability": s["capability"],
                        "model": opts.drift_model,
                        "rounds": run_config(opts, method, gen)["federation"]["rounds"],
                        **{k: s[k] for k in CSV_COLUMNS if k in s and k != "seconds"},
                        "clients_metric_end": c["clients_metric_end"],
                        "seconds": c["seconds"] + s["seconds"],
                    }
                )
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


SCENARIO_TEXT = {
    "same": "same hardware",
    "isa": "CPU instruction sets (clients default, server avx2)",
    "wave": f"GPU launch waves (server re-mapped past {WAVE:,})",
}


def drift_markdown(df: pd.DataFrame, opts: BenchOptions, seconds: float) -> str:
    from zofo.analysis.tables import to_markdown

    def num(x: float) -> str:
        return "0" if x == 0 else f"{x:.3g}"

    table = pd.DataFrame(
        {
            "method": df["method"],
            "generator": df["generator"].map({"torch": "torch.randn (stock)", "philox": "philox (zofo)"}),
            "client / server draw": df["scenario"].map(SCENARIO_TEXT),
            "z entries differing": df["z_differ"].map(lambda x: "0" if x == 0 else f"{100 * x:.3g}%"),
            "max |z_s - z_c|": df["z_max_abs_diff"].map(num),
            "max |w_s - w_c|": df["max_abs_drift"].map(num),
            "drift / update (L2)": df["rel_l2_drift"].map(num),
            "server accuracy": [
                f"{a:.3f} → {b:.3f}"
                for a, b in zip(df["server_metric_start"], df["server_metric_end"], strict=True)
            ],
            "clients' copy": df["clients_metric_end"].map(lambda x: f"{x:.3f}"),
        }
    )
    caps = sorted(set(df["client_capability"]) | set(df["server_capability"]))
    rounds = ", ".join(f"{m} {int(df.loc[df['method'] == m, 'rounds'].iloc[0])}" for m in opts.drift_methods)
    params = TINY_METHOD_PARAMS if _tiny(opts.drift_model) else METHOD_PARAMS
    setting = "; ".join(
        f"{m}: " + ", ".join(f"{k} {v:g}" for k, v in params[m].items()) for m in opts.drift_methods
    )
    lines = [
        "# zofo bench: cross-hardware drift",
        "",
        f"{opts.drift_model} on bbc-news, 5 clients (Dirichlet 0.5), rounds: {rounds} ({setting}; "
        f"zo eps 1e-3, fast mode); seed {opts.seed}. "
        "Clients and server run in separate processes; the server replays the clients' uploads through "
        "the method's own aggregate with its own z, and its model is the one evaluated. w_s: the "
        "server's weights after the last round; w_c: the clients' copy; update: ||w_c - w0||. "
        f"Capabilities that ran: {', '.join(caps)}. Measured in {seconds:.0f} s "
        "(`zofo bench --drift`; zofo.bench.drift documents the model).",
        "",
        to_markdown(table).rstrip(),
    ]
    same_z = df[(df["generator"] == "philox") & (df["scenario"] == "isa")]
    if len(same_z) and (same_z["z_differ"] == 0).all() and (same_z["max_abs_drift"] > 0).any():
        lines += [
            "",
            "Across instruction sets the portable generator's z are identical (no entry differs), yet the "
            "weights differ: something besides the directions rounds differently per instruction set "
            "(zofo's update rounds a * z and the sum apart so that it does not; see zofo.core.zo).",
        ]
    if not df["broadcasts_equal"].all():
        lines += ["", "Warning: a server's broadcast differed from the clients' own computation of it."]
    return "\n".join(lines) + "\n"


def run_drift(opts: BenchOptions, out_dir: str | Path) -> str:
    """The whole drift section: writes OUT/drift.csv and OUT/drift.md; returns the Markdown."""
    from zofo.engine.record import atomic_write_text

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zofo-drift-") as tmp:
        df = drift_frame(opts, Path(tmp))
    md = drift_markdown(df, opts, time.perf_counter() - t0)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "drift.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "drift.md", md)
    return md
