# A method added as a workflow rule alone (README, "Add a method as a workflow rule"): the rule writes
# a run folder in the results schema, and listing the method under `rule_methods` in the config puts
# its runs in the main study's tables and figures. Nothing in src/zofo knows about it.
#   1. a script (any language) that writes RESULTS/runs/<method>/<cell>/{meta.json,rounds.jsonl};
#   2. a rule like this one with those two outputs (the folder parts as rule run's wildcards);
#   3. `rule_methods: {<method>: {<its settings>}}` in the config.


rule local_only:
    conda:
        ENV
    # The run's config: what the config declares for this folder (refused by name when nothing does).
    input:
        lambda wc: asset_for(declared(RULE_RUNS, run_folder(wc, "local-only"))),
    output:
        meta=f"{RESULTS}/runs/local-only/{{cell}}seed{{seed}}/meta.json",
        rounds=f"{RESULTS}/runs/local-only/{{cell}}seed{{seed}}/rounds.jsonl",
    params:
        cfg=lambda wc: declared(RULE_RUNS, run_folder(wc, "local-only")),
    log:
        f"{RESULTS}/logs/runs/local-only/{{cell}}seed{{seed}}.log",
    wildcard_constraints:
        cell=RUN_WILDCARDS["cell"],
        seed=RUN_WILDCARDS["seed"],
    # The run's torch threads (workflow/scripts/methods/local_only.py takes the job's).
    threads: config["threads_per_run"]
    resources:
        mem_mb=config["mem_mb_per_run"],
    script:
        "../../scripts/methods/local_only.py"
