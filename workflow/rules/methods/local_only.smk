# A method added as a workflow rule alone (README, "Add a method as a workflow rule"): the rule writes
# a run folder in the results schema, and listing the method under `rule_methods` in the config puts
# its runs in the main study's tables and figures. Nothing in src/zofo knows about it.
#   1. a script (any language) that writes RESULTS/runs/<method>/<cell>/{meta.json,rounds.jsonl};
#   2. a rule like this one with those two outputs;
#   3. `rule_methods: {<method>: {<its settings>}}` in the config.


rule local_only:
    conda:
        ENV
    input:
        lambda wc: asset_for(RULE_RUNS[f"local-only/{wc.cell}"]),
    output:
        meta=f"{RESULTS}/runs/local-only/{{cell}}/meta.json",
        rounds=f"{RESULTS}/runs/local-only/{{cell}}/rounds.jsonl",
    params:
        cfg=lambda wc: RULE_RUNS[f"local-only/{wc.cell}"],
    log:
        f"{RESULTS}/logs/runs/local-only/{{cell}}.log",
    wildcard_constraints:
        cell="|".join(re.escape(p.removeprefix("local-only/")) for p in RULE_RUNS if p.startswith("local-only/"))
        or "^$",
    threads: config["threads_per_run"]
    resources:
        mem_mb=config["mem_mb_per_run"],
    script:
        "../../scripts/methods/local_only.py"
