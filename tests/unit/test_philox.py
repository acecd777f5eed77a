"""The portable generator: Philox4x32-10 words and integer normals, the same bits on every path.

The oracles are independent of zofo.core.philox: Random123's published known answers for Philox4x32-10, a
numpy re-implementation of the whole definition written here (uint64 arithmetic, numpy's frexp for the
octave), Python's own normal quantile for the knots, and distribution tests against math.erf.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest
import torch

from zofo.core import philox
from zofo.core._normal_knots import KNOTS
from zofo.core.zo import CHUNK, SeededDirections
from zofo.methods import ferret

# ---- an independent implementation of the definition (numpy, uint64) ------------------------------


def np_words(seed: int, stream: int, start: int, n: int) -> np.ndarray:
    """32-bit words of positions start..start+n, straight from the Philox4x32-10 definition."""
    first = start // 4
    count = (start + n + 3) // 4 - first
    ctr = np.zeros((4, count), dtype=np.uint64)
    blocks = np.arange(first, first + count, dtype=np.uint64)
    ctr[0] = blocks % 2**32
    ctr[1] = blocks // 2**32
    ctr[2] = stream
    key = [seed % 2**32, (seed // 2**32) % 2**32]
    for _ in range(10):
        prod0 = ctr[0] * np.uint64(0xD2511F53)
        prod1 = ctr[2] * np.uint64(0xCD9E8D57)
        ctr = np.stack(
            [
                (prod1 >> np.uint64(32)) ^ ctr[1] ^ np.uint64(key[0]),
                prod1 % np.uint64(2**32),
                (prod0 >> np.uint64(32)) ^ ctr[3] ^ np.uint64(key[1]),
                prod0 % np.uint64(2**32),
            ]
        )
        key = [(key[0] + 0x9E3779B9) % 2**32, (key[1] + 0xBB67AE85) % 2**32]
    words = ctr.T.reshape(-1)
    return words[start - 4 * first : start - 4 * first + n]


def np_magnitude(w: np.ndarray) -> np.ndarray:
    """Q(w) in units of 2^-40: a knot for w < 64, else linear between the knots of w's octave."""
    knots = np.array(KNOTS, dtype=np.int64)
    w = w.astype(np.int64)
    _, exp = np.frexp(w.astype(np.float64))  # w = m 2^exp, 0.5 <= m < 1: the octave is exp - 1
    octave = np.maximum(exp.astype(np.int64) - 1, 6)
    width = np.left_shift(np.int64(1), octave - 6)
    sub = (w - np.left_shift(np.int64(1), octave)) // width
    seg = 64 * (octave - 5) + sub
    node = np.left_shift(np.int64(1), octave) + sub * width
    seg = np.where(w < 64, w, seg)
    frac = np.where(w < 64, 0, w - node)
    return knots[seg] - ((knots[seg] - knots[seg + 1]) * frac) // np.where(w < 64, 1, width)


def np_normals(seed: int, stream: int, start: int, n: int) -> np.ndarray:
    words = np_words(seed, stream, start, n).astype(np.int64)
    mag = np_magnitude(2**31 - 1 - (words % 2**31))
    fixed = np.where(words >= 2**31, -mag, mag)
    return fixed.astype(np.float64) * 2.0**-40


# ---- the definition ---------------------------------------------------------------------------------

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_philox_known_answers(ctr, key, expected):
    out = philox.philox4x32([torch.tensor([c], dtype=torch.int64) for c in ctr], key)
    assert tuple(int(t) for t in out) == expected


CASES = [  # (seed, stream, start, n): block edges, odd lengths, counters past 2^32 blocks, big seeds
    (0, 0, 0, 1),
    (1, 0, 3, 6),
    (2**63 + 5, 7, 1, 1000),
    (123, 2**32 - 1, 2**34 + 3, 257),
    (99, 3, CHUNK - 5, 20),
    (2**32 + 1, 1, 0, 70_001),
]


@pytest.mark.parametrize(("seed", "stream", "start", "n"), CASES)
def test_raw_words_match_an_independent_implementation(seed, stream, start, n):
    got = philox.raw_words(seed, stream, start, n).numpy().astype(np.uint64)
    assert np.array_equal(got, np_words(seed, stream, start, n))


