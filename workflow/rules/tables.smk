# Tables read run folders (never logs); figures read tables and run rows.


rule final_table:
    conda:
        ENV
    input:
        all_run_meta(),
    output:
        csv=f"{RESULTS}/tables/final_metric.csv",
        md=f"{RESULTS}/tables/final_metric.md",
        comm=f"{RESULTS}/tables/communication.csv",
    log:
        f"{RESULTS}/logs/tables.log",
    script:
        "../scripts/tables.py"


rule study_table:
    conda:
        ENV
    input:
        lambda wc: study_meta(wc.study),
    output:
        csv=f"{RESULTS}/tables/{{study}}/final_metric.csv",
        md=f"{RESULTS}/tables/{{study}}/final_metric.md",
        comm=f"{RESULTS}/tables/{{study}}/communication.csv",
    log:
        f"{RESULTS}/logs/tables-{{study}}.log",
    wildcard_constraints:
        study="|".join(EXTRA_STUDIES) or "^$",
    script:
        "../scripts/tables.py"
