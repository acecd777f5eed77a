# Figures read the run rows (through zofo.analysis.load.load_runs) and the tables; PNG for the README, PDF
# beside it for papers. Each figure's caption (under it, and in the report) names its setting.


rule convergence:
    conda:
        ENV
    input:
        runs=all_run_meta(),
        table=f"{RESULTS}/tables/final_metric.csv",
    output:
        by_round=report(
            f"{FIGURES}/convergence_round.png",
            caption="../report/convergence.rst",
            category="2. Convergence",
        ),
        by_round_pdf=f"{FIGURES}/convergence_round.pdf",
        by_bits=report(
            f"{FIGURES}/convergence_bits.png",
            caption="../report/convergence.rst",
            category="2. Convergence",
        ),
        by_bits_pdf=f"{FIGURES}/convergence_bits.pdf",
    params:
        kind="convergence",
    log:
        f"{RESULTS}/logs/figures.log",
    script:
        "../scripts/figures.py"


rule communication_and_cost:
    conda:
        ENV
    input:
        comm=f"{RESULTS}/tables/communication.csv",
        to_target=f"{RESULTS}/tables/bits_to_target.csv",
        cost=f"{RESULTS}/tables/cost.csv",
    output:
        communication=report(
            f"{FIGURES}/communication.png",
            caption="../report/communication.rst",
            category="3. Communication",
        ),
        communication_pdf=f"{FIGURES}/communication.pdf",
        cost=report(f"{FIGURES}/cost.png", caption="../report/cost.rst", category="7. Cost"),
        cost_pdf=f"{FIGURES}/cost.pdf",
    params:
        kind="communication_and_cost",
    log:
        f"{RESULTS}/logs/figures-communication-cost.log",
    script:
        "../scripts/figures.py"


rule study_figure:
    conda:
        ENV
    input:
        runs=lambda wc: study_meta(wc.study),
        table=f"{RESULTS}/tables/{{study}}/final_metric.csv",
    output:
        png=report(
            f"{FIGURES}/{{study}}/{{figure}}.png",
            caption="../report/study_figure.rst",
            category="Studies",
            subcategory="{study}",
        ),
        pdf=f"{FIGURES}/{{study}}/{{figure}}.pdf",
    params:
        kind=lambda wc: STUDIES[wc.study]["figure"],
        extra=lambda wc: extra_axes(wc.study),
    log:
        f"{RESULTS}/logs/figures-{{study}}-{{figure}}.log",
    wildcard_constraints:
        study="|".join(EXTRA_STUDIES) or "^$",
        figure="|".join(sorted({f for fs in STUDY_FIGURES.values() for f in fs})),
    script:
        "../scripts/figures.py"
