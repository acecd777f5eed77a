"""Seeded directions that every device regenerates bit for bit: Philox4x32-10 and an integer normal.

Shared-seed methods (FeedSign, ZO-FedSGD, FedKSeed, Ferret) only work if the client's z(s) and the
server's z(s) are the same vector. Stock seeded ``randn`` does not give that across hardware: on the CPU
its fp32 values depend on the instruction set the kernel was dispatched to (vectorised log/cos), on CUDA
on the GPU's multiprocessor count once a tensor exceeds one launch wave, and CPU and CUDA streams never
match. This module defines numbers that are a pure function of (seed, stream, position):

    key      = (seed mod 2^32, floor(seed / 2^32) mod 2^32)
    word(i)  = Philox4x32-10(counter = (b mod 2^32, floor(b / 2^32), stream mod 2^32, 0), key)[i mod 4],
               b = floor(i / 4)
    normal   = sign * Q(w) with sign the word's top bit, w = 2^31 - 1 - (word mod 2^31) and
               Q(w) ~ Phi_bar^-1((w + 1/2) / 2^32), the upper-tail quantile of N(0, 1)

Philox4x32-10 (Salmon et al., SC 2011; the generator of cuRAND and JAX) uses only 32x32-bit multiplies,
xors and adds. Q is evaluated in fixed point, in units of 2^-40, by linear interpolation between shipped
integer knots (``zofo.core._normal_knots``): the 64 tail-most values of w exactly, then 64 knots per octave
of w. Everything up to the last step is integer arithmetic, which no device, instruction set, thread
count, fusion or compiler can round differently; the last step converts the integer to float64 (exact
below 2^53), scales by 2^-40 (exact) and rounds once to the target dtype (IEEE round-to-nearest-even
everywhere). So the normals are bitwise identical on every device, including CPU against GPU.

Quality: the interpolated quantile is within 1.3e-5 of the exact one (largest in the bulk, where an
octave of w spans most of a standard deviation; tested against an independent quantile), which moves
the distribution function by at most 5e-6 anywhere: no test short of about 10^11 draws can tell it from
N(0, 1). The 31 magnitude bits reach |z| = 6.34 (torch's Box-Muller on 24-bit uniforms reaches 5.7).

Speed: on the CPU the numbers come from a small C kernel (``zofo.core._philox``, compiled when the package
is installed), run on the torch threads; a pure-torch implementation (any device) gives the same bits
and is the fallback and the GPU path, where ``torch.compile`` fuses it into one kernel.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from zofo.core._normal_knots import KNOTS

try:  # the C kernel; absent where the package was not compiled (then the torch path gives the same bits)
    from zofo.core import _philox as _c
except ImportError:  # pragma: no cover - depends on the install
    _c = None

# Which implementation fills CPU tensors: "auto" (the C kernel, AVX2 where the CPU has it), "c-scalar"
# (the C kernel without SIMD) or "torch" (the torch ops). All give the same bits; the tests and the
# bench use this to compare them.
KERNEL_ENV = "ZOFO_PHILOX_KERNEL"
_choice = os.environ.get(KERNEL_ENV, "auto")
if _choice not in ("auto", "c-scalar", "torch"):
    raise ValueError(f"{KERNEL_ENV}: got {_choice!r}; allowed: 'auto', 'c-scalar' or 'torch'")
if _choice == "torch":
    _c = None
elif _choice == "c-scalar" and _c is not None:
    _c.use_scalar()

GENERATORS = ("torch", "philox")
DESCRIPTION = {
    "torch": "torch.Generator(cpu, mt19937).randn per parameter, in parameters() order",
    "philox": "Philox4x32-10 keyed by the seed, counter (position/4, parameter index); integer "
    "fixed-point inverse-CDF normals (zofo.core.philox); bitwise identical on every device",
}

_M32 = 0xFFFFFFFF
_M31 = 0x7FFFFFFF
_MUL = (0xD2511F53, 0xCD9E8D57)
_WEYL = (0x9E3779B9, 0xBB67AE85)
_SUB = 6  # 2^6 knots per octave of w
_FRAC = 40  # fixed point: units of 2^-40
_SCALE = 2.0**-_FRAC
_SQRT2 = math.sqrt(2.0)


def key_of(seed: int) -> tuple[int, int]:
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed: got {seed}; allowed: an integer in [0, 2**64)")
    return seed & _M32, (seed >> 32) & _M32


def philox4x32(c: list[torch.Tensor], key: tuple[int, int]) -> list[torch.Tensor]:
    """Philox4x32-10 on four int64 tensors holding 32-bit counter words; returns the four output words.

    int64 products of two 32-bit values can pass 2^63: they wrap modulo 2^64 on every backend, and
    the high and low halves are read back with a shift and a mask, which wrapping leaves intact."""
    k0, k1 = key
    c0, c1, c2, c3 = c
    for _ in range(10):
        p0 = c0 * _MUL[0]
        p1 = c2 * _MUL[1]
        c0, c1, c2, c3 = (
            ((p1 >> 32) & _M32) ^ c1 ^ k0,
            p1 & _M32,
            ((p0 >> 32) & _M32) ^ c3 ^ k1,
            p0 & _M32,
        )
        k0 = (k0 + _WEYL[0]) & _M32
        k1 = (k1 + _WEYL[1]) & _M32
    return [c0, c1, c2, c3]


def _words(key_stream_block: torch.Tensor, skip: int, n: int) -> torch.Tensor:
    """Words skip..skip+n of the blocks from key_stream_block[3] on, for key words [0], [1] and stream
    [2] (an int64 tensor on the target device, so that a compiled caller sees no Python scalar that
    changes between calls)."""
    k0, k1, stream, first = key_stream_block.unbind()
    blocks = torch.arange((skip + n + 3) // 4, dtype=torch.int64, device=key_stream_block.device) + first
    c = [blocks & _M32, blocks >> 32, stream.expand_as(blocks), torch.zeros_like(blocks)]
    return torch.stack(philox4x32(c, (k0, k1)), dim=1).reshape(-1)[skip : skip + n]


def _stream(stream: int) -> int:
    # Checked on every path: the C kernel would otherwise take a stream past 2^32 modulo 2^32.
    if not 0 <= int(stream) <= _M32:
        raise ValueError(f"stream: got {stream}; allowed: an integer in [0, 2**32)")
    return int(stream)


def _scalars(seed: int, stream: int, start: int, device: torch.device | str) -> torch.Tensor:
    _stream(stream)
    if int(start) < 0:
        raise ValueError(f"start: got {start}; allowed: an integer >= 0")
    return torch.tensor([*key_of(seed), int(stream), int(start) // 4], dtype=torch.int64, device=device)


def raw_words(seed: int, stream: int, start: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 32-bit words of positions start..start+n of (seed, stream), as int64 (pure torch)."""
    return _words(_scalars(seed, stream, start, device), start % 4, n)


