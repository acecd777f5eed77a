# Tables. A study's run folders become its run table (one row per run) and its curve table (one row
# per run and evaluated round), both carrying each run's grid cell; every other table, every figure
# and the claims read those tables, never the run folders. The main study's tables are in
# RESULTS/tables, a named study's in RESULTS/tables/<study>. Each rule has one script, and every
# script reads exactly the rule's inputs.


include: "analysis.smk"


wildcard_constraints:
    study=r"[^/]+",


rule run_tables:
    conda:
        ENV
    input:
        unpack(lambda wc: run_files(study.MAIN)),
    output:
        runs=f"{RESULTS}/tables/runs.csv",
        curves=f"{RESULTS}/tables/curves.csv",
    params:
        axes=lambda wc: grid_axes(study.MAIN),
        declared=lambda wc: declared_configs(study.MAIN),
    log:
        f"{RESULTS}/logs/tables-runs.log",
    script:
        "../scripts/tables/runs.py"


use rule run_tables as study_run_tables with:
    input:
        unpack(lambda wc: run_files(wc.study)),
    output:
        runs=f"{RESULTS}/tables/{{study}}/runs.csv",
        curves=f"{RESULTS}/tables/{{study}}/curves.csv",
    params:
        axes=lambda wc: grid_axes(wc.study),
        declared=lambda wc: declared_configs(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}-runs.log",


rule final_table:
    conda:
        ENV
    input:
        runs=f"{RESULTS}/tables/runs.csv",
        reported=REPORTED,
    output:
        csv=report(
            f"{RESULTS}/tables/final_metric.csv",
            caption="../report/final_metric.rst",
            category="1. Main table",
        ),
        md=f"{RESULTS}/tables/final_metric.md",
        tex=f"{RESULTS}/tables/final_metric.tex",
        pretrained=f"{RESULTS}/tables/pretrained.csv",
    params:
        axes=lambda wc: grid_axes(study.MAIN),
    log:
        f"{RESULTS}/logs/tables.log",
    script:
        "../scripts/tables/final_main.py"


rule study_final_table:
    conda:
        ENV
    input:
        runs=f"{RESULTS}/tables/{{study}}/runs.csv",
    output:
        csv=report(
            f"{RESULTS}/tables/{{study}}/final_metric.csv",
            caption="../report/study_table.rst",
            category="Studies",
            subcategory="{study}",
        ),
        md=f"{RESULTS}/tables/{{study}}/final_metric.md",
        pretrained=f"{RESULTS}/tables/{{study}}/pretrained.csv",
    params:
        axes=lambda wc: grid_axes(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}.log",
    script:
        "../scripts/tables/final_study.py"


rule communication_table:
    conda:
        ENV
    input:
        runs=f"{RESULTS}/tables/runs.csv",
    output:
        csv=report(
            f"{RESULTS}/tables/communication.csv",
            caption="../report/communication_table.rst",
            category="3. Communication",
        ),
    params:
        axes=lambda wc: grid_axes(study.MAIN),
    log:
        f"{RESULTS}/logs/tables-communication.log",
    script:
        "../scripts/tables/communication.py"


use rule communication_table as study_communication_table with:
    input:
        runs=f"{RESULTS}/tables/{{study}}/runs.csv",
    output:
        csv=f"{RESULTS}/tables/{{study}}/communication.csv",
    params:
        axes=lambda wc: grid_axes(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}-communication.log",


rule cost_table:
    conda:
        ENV
    input:
        runs=f"{RESULTS}/tables/runs.csv",
    output:
        csv=report(f"{RESULTS}/tables/cost.csv", caption="../report/cost_table.rst", category="7. Cost"),
        md=f"{RESULTS}/tables/cost.md",
    params:
        axes=lambda wc: grid_axes(study.MAIN),
    log:
        f"{RESULTS}/logs/tables-cost.log",
    script:
        "../scripts/tables/cost.py"


rule target_table:
    conda:
        ENV
    input:
        runs=f"{RESULTS}/tables/runs.csv",
        curves=f"{RESULTS}/tables/curves.csv",
    output:
        csv=f"{RESULTS}/tables/bits_to_target.csv",
    params:
        axes=lambda wc: grid_axes(study.MAIN),
    log:
        f"{RESULTS}/logs/tables-target.log",
    script:
        "../scripts/tables/target.py"


rule curve_summary:
    conda:
        ENV
    input:
        curves=f"{RESULTS}/tables/curves.csv",
    output:
        csv=f"{RESULTS}/tables/curve_summary.csv",
    params:
        axes=lambda wc: grid_axes(study.MAIN),
    log:
        f"{RESULTS}/logs/tables-curve-summary.log",
    script:
        "../scripts/tables/curve_summary.py"


use rule curve_summary as study_curve_summary with:
    input:
        curves=f"{RESULTS}/tables/{{study}}/curves.csv",
    output:
        csv=f"{RESULTS}/tables/{{study}}/curve_summary.csv",
    params:
        axes=lambda wc: grid_axes(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}-curve-summary.log",


rule gap_table:
    conda:
        ENV
    input:
        final=f"{RESULTS}/tables/{{study}}/final_metric.csv",
    output:
        csv=f"{RESULTS}/tables/{{study}}/gap.csv",
    params:
        axes=lambda wc: grid_axes(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}-gap.log",
    script:
        "../scripts/tables/gap.py"


rule claims:
    conda:
        ENV
    input:
        unpack(claim_tables),
    output:
        csv=report(f"{RESULTS}/tables/claims.csv", caption="../report/claims.rst", category="9. Claims"),
        md=f"{RESULTS}/tables/claims.md",
    log:
        f"{RESULTS}/logs/claims.log",
    script:
        "../scripts/claims.py"
