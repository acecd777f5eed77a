"""The wire codec: payloads round-trip bit for bit, and the bits counted are the exact formula."""

from __future__ import annotations

import pytest
import torch
from conftest import devices

from zofo.engine.comm import decode, encode, payload_bits, spec_of, transmit

# Wire width per element, written out independently of torch's element_size().
WIDTH = {torch.bool: 1, torch.float32: 32, torch.bfloat16: 16, torch.uint32: 32, torch.float16: 16}


def sample_payload() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "flags": torch.rand(13, generator=g) > 0.5,  # 13 bits: not a whole number of bytes
        "values": torch.randn(3, 4, generator=g),
        "half": torch.randn(5, generator=g).to(torch.bfloat16),
        "seeds": torch.tensor([0, 1, 2**31, 2**32 - 1], dtype=torch.uint32),
        "one_bit": torch.tensor([True]),
        "scalar": torch.tensor(2.5),
    }


def expected_bits(payload: dict[str, torch.Tensor]) -> int:
    total = 0
    for t in payload.values():
        n = 1
        for s in t.shape:
            n *= s
        total += n * WIDTH[t.dtype]
    return total


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        # bitwise equality (NaN-safe for floats): compare the raw bit patterns
        if a[k].dtype.is_floating_point:
            ia = a[k].view(torch.int16 if a[k].element_size() == 2 else torch.int32)
            ib = b[k].view(torch.int16 if b[k].element_size() == 2 else torch.int32)
            assert torch.equal(ia, ib), k
        else:
            assert torch.equal(a[k], b[k]), k


def test_round_trip_all_field_types():
    p = sample_payload()
    assert_same(decode(encode(p), spec_of(p)), p)
    received, bits = transmit(p)
    assert_same(received, p)
    assert bits == expected_bits(p)


@pytest.mark.parametrize(
    "tensor",
    [
        torch.tensor([True, False, True]),
        torch.ones(8, dtype=torch.bool),
        torch.zeros(9, dtype=torch.bool),
        torch.tensor([1.5, -0.0, float("inf"), float("nan"), 1e-45]),
        torch.tensor([1.0, -2.0, 3.3e38, 1e-40]).to(torch.bfloat16),
        torch.tensor([0, 7, 2**32 - 1], dtype=torch.uint32),
    ],
    ids=["bool3", "bool8", "bool9", "float32-specials", "bfloat16", "uint32-extremes"],
)
def test_single_field_round_trip_and_bits(tensor):
    p = {"x": tensor}
    received, bits = transmit(p)
    assert_same(received, p)
    assert bits == payload_bits(p) == tensor.numel() * WIDTH[tensor.dtype]


def test_bool_is_one_bit_each_and_packed():
    p = {"b": torch.ones(17, dtype=torch.bool)}
    assert payload_bits(p) == 17
    assert len(encode(p)) == 3  # ceil(17 / 8) bytes on the wire


def test_bits_formula_on_a_mixed_payload():
    p = sample_payload()
    assert payload_bits(p) == 13 * 1 + 12 * 32 + 5 * 16 + 4 * 32 + 1 + 32


def test_encoded_length_matches_bits_for_byte_aligned_fields():
    p = {k: v for k, v in sample_payload().items() if v.dtype != torch.bool}
    assert 8 * len(encode(p)) == payload_bits(p)


def test_decode_rejects_trailing_bytes():
    p = {"v": torch.ones(2)}
    with pytest.raises(ValueError, match="consumed"):
        decode(encode(p) + b"\x00", spec_of(p))


def test_decoded_tensors_do_not_alias_the_sender():
    p = {"v": torch.zeros(4)}
    received, _ = transmit(p)
    p["v"].add_(1.0)
    assert torch.equal(received["v"], torch.zeros(4))


def test_decode_rebuilds_every_field_on_the_requested_device():
    # meta exists on every machine: a field left on the CPU would show here as a cpu tensor.
    p = sample_payload()
    received, bits = transmit(p, device="meta")
    assert bits == expected_bits(p)
    for k, v in p.items():
        assert received[k].device.type == "meta", k
        assert received[k].dtype == v.dtype and received[k].shape == v.shape, k


@pytest.mark.parametrize("device", devices())
def test_round_trip_onto_a_device_keeps_the_bits(device):
    p = {k: v.to(device) for k, v in sample_payload().items()}
    received, _ = transmit(p, device=device)
    for k in p:
        assert received[k].device.type == torch.device(device).type, k
    # the sender's tensors may live on the device too: encode reads them back from wherever they are
    assert_same({k: v.cpu() for k, v in received.items()}, sample_payload())