@pytest.mark.parametrize(("seed", "stream", "start", "n"), CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_normals_match_an_independent_implementation(seed, stream, start, n, dtype):
    expected = torch.from_numpy(np_normals(seed, stream, start, n)).to(dtype)
    for path in (philox.normal_, lambda out, s, j, a: philox.torch_normal_(out, s, j, a, fuse=False)):
        out = torch.full((n,), float("nan"), dtype=dtype)
        assert torch.equal(path(out, seed, stream, start), expected)


def test_bf16_and_fp16_are_the_float32_normals_rounded():
    ref = philox.normal_(torch.empty(5000), 4, 2, 11)
    for dtype in (torch.bfloat16, torch.float16):
        assert torch.equal(philox.normal_(torch.empty(5000, dtype=dtype), 4, 2, 11), ref.to(dtype))


def test_knots_are_the_normal_quantile_and_pinned():
    nd = NormalDist()
    nodes = list(range(64)) + [2**e + m * 2 ** (e - 6) for e in range(6, 31) for m in range(64)] + [2**31]
    assert len(KNOTS) == len(nodes) == 1665
    for node, knot in zip(nodes, KNOTS, strict=True):
        assert abs(knot * 2.0**-40 + nd.inv_cdf((node + 0.5) / 2**32)) < 2 * 2.0**-40
    digest = hashlib.sha256(json.dumps(list(KNOTS)).encode()).hexdigest()
    assert digest == "9264b6acd97e07e3e9cbedf760602eff3de310dcc6968b5435957a04c389e63c", digest


def test_interpolated_quantile_error_is_bounded():
    rng = np.random.default_rng(0)
    w = np.concatenate([np.arange(3000), rng.integers(0, 2**31, 20_000), 2**31 - 1 - np.arange(3000)])
    got = np_magnitude(w) * 2.0**-40
    exact = np.array([-NormalDist().inv_cdf((x + 0.5) / 2**32) for x in w])
    assert np.max(np.abs(got - exact)) < 2e-5


def _ks(sample: np.ndarray, cdf) -> float:
    x = np.sort(sample)
    f = cdf(x)
    n = len(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def test_normals_have_normal_moments_and_pass_ks():
    z = philox.normal_(torch.empty(2_000_000, dtype=torch.float64), 2024, 0).numpy()
    n = len(z)
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert abs(np.mean(z**3)) < 4 * math.sqrt(15 / n)
    assert abs(np.mean(z**4) - 3) < 4 * math.sqrt(96 / n)
    cdf = np.vectorize(lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2))))
    sub = z[:200_000]
    assert _ks(sub, cdf) < 1.63 / math.sqrt(len(sub))  # the 1% critical value
    assert 5.0 < np.abs(z).max() < 6.4


def test_truncated_normals_match_the_truncated_law():
    c = 0.3
    v = philox.truncated_normal_(torch.empty(400_000, dtype=torch.float64), 77, c).numpy()
    assert np.abs(v).max() <= c
    rho = ferret.truncnorm_second_moment(c)
    assert abs(np.mean(v**2) - rho) < 4 * math.sqrt(np.var(v**2) / len(v))
    mass = math.erf(c / math.sqrt(2))
    cdf = np.vectorize(lambda t: 0.5 + 0.5 * math.erf(t / math.sqrt(2)) / mass)
    assert _ks(v[:200_000], cdf) < 1.63 / math.sqrt(200_000)


def test_truncated_paths_agree_and_respect_tiny_bounds():
    for c in (1.0, 0.05, 1 / math.sqrt(5_000_000)):
        a = philox._truncated_torch(5, 3, c, torch.empty(10_001))
        b = philox.truncated_normal_(torch.empty(10_001), 5, c, 3)
        assert torch.equal(a, b)
        assert float(a.abs().max()) <= c
        assert float(a.std()) > 0.5 * c / math.sqrt(3)  # spread over the interval, not collapsed


def test_chunking_and_threads_change_no_number():
    n = 3 * CHUNK + 17
    whole = philox.normal_(torch.empty(n), 8, 5)
    for cut in (1, 15, 16, 4097, CHUNK + 3):
        parts = [philox.normal_(torch.empty(m), 8, 5, a) for a, m in ((0, cut), (cut, n - cut))]
        assert torch.equal(torch.cat(parts), whole)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(philox.normal_(torch.empty(n), 8, 5), whole)
    finally:
        torch.set_num_threads(before)


def test_the_c_kernel_is_built_and_used():
    # The install compiles it (pyproject ext-modules); without it the CPU path is the slow torch one.
    assert philox.kernel().startswith("c-"), philox.kernel()


