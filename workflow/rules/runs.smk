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
    resources:
        mem_mb=config["mem_mb_per_run"],
    script:
        "../scripts/run.py"
