"""The one round loop. Every method runs through ``run``; none has a loop of its own.

setup -> evaluate round 0 -> for each round: sample a cohort; each client in turn computes its
payload on the shared working model; the payload crosses the wire codec (bits counted); the server
aggregates the decoded payloads and broadcasts (bits counted per receiving client); evaluate when
due; append one row to rounds.jsonl.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from zofo.assets.models import parameter_count
from zofo.core.config import RunConfig
from zofo.core.device import (
    check_memory,
    device_name,
    forked_rng,
    keep_freed_host_memory,
    peak_device_memory_mb,
    reset_peak_memory,
    resolve_device,
    torch_dtype,
)
from zofo.core.errors import ConfigError
from zofo.core.philox import DESCRIPTION as GENERATORS
from zofo.core.registry import METHODS
from zofo.core.seeds import derive, numpy_rng, torch_rng
from zofo.core.zo import trainable_parameters
from zofo.engine.checkpoints import CHECKPOINT as CHECKPOINT  # the file name, for callers of run
from zofo.engine.checkpoints import load_checkpoint, remove_checkpoint, save_checkpoint
from zofo.engine.comm import transmit
from zofo.engine.partition import label_histograms, partition_hash
from zofo.engine.prepare import client_batches, prepare, recording_loss, recording_losses, row_base
from zofo.engine.record import RunFolder, open_run, peak_rss_mb, round_row
from zofo.methods.base import ClientData, RunContext
from zofo.robust.attacks import ATTACKS, byzantine_clients
from zofo.robust.setting import NO_ATTACK, attack_payload, validate_payload


def sample_cohort(num_clients: int, size: int, rng: np.random.Generator) -> list[int]:
    """``size`` distinct clients, in a random order (the order clients run in)."""
    return rng.choice(num_clients, size=size, replace=False).tolist()


def formula_bits(method: Any, d: int, cohort_size: int) -> dict[str, int] | None:
    """What the method's definition says one client sends and receives per round, for the record."""
    bits = method.formula_bits(d, cohort_size)
    return None if bits is None else {"uplink": int(bits[0]), "downlink": int(bits[1])}


def run(cfg: RunConfig, out_dir: str | Path, progress: bool = True, restart: bool = False) -> Path:
    """Run one federated experiment and write its run folder; returns the folder.

    The folder is held for the whole run (``RunFolder``): refused while another process writes it, and
    when it holds a finished run or a run of another config, unless ``restart`` deletes that first."""
    with RunFolder(out_dir, cfg.hash(), restart=restart) as folder:
        return _run(cfg, folder, progress)