class _Knots:
    """The knot table and its slopes on one device (built once per device); on the CPU also
    interleaved as (knot, slope) pairs for the C kernel, which reads both with one load."""

    _cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
    _pairs: torch.Tensor | None = None

    @classmethod
    def get(cls, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in cls._cache:
            a = torch.tensor(KNOTS, dtype=torch.int64, device=device)
            cls._cache[device] = (a[:-1].contiguous(), (a[:-1] - a[1:]).contiguous())
        return cls._cache[device]

    @classmethod
    def pairs(cls) -> torch.Tensor:
        if cls._pairs is None:
            cls._pairs = torch.stack(cls.get(torch.device("cpu")), dim=1).contiguous()
        return cls._pairs


def _magnitude(w: torch.Tensor) -> torch.Tensor:
    """Q(w) in units of 2^-40 for int64 w in [0, 2^31): the segment of w is read off its float64
    exponent and top mantissa bits (exact: w < 2^53), then linear interpolation in integers."""
    knots, slopes = _Knots.get(w.device)
    bits = w.to(torch.float64).view(torch.int64)
    octave = ((bits >> 52) - 1023).clamp_(min=_SUB)  # floor(log2 w), at least 6
    shift = octave - _SUB
    mant = (bits >> (52 - _SUB)) & ((1 << _SUB) - 1)  # the 6 bits after w's leading one
    seg = (octave - (_SUB - 1)) * (1 << _SUB) + mant
    offset = w - (((1 << _SUB) + mant) << shift)
    exact = w < (1 << _SUB)  # the 64 tail-most values have a knot each
    seg = torch.where(exact, w, seg)
    offset = torch.where(exact, 0, offset)
    return knots[seg] - ((slopes[seg] * offset) >> shift)


def _to_float(fixed: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # int64 -> float64 is exact below 2^53 and the power-of-two scale is exact: one rounding, into out.
    return out.copy_(fixed.to(torch.float64).mul_(_SCALE).view(out.shape))


def _signed(words: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return torch.where((words >> 31).bool(), -magnitude, magnitude)


def _normal_core(scalars: torch.Tensor, skip: int, out: torch.Tensor) -> torch.Tensor:
    words = _words(scalars, skip, out.numel())
    return _to_float(_signed(words, _magnitude(_M31 - (words & _M31))), out)


def _normal_torch(
    seed: int, stream: int, start: int, out: torch.Tensor, fuse: bool | None = None
) -> torch.Tensor:
    path = _torch_path("normal", out.device, fuse)
    return path(_scalars(seed, stream, start, out.device), start % 4, out)


def truncation(c: float) -> tuple[int, int, int]:
    """(w_lo, span, cap) of N(0, 1) truncated to [-c, c]: w runs over [w_lo, 2^31), the upper-tail
    probabilities (w + 1/2) / 2^32 of [0, c], and magnitudes are capped at c (in units of 2^-40).
    Computed with float64 +, *, / and sqrt only, which round the same on every machine."""
    c = float(c)
    if not 0.0 < c <= 1.0:
        raise ValueError(f"truncation bound: got {c}; allowed: a number in (0, 1]")
    mass = _erf(c / _SQRT2)  # P(|Z| <= c)
    w_lo = math.ceil((1.0 - mass) * 2.0**31 - 0.5)
    return w_lo, (1 << 31) - w_lo, math.floor(c * 2.0**_FRAC)


def _erf(x: float) -> float:
    """erf by its Maclaurin series, for 0 <= x <= 1 (terms shrink by x^2 / n; 40 reach 1e-30)."""
    term, total = x, x
    for n in range(1, 40):
        term *= -x * x / n
        total += term / (2 * n + 1)
    return total * 2.0 / math.sqrt(math.pi)


def _truncated_core(scalars: torch.Tensor, bounds: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    words = _words(scalars, 0, out.numel())
    w_lo, span, cap = bounds.unbind()
    w = w_lo + (((words & _M31) * span) >> 31)
    return _to_float(_signed(words, torch.minimum(_magnitude(w), cap)), out)


def _truncated_torch(
    seed: int, stream: int, c: float, out: torch.Tensor, fuse: bool | None = None
) -> torch.Tensor:
    bounds = torch.tensor(truncation(c), dtype=torch.int64, device=out.device)
    return _torch_path("truncated", out.device, fuse)(_scalars(seed, stream, 0, out.device), bounds, out)


def torch_normal_(
    out: torch.Tensor, seed: int, stream: int, start: int = 0, *, fuse: bool | None = None
) -> torch.Tensor:
    """``normal_`` through the torch ops on ``out``'s device, never the C kernel (contiguous float32 or
    float64 ``out``). ``fuse``: None fuses where ZOFO_PHILOX_COMPILE says (CUDA by default), True always
    (a compile failure is raised, not hidden), False never. For benchmarks and tests of the paths."""
    key_of(seed)
    return _normal_torch(seed, stream, start, out, fuse)


# ---- the C kernel on the CPU, split across the torch threads ----------------------------------------

_POOL: ThreadPoolExecutor | None = None
_MIN_PER_THREAD = 1 << 15  # below this a thread hand-off costs more than it saves


def _c_fill(fill: Callable[..., None], out: torch.Tensor, start: int, *args: int | float) -> None:
    """Run a C fill over out (float32 or float64, contiguous, CPU), split into contiguous parts on the
    torch threads: every element is a function of its position, so the split changes no number."""
    global _POOL
    args = (_Knots.pairs().data_ptr(), *args)
    flat = out.view(-1)
    n = flat.numel()
    parts = max(1, min(torch.get_num_threads(), n // _MIN_PER_THREAD))
    if parts == 1:
        fill(flat.data_ptr(), n, start, flat.element_size(), *args)
        return
    if _POOL is None or _POOL._max_workers < parts:
        _POOL = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="zofo-philox")
    step = -(-n // parts)
    step += -step % 4  # parts start on a Philox block: each block is computed once
    futures = []
    for a in range(0, n, step):
        b = min(a + step, n)
        ptr = flat[a:b].data_ptr()
        futures.append(_POOL.submit(fill, ptr, b - a, start + a, flat.element_size(), *args))
    for f in futures:
        f.result()


def _fill(
    out: torch.Tensor, kernel: Callable[[torch.Tensor], object], torch_path: Callable[[torch.Tensor], object]
) -> torch.Tensor:
    """Fill ``out`` by the fastest path that gives the definition's bits: bf16 / fp16 targets are the
    float32 values rounded once more (round-to-nearest-even everywhere, so a bf16 model sees the
    float32 model's z rounded, on every device); a strided view is filled in its logical (row-major)
    order, as its contiguous copy would be; then the C kernel on the CPU, else the torch ops."""
    if out.dtype in (torch.bfloat16, torch.float16) or not out.is_contiguous():
        dtype = torch.float32 if out.dtype in (torch.bfloat16, torch.float16) else out.dtype
        return out.copy_(_fill(torch.empty(out.shape, dtype=dtype, device=out.device), kernel, torch_path))
    if _c is not None and out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64):
        kernel(out)
    else:
        torch_path(out)
    return out


def portable_axpy_(w: torch.Tensor, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """w += (z * alpha), the product rounded to w's dtype before the sum (``zofo.core.zo.add_scaled_``'s
    portable form), in one pass by the C kernel for contiguous float32 / float64 CPU tensors of one
    dtype, else by the torch ops; the same bits either way (tested)."""
    if (
        _c is not None
        and w.device.type == "cpu"
        and z.device.type == "cpu"
        and w.dtype == z.dtype
        and w.dtype in (torch.float32, torch.float64)
        and w.is_contiguous()
        and z.is_contiguous()
        and w.numel() == z.numel()
    ):
        _c.axpy(w.data_ptr(), z.data_ptr(), w.numel(), w.element_size(), float(alpha))
        return w
    return w.add_(torch.mul(z, alpha))


def normal_(out: torch.Tensor, seed: int, stream: int, start: int = 0) -> torch.Tensor:
    """Fill ``out`` (any float dtype, any device, read as flat) with the normals of positions
    start..start + out.numel() of (seed, stream)."""
    key = key_of(seed)
    return _fill(
        out,
        lambda t: _c_fill(_c.normal, t, start, *key, _stream(stream)),
        lambda t: _normal_torch(seed, stream, start, t),
    )


def truncated_normal_(out: torch.Tensor, seed: int, c: float, stream: int = 0) -> torch.Tensor:
    """Fill ``out`` with N(0, 1) truncated to [-c, c] (0 < c <= 1), positions 0.. of (seed, stream),
    by the inverse CDF restricted to the truncation's probability range (an exact sampler of the
    truncation up to the quantile's interpolation)."""
    key, bounds = key_of(seed), truncation(c)
    return _fill(
        out,
        lambda t: _c_fill(_c.truncated, t, 0, *key, _stream(stream), *bounds),
        lambda t: _truncated_torch(seed, stream, c, t),
    )


_EAGER = {"normal": _normal_core, "truncated": _truncated_core}
_FUSED: dict[str, Callable[..., torch.Tensor]] = {}
_STRICT: dict[str, Callable[..., torch.Tensor]] = {}
# Where the torch path is fused by torch.compile: "cuda" by default (one kernel instead of a few
# hundred memory passes); "all" also on the CPU (for the tests), "none" never.
COMPILE_ENV = "ZOFO_PHILOX_COMPILE"


def _torch_path(kind: str, device: torch.device, fuse: bool | None) -> Callable[..., torch.Tensor]:
    """The torch path, fused by torch.compile into one kernel (integer arithmetic until the last
    rounding, so fusion changes no bit) when ``fuse`` is True, or when it is None and COMPILE_ENV
    allows; otherwise the eager ops. Left to COMPILE_ENV, a backend that fails to compile falls back to
    the eager ops for the rest of the process; asked for explicitly, the failure is raised."""
    if fuse is False:
        return _EAGER[kind]
    if fuse:
        if kind not in _STRICT:
            _STRICT[kind] = torch.compile(_EAGER[kind], dynamic=True)
        return _STRICT[kind]
    where = os.environ.get(COMPILE_ENV, "cuda")
    if not (where == "all" or where == device.type):
        return _EAGER[kind]
    if kind not in _FUSED:
        fused = torch.compile(_EAGER[kind], dynamic=True)

        def run(*args: object) -> torch.Tensor:
            try:
                return fused(*args)
            except Exception as e:  # noqa: BLE001 - no working compiler: the eager ops give the same bits
                print(
                    f"zofo.core.philox: torch.compile failed ({type(e).__name__}); using eager ops",
                    file=sys.stderr,
                )
                _FUSED[kind] = _EAGER[kind]
                return _EAGER[kind](*args)

        _FUSED[kind] = run
    return _FUSED[kind]


def kernel() -> str:
    """Which implementation fills CPU float32/float64 tensors here: "c-avx2", "c-scalar" or "torch"."""
    return "torch" if _c is None else f"c-{_c.variant()}"
