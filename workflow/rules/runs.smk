# One generic rule: a run folder from its parameters. Any rule that writes a run folder in the
# results schema (meta.json + rounds.jsonl) joins the tables and figures.


rule run:
    conda:
        ENV
    input:
        model_asset,
    output:
        meta=f"{RESULTS}/runs/{{run}}/meta.json",
        rounds=f"{RESULTS}/runs/{{run}}/rounds.jsonl",
    params:
        cfg=lambda wc: RUN_CONFIGS[wc.run],
    log:
        f"{RESULTS}/logs/runs/{{run}}.log",
    wildcard_constraints:
        run="|".join(re.escape(path) for path in RUN_CONFIGS),
    threads: config["threads_per_run"]
    # gpu: how many cards the job holds, so `--resources gpu=N` runs at most N GPU runs at once (the
    # job then claims a free card itself: zofo.grid.gpu_slots); the Slurm plugin submits it as --gpus.
    # gpu_model: the card type on Slurm, for GPU runs only (None leaves the resource out).
    resources:
        mem_mb=config["mem_mb_per_run"],
        gpu=lambda wc: RUN_GPUS[wc.run],
        gpu_model=lambda wc: GPU_MODEL if RUN_GPUS[wc.run] and GPU_MODEL else None,
    script:
        "../scripts/run.py"
