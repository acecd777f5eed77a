"""The wire codec: payloads are serialised to bytes, counted, and decoded before the server sees them.

Bits are measured, not assumed: the count is the exact length of the encoded fields (bool tensors
are packed 8 to a byte and counted one bit each; every other tensor counts its dtype's width per
element). Shapes and dtypes are protocol knowledge shared by both ends (fixed by the method and the
model), so no header travels. The server aggregates the *decoded* payload, so anything a method
forgot to put on the wire cannot reach the server. The receiver rebuilds the tensors on the device it
holds its model on (``device``), wherever the sender computed them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zofo.methods.base import Payload


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def bits(self) -> int:
        return self.numel * (
            1 if self.dtype == torch.bool else torch.empty((), dtype=self.dtype).element_size() * 8
        )


def spec_of(payload: Payload) -> list[FieldSpec]:
    return [FieldSpec(k, v.dtype, tuple(v.shape)) for k, v in payload.items()]


def payload_bits(payload: Payload) -> int:
    """Exact bits of the payload's wire form."""
    return sum(f.bits for f in spec_of(payload))


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: ship the raw 16-bit patterns
        return t.view(torch.int16).numpy()
    return t.numpy()


def encode(payload: Payload) -> bytes:
    parts = []
    for t in payload.values():
        if t.dtype == torch.bool:
            parts.append(np.packbits(_to_numpy(t).reshape(-1)).tobytes())
        else:
            parts.append(_to_numpy(t).tobytes())
    return b"".join(parts)


def decode(blob: bytes, spec: list[FieldSpec], device: torch.device | str = "cpu") -> Payload:
    """The payload of ``spec`` from its wire bytes, its tensors on ``device``."""
    device = torch.device(device)
    out: Payload = {}
    offset = 0
    for f in spec:
        if f.dtype == torch.bool:
            nbytes = (f.numel + 7) // 8
            bits = np.unpackbits(np.frombuffer(blob, np.uint8, nbytes, offset))[: f.numel]
            out[f.name] = torch.from_numpy(bits.astype(bool)).reshape(f.shape).to(device)
        else:
            width = torch.empty((), dtype=f.dtype).element_size()
            nbytes = f.numel * width
            raw = np.frombuffer(blob, np.uint8, nbytes, offset).copy()
            if f.dtype == torch.bfloat16:
                t = torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
            else:
                t = torch.from_numpy(raw).view(f.dtype)
            out[f.name] = t.reshape(f.shape).to(device)
        offset += nbytes
    if offset != len(blob):
        raise ValueError(f"payload decode consumed {offset} of {len(blob)} bytes")
    return out


def transmit(payload: Payload, device: torch.device | str = "cpu") -> tuple[Payload, int]:
    """Send a payload over the simulated wire: returns what the receiver decodes on ``device``, and
    the bits sent."""
    spec = spec_of(payload)
    return decode(encode(payload), spec, device), sum(f.bits for f in spec)
