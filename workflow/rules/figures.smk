# Figures read the run rows (through zofo.results.load_runs) and the final table; PNG for the README,
# PDF beside it for papers.


rule convergence:
    conda:
        ENV
    input:
        runs=all_run_meta(),
        table=f"{RESULTS}/tables/final_metric.csv",
    output:
        by_round=f"{FIGURES}/convergence_round.png",
        by_round_pdf=f"{FIGURES}/convergence_round.pdf",
        by_bits=f"{FIGURES}/convergence_bits.png",
        by_bits_pdf=f"{FIGURES}/convergence_bits.pdf",
    log:
        f"{RESULTS}/logs/figures.log",
    script:
        "../scripts/figures.py"


rule study_convergence:
    conda:
        ENV
    input:
        runs=lambda wc: study_meta(wc.study),
        table=f"{RESULTS}/tables/{{study}}/final_metric.csv",
    output:
        by_round=f"{FIGURES}/{{study}}/convergence_round.png",
        by_round_pdf=f"{FIGURES}/{{study}}/convergence_round.pdf",
        by_bits=f"{FIGURES}/{{study}}/convergence_bits.png",
        by_bits_pdf=f"{FIGURES}/{{study}}/convergence_bits.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}.log",
    wildcard_constraints:
        study="|".join(n for n in EXTRA_STUDIES if STUDIES[n]["figure"] == "convergence") or "^$",
    script:
        "../scripts/figures.py"


rule robustness:
    conda:
        ENV
    input:
        runs=lambda wc: study_meta(wc.study),
        table=f"{RESULTS}/tables/{{study}}/final_metric.csv",
    output:
        robustness=f"{FIGURES}/{{study}}/robustness.png",
        robustness_pdf=f"{FIGURES}/{{study}}/robustness.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}.log",
    wildcard_constraints:
        study="|".join(n for n in EXTRA_STUDIES if STUDIES[n]["figure"] == "robustness") or "^$",
    script:
        "../scripts/figures.py"
