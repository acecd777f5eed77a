# The performance bench: not part of `rule all`, since it measures this machine rather than
# the study. Run it on its own:  snakemake --cores all bench
# Every number comes from one `zofo bench` process (ratios are taken within that one run); the default
# models include smollm2-135m, so the converted checkpoint is an input.


rule bench:
    conda:
        ENV
    input:
        str(prepared_weights("smollm2-135m", ASSETS)),
    output:
        csv=f"{RESULTS}/bench/bench.csv",
        md=f"{RESULTS}/bench/bench.md",
        png=f"{FIGURES}/bench/scaling.png",
        pdf=f"{FIGURES}/bench/scaling.pdf",
    log:
        f"{RESULTS}/logs/bench.log",
    params:
        # Folders derived from the files (not hardcoded prefixes): lint-clean, and they cannot disagree.
        out=lambda wc, output: Path(output.csv).parent,
        figures=lambda wc, output: Path(output.png).parent,
        assets=lambda wc, input: Path(input[0]).parents[2],  # ASSETS/models/smollm2-135m/model.safetensors
    # All the cores Snakemake has, so that no other job shares the machine with the timings. The bench's
    # own torch threads stay its option's (2; zofo.bench.options): its ratios are quoted at that count,
    # whatever the machine. Snakemake caps a rule's threads at --cores; a number rather than
    # workflow.cores, which commands without --cores (`snakemake --report`) cannot evaluate.
    threads: 1024
    script:
        "../scripts/bench.py"
