"""model.layers: a smaller member of a pretrained family, by keeping its first blocks."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from zofo.assets.models import load_model
from zofo.core.config import ModelConfig, RunConfig
from zofo.core.errors import ConfigError


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_first_blocks_kept_with_their_weights(name):
    full = load_model(ModelConfig(name=name), seed=3)
    cut = load_model(ModelConfig(name=name, layers=1), seed=3)
    full_sd, cut_sd = full.model.state_dict(), cut.model.state_dict()
    # Every kept tensor is the full model's, untouched; only the second block's tensors are gone.
    assert set(cut_sd) < set(full_sd)
    assert all(torch.equal(cut_sd[k], full_sd[k]) for k in cut_sd)
    dropped = set(full_sd) - set(cut_sd)
    assert dropped and all(".1." in k for k in dropped), sorted(dropped)
    assert cut.model.config.num_hidden_layers == 1
    assert n_params(cut.model) < n_params(full.model)
    assert "first 1 of 2 blocks" in cut.source
    ids = torch.tensor([[101, 2023, 2003, 102]])
    out = cut.model(input_ids=ids)
    assert torch.isfinite(out[0]).all()


def test_too_many_or_too_few_layers_are_refused_with_the_key_named():
    with pytest.raises(ConfigError, match=r"model\.layers.*between 1 and 2"):
        load_model(ModelConfig(name="tiny-llama", layers=3))
    with pytest.raises(ConfigError, match=r"model\.layers"):
        ModelConfig(name="tiny-llama", layers=0)


def test_unset_layers_keep_the_config_hash_of_earlier_runs():
    # A run config written before model.layers existed (no such key) and the same config read now
    # must be one experiment; setting layers makes it another.
    base = {"model": {"name": "tiny-llama"}, "method": {"name": "fedavg"}}
    before = RunConfig.from_dict(base)
    data = before.to_dict()
    assert data["model"]["layers"] is None
    cut = RunConfig.from_dict({**base, "model": {"name": "tiny-llama", "layers": 1}})
    assert cut.hash() != before.hash()
    # The hash of the config as it was serialised before the key existed (and before the robustness
    # sections, the dtype, the ZO generator and batched clients, likewise hashed only when set, and the
    # device, never hashed, nor assets_dir, checkpoint and the directions cache), computed here by hand.
    del data["model"]["layers"], data["byzantine"], data["aggregator"], data["device"], data["dtype"]
    del data["assets_dir"], data["checkpoint"]
    del data["zo"]["generator"], data["zo"]["batch_clients"], data["zo"]["cache_mb"]
    by_hand = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert before.hash() == by_hand
