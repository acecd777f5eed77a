# Figures: each draws its study's tables (tables.smk) and computes no statistic itself; PNG for the
# README, PDF beside it for papers. One rule and one script per kind of figure; a named study's figure
# is figures/<study>/<kind>.png, the kind its config names (STUDY_FIGURES). Each figure's caption
# (under it, and in the report) names its setting.


rule convergence:
    conda:
        ENV
    input:
        summary=f"{RESULTS}/tables/curve_summary.csv",
        curves=f"{RESULTS}/tables/curves.csv",
        runs=f"{RESULTS}/tables/runs.csv",
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
    log:
        f"{RESULTS}/logs/figures.log",
    script:
        "../scripts/figures/convergence.py"


use rule convergence as study_convergence with:
    input:
        unpack(study_tables("convergence", summary="curve_summary", curves="curves", runs="runs")),
    output:
        by_round=report(
            f"{FIGURES}/{{study}}/convergence_round.png",
            caption="../report/convergence.rst",
            category="Studies",
            subcategory="{study}",
        ),
        by_round_pdf=f"{FIGURES}/{{study}}/convergence_round.pdf",
        by_bits=report(
            f"{FIGURES}/{{study}}/convergence_bits.png",
            caption="../report/convergence.rst",
            category="Studies",
            subcategory="{study}",
        ),
        by_bits_pdf=f"{FIGURES}/{{study}}/convergence_bits.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}-convergence.log",


rule communication_figure:
    conda:
        ENV
    input:
        comm=f"{RESULTS}/tables/communication.csv",
        to_target=f"{RESULTS}/tables/bits_to_target.csv",
    output:
        png=report(
            f"{FIGURES}/communication.png",
            caption="../report/communication.rst",
            category="3. Communication",
        ),
        pdf=f"{FIGURES}/communication.pdf",
    log:
        f"{RESULTS}/logs/figures-communication.log",
    script:
        "../scripts/figures/communication.py"


rule cost_figure:
    conda:
        ENV
    input:
        cost=f"{RESULTS}/tables/cost.csv",
    output:
        png=report(f"{FIGURES}/cost.png", caption="../report/cost.rst", category="7. Cost"),
        pdf=f"{FIGURES}/cost.pdf",
    log:
        f"{RESULTS}/logs/figures-cost.log",
    script:
        "../scripts/figures/cost.py"


rule robustness_figure:
    conda:
        ENV
    input:
        unpack(study_tables("robustness", final="final_metric", pretrained="pretrained", runs="runs")),
    output:
        png=report(
            f"{FIGURES}/{{study}}/robustness.png",
            caption="../report/robustness.rst",
            category="Studies",
            subcategory="{study}",
        ),
        pdf=f"{FIGURES}/{{study}}/robustness.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}-robustness.log",
    script:
        "../scripts/figures/robustness.py"


rule heterogeneity_figure:
    conda:
        ENV
    input:
        unpack(study_tables("heterogeneity", final="final_metric", pretrained="pretrained", runs="runs")),
    output:
        png=report(
            f"{FIGURES}/{{study}}/heterogeneity.png",
            caption="../report/heterogeneity.rst",
            category="Studies",
            subcategory="{study}",
        ),
        pdf=f"{FIGURES}/{{study}}/heterogeneity.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}-heterogeneity.log",
    script:
        "../scripts/figures/heterogeneity.py"


rule sweep_figure:
    conda:
        ENV
    input:
        unpack(study_tables("sweep", final="final_metric", pretrained="pretrained", runs="runs")),
    output:
        png=report(
            f"{FIGURES}/{{study}}/sweep.png",
            caption="../report/sweep.rst",
            category="Studies",
            subcategory="{study}",
        ),
        pdf=f"{FIGURES}/{{study}}/sweep.pdf",
    params:
        axes=lambda wc: grid_axes(wc.study),
    log:
        f"{RESULTS}/logs/figures-{{study}}-sweep.log",
    script:
        "../scripts/figures/sweep.py"


rule oneshot_gap_figure:
    conda:
        ENV
    input:
        unpack(study_tables("oneshot", gap="gap", runs="runs")),
    output:
        png=report(
            f"{FIGURES}/{{study}}/oneshot_gap.png",
            caption="../report/oneshot_gap.rst",
            category="Studies",
            subcategory="{study}",
        ),
        pdf=f"{FIGURES}/{{study}}/oneshot_gap.pdf",
    log:
        f"{RESULTS}/logs/figures-{{study}}-oneshot_gap.log",
    script:
        "../scripts/figures/oneshot_gap.py"
