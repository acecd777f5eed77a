# One generic rule: a run folder from its parameters. Any rule that writes a run folder in the
# results schema (meta.json + rounds.jsonl) joins the tables and figures.


# A run folder is RESULTS/runs/<method>/<cell>seed<seed> (zofo.grid.study.run_dir): cell is one folder
# per grid value, each ending in "/" (empty when every value is null). Its config is the one the studies
# declare for that folder; run_config refuses by name a folder that none declares.
# Threads: `threads_per_run`, unless --set-threads or a smaller --cores gives the job another number;
# the run computes with the job's threads and records them in its config (workflow/scripts/run.py),
# where they are part of its config hash.
rule run:
    conda:
        ENV
    input:
        lambda wc: asset_for(run_config(wc)),
    output:
        meta=f"{RESULTS}/runs/{{method}}/{{cell}}seed{{seed}}/meta.json",
        rounds=f"{RESULTS}/runs/{{method}}/{{cell}}seed{{seed}}/rounds.jsonl",
    params:
        cfg=run_config,
    log:
        f"{RESULTS}/logs/runs/{{method}}/{{cell}}seed{{seed}}.log",
    wildcard_constraints:
        **RUN_WILDCARDS,
    threads: config["threads_per_run"]
    # gpu: how many cards the job holds, so `--resources gpu=N` runs at most N GPU runs at once (the
    # job then claims a free card itself: zofo.grid.gpu_slots); the Slurm plugin submits it as --gpus.
    # gpu_model: the card type on Slurm, for GPU runs only (None leaves the resource out).
    resources:
        mem_mb=config["mem_mb_per_run"],
        gpu=lambda wc: declared(RUN_GPUS, run_folder(wc)),
        gpu_model=lambda wc: GPU_MODEL if declared(RUN_GPUS, run_folder(wc)) and GPU_MODEL else None,
    script:
        "../scripts/run.py"
