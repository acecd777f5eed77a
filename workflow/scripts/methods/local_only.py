"""local-only: every client fine-tunes alone and nothing is sent. A method written as a workflow rule.

It is not in zofo's method registry and does not run through the round loop (it has no server). It
only writes a run folder in the results schema (meta.json + rounds.jsonl), which is all the tables and
figures read, so it appears beside the registered methods; it writes it as the engine does, through
zofo.engine.record's public three: ``open_run``, ``add_row(round_row(...))``, ``finish``. Any program,
in any language, that writes such a folder joins them the same way; this one is Python because it
reuses zofo's loaders (zofo.engine.prepare), so it sees the very partition, batches and evaluation set
a registered method's run with the same config and seed sees.

What it measures: round 0 is the pretrained model; round 1 is the mean, over clients, of the metric of
each client's own model on the shared evaluation set: the value of federating at all, with 0 bits
sent. A client's model is what FedAvg's public method API gives for a round in which the server hears
that client alone (``client_update``, then ``aggregate`` of its one payload), so it is trained exactly
as a FedAvg client trains in one round.

Run by workflow/rules/methods/local_only.smk; `params.cfg` is the run's config mapping (the main
study's run_defaults, the rule method's block, alpha and seed), with method.params as FedAvg's.
"""

import hashlib
import json
import time
from pathlib import Path

import torch

from zofo.core.config import RunConfig
from zofo.core.device import peak_device_memory_mb
from zofo.core.seeds import numpy_rng
from zofo.core.zo import trainable_parameters
from zofo.engine.prepare import client_batches, prepare, recording_loss, row_base
from zofo.engine.record import open_run, peak_rss_mb, round_row
from zofo.grid.job import job_log
from zofo.methods.base import ClientData, RunContext
from zofo.methods.fedavg import FedAvg

METHOD = "local-only"

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    raw = dict(snakemake.params.cfg)  # noqa: F821
    # The run computes with the job's threads, and its recorded config says so.
    raw["threads"] = snakemake.threads  # noqa: F821
    # The local training is FedAvg's client step: its parameters are checked as FedAvg's, and every other
    # section by RunConfig itself (a typo fails here with the key named).
    cfg = RunConfig.from_dict(
        {**raw, "method": {"name": "fedavg", "params": raw["method"].get("params", {})}}
    )
    own_hash = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    torch.set_num_threads(cfg.threads)
    prep = prepare(cfg)
    model = prep.model
    losses: list[float] = []  # every training loss, for the round's mean train_loss
    loss = recording_loss(prep.objective, losses)

    ctx = RunContext(
        model=model,
        loss=loss,
        zo=cfg.zo,
        seed=cfg.seed,
        num_clients=cfg.partition.num_clients,
        cohort_size=cfg.partition.num_clients,
    )
    w0 = [p.detach().clone() for p in trainable_parameters(model)]
    d = sum(p.numel() for p in w0)

    out = Path(snakemake.output.meta).parent  # noqa: F821
    writer = open_run(
        out,
        {
            "config": {**cfg.to_dict(), "method": raw["method"]},
            "config_hash": own_hash,
            "method": {
                "name": METHOD,
                "family": "fo",
                "reference": "local training without federation (a lower bound in federated learning papers)",
                "params": raw["method"].get("params", {}),
                "written_by": "workflow rule local_only (workflow/scripts/methods/local_only.py)",
            },
            "model": {
                "name": cfg.model.name,
                "source": prep.loaded.source,
                "trainable_parameters": d,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            "task": {"name": cfg.task.name, "metric": prep.task.metric, "scorer": prep.scorer},
            "partition": {"sizes": [len(s) for s in prep.shards]},
            "formula_bits": {"uplink": 0, "downlink": 0},
        },
    )
    base = {**row_base(cfg, METHOD, "fo", prep), "config_hash": own_hash}
    zero = {
        "bits_up": 0,
        "bits_down": 0,
        "bits_up_cum": 0,
        "bits_down_cum": 0,
        "bits_catch_up": 0,
        "rejected": 0,
        "rejected_cum": 0,
    }

    def evaluate() -> tuple[dict, float]:
        t0 = time.perf_counter()
        return prep.objective.evaluate(prep.eval_data), time.perf_counter() - t0

    try:
        scores, secs = evaluate()
        writer.add_row(
            round_row(
                base, **zero, round=0, local_steps_total=0, train_loss=None, metric=scores["metric"],
                eval_loss=scores["eval_loss"], client_seconds=0.0, server_seconds=0.0, eval_seconds=secs,
                peak_rss_mb=peak_rss_mb(), peak_device_mb=peak_device_memory_mb(prep.device),
            )
        )  # fmt: skip
        per_client, client_s, eval_s, steps = [], 0.0, 0.0, 0
        for k, shard in enumerate(prep.shards):
            # The batches a FedAvg client k would draw in round 1 of a run with this seed.
            rng = numpy_rng(cfg.seed, "batches", "round", 1, "client", k)
            batches = client_batches(prep.objective, prep.train, shard, cfg.federation.batch_size, rng)
            client = ClientData(k, len(shard), batches, cfg.federation.batch_size)
            # A FedAvg round in which the server hears client k alone: the mean of one update is that
            # update, so the model ends at the client's own model (w0 + its update, as a server adds it).
            trainer = FedAvg(cfg.method_params(), ctx)
            trainer.setup()
            t0 = time.perf_counter()
            payload = trainer.client_update(1, client)
            client_s += time.perf_counter() - t0
            steps += trainer.local_steps()
            trainer.aggregate(1, [payload])
            scores, secs = evaluate()
            eval_s += secs
            per_client.append({"client": k, "metric": scores["metric"], "eval_loss": scores["eval_loss"]})
            with torch.no_grad():  # back to w0 for the next client
                for p, w in zip(trainable_parameters(model), w0, strict=True):
                    p.copy_(w)
            print(f"client {k}: {scores['metric']:.4f}", file=log, flush=True)
        mean = {key: sum(c[key] for c in per_client) / len(per_client) for key in ("metric", "eval_loss")}
        writer.add_row(
            round_row(
                base, **zero, **mean, round=1, local_steps_total=steps, train_loss=sum(losses) / len(losses),
                client_seconds=client_s, server_seconds=0.0, eval_seconds=eval_s, peak_rss_mb=peak_rss_mb(),
                peak_device_mb=peak_device_memory_mb(prep.device),
            )
        )  # fmt: skip
    except BaseException as e:
        writer.finish("failed", reason=f"{type(e).__name__}: {e}")
        raise
    writer.finish("ok", per_client=per_client, peak_rss_mb=peak_rss_mb())