_DIGEST = """
import hashlib, sys, torch
from zofo.core import philox
torch.set_num_threads(int(sys.argv[1]))
out = torch.empty(300_003)
a = philox.normal_(out, 31, 4, 9).numpy().tobytes()
b = philox.torch_normal_(torch.empty(300_003), 31, 4, 9).numpy().tobytes()
c = philox.truncated_normal_(torch.empty(100_001), 31, 0.01, 2).numpy().tobytes()
print(philox.kernel(), torch.backends.cpu.get_cpu_capability(), hashlib.sha256(a + b + c).hexdigest())
"""


def _python(code: str, env: dict[str, str], *args: str) -> str:
    """What a fresh interpreter prints for ``code`` with ``env`` added: the CPU capability and the
    kernel choice are read once per process."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def _digest(env: dict[str, str], threads: int) -> tuple[str, str, str]:
    kernel, capability, digest = _python(_DIGEST, env, str(threads)).split()
    return kernel, capability, digest


def test_identical_bits_across_instruction_sets_kernels_and_threads():
    runs = [
        _digest({"ATEN_CPU_CAPABILITY": "default"}, 1),
        _digest({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
        _digest({"ZOFO_PHILOX_KERNEL": "c-scalar", "ATEN_CPU_CAPABILITY": "default"}, 2),
        _digest({"ZOFO_PHILOX_KERNEL": "torch", "ATEN_CPU_CAPABILITY": "avx2"}, 1),
    ]
    assert {r[1] for r in runs} >= {"DEFAULT", "AVX2"}  # the capabilities really differed
    assert {r[0] for r in runs} >= {"c-scalar", "torch"}
    assert len({r[2] for r in runs}) == 1, runs


def test_stock_randn_differs_across_instruction_sets():
    # The problem the generator solves, measured: the same seeded fp32 randn under two capabilities.
    code = (
        "import hashlib, torch; g = torch.Generator().manual_seed(5); "
        "print(hashlib.sha256(torch.randn(100_003, generator=g).numpy().tobytes()).hexdigest())"
    )
    digests = {_python(code, {"ATEN_CPU_CAPABILITY": cap}) for cap in ("default", "avx2")}
    assert len(digests) == 2


# ---- the generator inside the ZO step and Ferret -----------------------------------------------------


def _params() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(3,), (40, 7), (CHUNK + 21,), (2, 3, 5)]
    return [torch.randn(s, generator=g) for s in shapes]


def test_zo_directions_are_one_stream_per_parameter():
    params = _params()
    dirs = SeededDirections(params, 1e-3, "lean", generator="philox")
    for i, (p, z) in enumerate(zip(params, dirs.z(42), strict=True)):
        assert torch.equal(z, philox.normal_(torch.empty(p.shape), 42, i))


def test_zo_step_with_philox_is_the_same_in_lean_and_fast_mode():
    results = []
    for mode in ("lean", "fast"):
        params = _params()
        dirs = SeededDirections(params, 1e-3, mode, generator="philox")
        loss = lambda ps=params: sum(float((p**2).sum()) for p in ps)  # noqa: E731
        g = dirs.estimate(7, loss, hold=True)
        dirs.update(7, 1e-2 * g)
        results.append((g, [p.clone() for p in params]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


def test_zo_step_on_a_strided_parameter_draws_in_logical_order():
    base = torch.zeros(6, 5)
    view = base.t()  # not contiguous: drawn whole, in its logical order
    dirs = SeededDirections([view], 1.0, "lean", generator="philox")
    dirs.axpy(3, 1.0)
    assert torch.equal(view, philox.normal_(torch.empty(5, 6), 3, 0))


def test_ferret_directions_from_philox_are_portable_and_bounded():
    d = 10_000
    v = ferret.direction(9, torch.empty(d), "philox")
    assert float(v.abs().max()) <= 1 / math.sqrt(d)
    assert torch.equal(v, ferret.direction(9, torch.empty(d, dtype=torch.float64), "philox").float())
    assert not torch.equal(v, ferret.direction(9, torch.empty(d), "torch"))


def test_unknown_generator_is_refused():
    with pytest.raises(ValueError, match="zo.generator"):
        SeededDirections(_params(), 1e-3, generator="mt19937")


@pytest.mark.parametrize("name", ["feedsign", "zo-fedsgd", "fedkseed", "ferret"])
def test_every_seeded_method_runs_on_philox_and_records_it(name, tmp_path):
    from conftest import SMALL, read_rows, tiny_run_config

    from zofo.core.config import RunConfig
    from zofo.engine.loop import run

    def once(folder: str) -> list[dict]:
        cfg = tiny_run_config(name, SMALL.get(name), zo={"generator": "philox"}, checkpoint=False)
        out = run(RunConfig.from_dict(cfg), tmp_path / folder, progress=False)
        meta = json.loads((out / "meta.json").read_text())
        assert meta["zo_generator"]["name"] == "philox" and meta["status"] == "ok"
        return [{k: r[k] for k in ("metric", "eval_loss", "train_loss")} for r in read_rows(out)]

    first = once("a")
    assert first == once("b")
    torch_rows = [
        {k: r[k] for k in ("metric", "eval_loss", "train_loss")}
        for r in read_rows(
            run(
                RunConfig.from_dict(tiny_run_config(name, SMALL.get(name), checkpoint=False)),
                tmp_path / "t",
                False,
            )
        )
    ]
    assert first[-1] != torch_rows[-1]  # the generator really changed the directions


@pytest.mark.slow  # two inductor compiles: about a minute on 2 cores
def test_fused_torch_path_changes_no_bit():
    # On a GPU the torch path runs fused by torch.compile; the same fusion on the CPU (inductor's C++
    # backend) must give the eager ops' bits, for several lengths and a start mid-block.
    for n, start in [(1000, 3), (70_001, 2**33 + 2)]:
        fused = philox.torch_normal_(torch.empty(n), 9, 4, start, fuse=True)
        assert torch.equal(fused, philox.torch_normal_(torch.empty(n), 9, 4, start, fuse=False))
    fused = philox._truncated_torch(9, 1, 0.02, torch.empty(5003), fuse=True)
    assert torch.equal(fused, philox._truncated_torch(9, 1, 0.02, torch.empty(5003), fuse=False))


_STEP = """
import hashlib, torch
from zofo.core.zo import SeededDirections
from zofo.core import philox
# starting weights from the portable generator: torch.randn's own differ per instruction set
params = [philox.normal_(torch.empty(s), 1, i) for i, s in enumerate([(300,), (70_001,), (64, 33)])]
for mode in ("lean", "fast"):
    dirs = SeededDirections(params, 1e-3, mode, fuse=True, generator="philox")
    for step in range(3):
        # a loss read off single weights in Python: vectorised reductions and transcendental kernels
        # round differently per instruction set, and only the update is under test here
        grad = dirs.estimate(step, lambda: float(params[0][7]) - 2 * float(params[1][500]) ** 2, hold=True)
        dirs.update(step, 1e-2 * grad)
    dirs.settle()