def _run(cfg: RunConfig, folder: RunFolder, progress: bool) -> Path:
    out_dir = folder.path
    torch.set_num_threads(cfg.threads)
    keep_freed_host_memory()
    params = cfg.method_params()
    method_cls = METHODS.get(cfg.method.name, "method.name")
    cohort_size = cfg.federation.clients_per_round or cfg.partition.num_clients
    device = resolve_device(cfg.device)
    if device.type != "cpu":
        # Refused before any weights load: the count comes from the model's config alone.
        check_memory(
            parameter_count(cfg.model, cfg.assets_dir),
            torch_dtype(cfg.dtype),
            method_cls.memory_factor(params, cfg.zo, cohort_size),
            device,
        )
    reset_peak_memory(device)

    prep = prepare(cfg)
    task, loaded, objective, model = prep.task, prep.loaded, prep.objective, prep.model
    train, eval_data, shards, scorer = prep.train, prep.eval_data, prep.shards, prep.scorer
    if cohort_size > cfg.partition.num_clients:
        raise ConfigError(
            "federation.clients_per_round",
            cohort_size,
            f"at most partition.num_clients = {cfg.partition.num_clients}",
        )

    # The engine records every loss a method computes, to log the mean training loss of a round.
    seen_losses: list[float] = []
    loss = recording_loss(objective, seen_losses)

    ctx = RunContext(
        model=model,
        loss=loss,
        losses=recording_losses(objective, seen_losses),
        zo=cfg.zo,
        seed=cfg.seed,
        num_clients=cfg.partition.num_clients,
        cohort_size=cohort_size,
        aggregator=cfg.aggregator,
    )
    size = sum(p.numel() for p in model.parameters())  # the pretrained model's size, before any adapter
    method = method_cls(params, ctx)
    # Set up before the metadata: a method may change what is trainable (LoRA adapters).
    method.setup()
    d = sum(p.numel() for p in model.parameters() if p.requires_grad)  # what the method trains
    byzantine = set(byzantine_clients(cfg.partition.num_clients, cfg.byzantine.fraction, cfg.seed))
    kinds = method_cls.payload_kinds(params)
    resume = load_checkpoint(out_dir, cfg, device)
    if resume is not None:
        # The checkpoint holds the global model after its round: trainable weights + method state.
        if resume["weights"] is not None:
            with torch.no_grad():
                for p, w in zip(trainable_parameters(model), resume["weights"], strict=True):
                    p.copy_(w)
        method.load_state_dict(resume["method"])
    writer = open_run(
        folder,
        {
            "config": cfg.to_dict(),
            "config_hash": cfg.hash(),
            "method": {
                "name": cfg.method.name,
                "family": method_cls.family,
                "reference": method_cls.reference,
                "params": dataclasses.asdict(params),
            },
            "model": {
                "name": cfg.model.name,
                "source": loaded.source,
                "kind": loaded.kind,
                "pretrained": loaded.pretrained,
                "trainable_parameters": d,
                "parameters": size,
            },
            "task": {
                "name": cfg.task.name,
                "source": task.source,
                "kind": task.kind,
                "metric": task.metric,
                "scorer": scorer,
                "train_examples": len(train),
                "eval_split": cfg.task.eval_split,
                "eval_examples": len(eval_data),
            },
            "partition": {
                "hash": partition_hash(shards),
                "sizes": [len(s) for s in shards],
                "label_histograms": label_histograms(train["label"], shards, len(task.label_names)),
                "label_names": list(task.label_names),
            },
            "formula_bits": formula_bits(method, d, cohort_size),
            "robustness": {
                "byzantine_clients": sorted(byzantine),
                "byzantine_count_rule": "floor(fraction * num_clients + 1/2)",
                "attack": cfg.byzantine.attack,
                "attacked_fields": sorted(
                    k for k, kind in kinds.items() if kind in ATTACKS.get(cfg.byzantine.attack, ())
                ),
                "aggregator": dataclasses.asdict(cfg.aggregator),
                "validation": "fields, shapes, dtypes, finite values, seeds; rejected = never applied",
            },
            "device": {
                "requested": cfg.device,
                "resolved": str(device),
                "name": device_name(device),
                "dtype": cfg.dtype,
            },
            "zo_generator": {"name": cfg.zo.generator, "description": GENERATORS[cfg.zo.generator]},
            "resumed_from_round": resume["round"] if resume else None,
        },
        rows=resume["rows"] if resume else (),
    )

    base_row = row_base(cfg, cfg.method.name, method_cls.family, prep)
    # A checkpoint written before rejections were counted has no "rejected": none were.
    cum = {"up": 0, "down": 0, "steps": 0, "rejected": 0, **(resume["cum"] if resume else {})}
    start = resume["round"] + 1 if resume else 1

    def checkpoint(round_idx: int) -> None:
        if cfg.checkpoint:
            save_checkpoint(
                out_dir,
                {
                    "config_hash": cfg.hash(),
                    "round": round_idx,
                    "cum": dict(cum),
                    "rows": list(writer.rows),
                    "weights": [p.detach().clone() for p in trainable_parameters(model)]
                    if method.checkpoint_weights
                    else None,
                    "method": method.state_dict(),
                },
            )

    def evaluate_row(round_idx: int, extra: Mapping[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        scores = objective.evaluate(eval_data)
        row = round_row(
            base_row,
            round=round_idx,
            local_steps_total=cum["steps"],
            bits_up_cum=cum["up"],
            bits_down_cum=cum["down"],
            rejected_cum=cum["rejected"],
            **extra,
            metric=scores["metric"],
            eval_loss=scores["eval_loss"],
            eval_seconds=time.perf_counter() - t0,
            peak_rss_mb=peak_rss_mb(),
            peak_device_mb=peak_device_memory_mb(device),
        )
        writer.add_row(row)
        return row

    try:
        if resume is None:
            row = evaluate_row(
                0,
                {
                    "train_loss": None,
                    "bits_up": 0,
                    "bits_down": 0,
                    "bits_catch_up": 0,
                    "rejected": 0,
                    "client_seconds": 0.0,
                    "server_seconds": 0.0,
                },
            )
            checkpoint(0)
        else:
            row = writer.rows[-1]
        bar = tqdm(
            range(start, cfg.federation.rounds + 1),
            desc=f"{cfg.method.name} seed {cfg.seed}",
            disable=not progress,
            dynamic_ncols=True,
        )
        bar.set_postfix(metric=f"{row['metric']:.3f}")
        since = {"up": 0, "down": 0, "catch_up": 0, "client": 0.0, "server": 0.0, "rejected": 0}
        for r in bar:
            cohort = sample_cohort(cfg.partition.num_clients, cohort_size, numpy_rng(cfg.seed, "cohort", r))
            seen_losses.clear()
            clients = [
                ClientData(
                    client_id=k,
                    num_examples=len(shards[k]),
                    batches=client_batches(
                        objective,
                        train,
                        shards[k],
                        cfg.federation.batch_size,
                        numpy_rng(cfg.seed, "batches", "round", r, "client", k),
                    ),
                    batch_size=cfg.federation.batch_size,
                )
                for k in cohort
            ]
            # What each client missed while absent, downloaded before it computes (base: catch_up).
            for k in cohort:
                if (missed := method.catch_up(r, k)) is not None:
                    _, bits = transmit(missed, device)
                    since["down"] += bits
                    since["catch_up"] += bits

            # Dropout draws from torch's global generator (the CPU's, or the GPU's for a model on it);
            # seeding it per (round, client) inside a fork keeps those draws reproducible and invisible
            # to everything else.
            def isolated(client: ClientData, r: int = r) -> Any:
                return forked_rng(
                    device, derive(cfg.seed, "torch-global", "round", r, "client", client.client_id)
                )

            t0 = time.perf_counter()
            results = method.client_updates(r, clients, isolated)
            since["client"] += time.perf_counter() - t0
            payloads = []
            for k, (payload, steps) in zip(cohort, results, strict=True):
                cum["steps"] += steps  # per client: epoch-based methods vary
                if k in byzantine and cfg.byzantine.attack != NO_ATTACK:
                    gen = torch_rng(cfg.seed, "attack", "round", r, "client", k)
                    payload = attack_payload(
                        payload, kinds, cfg.byzantine.attack, gen, cfg.byzantine.strength
                    )
                received, bits = transmit(payload, device)
                since["up"] += bits
                # The server checks what arrived against what an honest client sends; what fails is
                # counted and never reaches the aggregate.
                reason = validate_payload(received, method.payload_spec(r, k)) or method.check_payload(
                    r, k, received
                )
                if reason is None:
                    payloads.append(received)
                else:
                    since["rejected"] += 1
                    method.drop_client(r, k)
                    print(f"zofo: round {r}: rejected client {k}: {reason}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if payloads:
                broadcast = method.aggregate(r, payloads)
                _, bits = transmit(broadcast, device)
                since["down"] += bits * len(cohort)
                del broadcast
            # else: nothing valid arrived, the global model stays, and nothing is broadcast.
            method.end_round(r)
            since["server"] += time.perf_counter() - t0
            del payloads
            train_loss = float(np.mean(seen_losses)) if seen_losses else None
            if train_loss is not None and not math.isfinite(train_loss):
                writer.finish("diverged", reason=f"non-finite training loss in round {r}", diverged_round=r)
                remove_checkpoint(out_dir)
                return out_dir
            if r % cfg.federation.eval_every == 0 or r == cfg.federation.rounds:
                cum["up"] += since["up"]
                cum["down"] += since["down"]
                cum["rejected"] += since["rejected"]
                row = evaluate_row(
                    r,
                    {
                        "train_loss": train_loss,
                        "bits_up": since["up"],
                        "bits_down": since["down"],
                        "bits_catch_up": since["catch_up"],
                        "rejected": since["rejected"],
                        "client_seconds": since["client"],
                        "server_seconds": since["server"],
                    },
                )
                since = {"up": 0, "down": 0, "catch_up": 0, "client": 0.0, "server": 0.0, "rejected": 0}
                if math.isfinite(row["eval_loss"]):
                    checkpoint(r)
                # A method may compute no training loss (the round's train_loss is then null).
                loss_text = "-" if train_loss is None else f"{train_loss:.3f}"
                bar.set_postfix(metric=f"{row['metric']:.3f}", loss=loss_text)
                if not math.isfinite(row["eval_loss"]):
                    writer.finish("diverged", reason=f"non-finite eval loss in round {r}", diverged_round=r)
                    remove_checkpoint(out_dir)
                    return out_dir
    except (KeyboardInterrupt, SystemExit) as e:
        # Stopped from outside, not failed: the checkpoint stays, and the same command resumes from it.
        writer.end("interrupted", reason=f"{type(e).__name__}; run it again to resume from its checkpoint")
        raise
    except BaseException as e:
        writer.end("failed", reason=f"{type(e).__name__}: {e}")
        remove_checkpoint(out_dir)
        raise
    writer.finish(
        "ok",
        describe=method.describe(),
        peak_rss_mb=peak_rss_mb(),
        peak_device_mb=peak_device_memory_mb(device),
    )
    remove_checkpoint(out_dir)  # finished: the results are the record
    return out_dir
