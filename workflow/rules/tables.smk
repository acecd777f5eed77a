# Tables read run folders (never logs); figures read tables and run rows.


rule final_table:
    conda:
        ENV
    input:
        runs=all_run_meta(),
        reported=REPORTED,
    output:
        csv=report(
            f"{RESULTS}/tables/final_metric.csv",
            caption="../report/final_metric.rst",
            category="1. Main table",
        ),
        md=f"{RESULTS}/tables/final_metric.md",
        tex=f"{RESULTS}/tables/final_metric.tex",
        comm=report(
            f"{RESULTS}/tables/communication.csv",
            caption="../report/communication_table.rst",
            category="3. Communication",
        ),
        cost=report(f"{RESULTS}/tables/cost.csv", caption="../report/cost_table.rst", category="7. Cost"),
        cost_md=f"{RESULTS}/tables/cost.md",
        to_target=f"{RESULTS}/tables/bits_to_target.csv",
    log:
        f"{RESULTS}/logs/tables.log",
    script:
        "../scripts/tables.py"


rule study_table:
    conda:
        ENV
    input:
        runs=lambda wc: study_meta(wc.study),
    output:
        csv=report(
            f"{RESULTS}/tables/{{study}}/final_metric.csv",
            caption="../report/study_table.rst",
            category="Studies",
            subcategory="{study}",
        ),
        md=f"{RESULTS}/tables/{{study}}/final_metric.md",
        comm=f"{RESULTS}/tables/{{study}}/communication.csv",
    params:
        # Grid axes that are not already row columns (a swept K or eps, model.layers): attached to the
        # rows from each run's config so that the table keeps one row per value.
        extra=lambda wc: extra_axes(wc.study),
    log:
        f"{RESULTS}/logs/tables-{{study}}.log",
    wildcard_constraints:
        study="|".join(EXTRA_STUDIES) or "^$",
    script:
        "../scripts/tables.py"


rule claims:
    conda:
        ENV
    input:
        main=f"{RESULTS}/tables/final_metric.csv",
        comm=f"{RESULTS}/tables/communication.csv",
        cost=f"{RESULTS}/tables/cost.csv",
        to_target=f"{RESULTS}/tables/bits_to_target.csv",
        studies=[f"{RESULTS}/tables/{s}/final_metric.csv" for s in claim_studies().values()],
    output:
        csv=report(f"{RESULTS}/tables/claims.csv", caption="../report/claims.rst", category="9. Claims"),
        md=f"{RESULTS}/tables/claims.md",
    params:
        studies=claim_studies(),
    log:
        f"{RESULTS}/logs/claims.log",
    script:
        "../scripts/claims.py"