digest = hashlib.sha256(b"".join(p.numpy().tobytes() for p in params)).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), digest)
"""


def test_philox_weights_are_the_same_across_instruction_sets():
    # Same z, and the update rounded the same way: torch's fused add_(alpha=) is one multiply-add under
    # AVX2 and two roundings under the default capability, which the portable update avoids.
    outs = [_python(_STEP, {"ATEN_CPU_CAPABILITY": cap}).split() for cap in ("default", "avx2")]
    assert outs[0][0] != outs[1][0]
    assert outs[0][1] == outs[1][1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernels_portable_add_rounds_the_product_and_the_sum_apart(dtype: torch.dtype) -> None:
    """philox.portable_axpy_ (the C kernel's one pass) gives the bits of torch.mul then add_, which round
    twice; a fused multiply-add rounds once and differs on some elements of a large random sample,
    so a kernel compiled with contraction would fail here."""
    gen = torch.Generator().manual_seed(11)
    n = 1 << 18
    w = torch.randn(n, generator=gen, dtype=torch.float64).mul_(3).to(dtype)
    z = torch.randn(n, generator=gen, dtype=torch.float64).to(dtype)
    for alpha in (1e-3, -2.5e-4, 0.7, -3.0):
        expected = w.clone().add_(torch.mul(z, alpha))
        got = philox.portable_axpy_(w.clone(), z, alpha)
        assert torch.equal(got, expected), f"alpha {alpha}"
    if dtype == torch.float32:
        a = torch.tensor(0.7, dtype=torch.float32).item()  # alpha as the kernel sees it
        fused = (w.double() + z.double() * a).to(torch.float32)  # one rounding: exact product and sum
        assert not torch.equal(fused, w.clone().add_(torch.mul(z, 0.7)))
