"""The seeded zeroth-order step (MeZO), written once and used by every ZO method.

    perturb(s, c):   w += c * eps * z(s)
    estimate(s, f):  perturb(+1); l+ = f(); perturb(-2); l- = f(); perturb(+1); return (l+ - l-) / (2 eps)
    update(s, a):    w -= a * z(s)
    estimates(s, F): as estimate, F returning one loss per client (clients that share the seed and
                     so the perturbed weights: one batched forward per side serves them all)

z(s) is a standard-normal vector over the trainable parameters, generated parameter by parameter in
a fixed order, never from the global RNG (which also drives dropout and data order). Tied weights
appear once because ``nn.Module.parameters()`` de-duplicates shared tensors. Two generators
(``zo.generator``, recorded in every run):
- ``philox``: ``zofo.core.philox``, a counter-based generator whose numbers are a pure function of (seed,
  parameter index, position), bitwise identical on every device, instruction set, thread count and
  chunking, drawn on the parameters' own device. What lets parties on different hardware share seeds.
- ``torch``: a ``torch.Generator`` on the CPU seeded with s, ``randn`` per parameter (what the
  official codes do). Its fp32 numbers depend on the CPU's instruction set (vectorised transforms), so
  two parties agree only on the same kind of CPU; on a GPU model they are drawn on the CPU and copied.

Two modes give the same numbers:
- lean: z is regenerated at every use and never stored: peak memory stays at inference level.
- fast: z(s) is kept after its first generation (a small LRU of seeds), so a step regenerates it once
  instead of four times, at the price of one model-sized buffer per cached seed.

Where the time goes, and what is done about it (``zofo bench`` measures each):
- Generation is chunked on the CPU: each parameter's z is drawn 64K values at a time into a small buffer that
  stays in cache and is added to the weights at once, instead of allocating a model-sized tensor per
  pass. This gives exactly the numbers of ``torch.randn(p.shape, generator=g)``: torch's CPU normal
  sampler draws one uniform per value in order and transforms them in independent blocks of 16, and
  every chunk but a parameter's last is a multiple of 16 long while the last is at least 16 long
  (tested bit for bit); the Philox numbers do not depend on chunking at all. In fast mode the same
  chunks are written into buffers that are reused from
  seed to seed, so no step pays the page faults of fresh memory.
- Fusing (``fuse=True``): a caller that will move the weights along the same z again right after an
  estimate passes ``hold=True``; the weights stay at w - eps z and the next pass on that seed absorbs
  the restore (restore + update in one pass, or -eps -> +eps for the next client that shares the
  seed). A lean ZO-SGD step then regenerates z three times instead of four. ``settle()`` restores a
  held perturbation; any pass on another seed settles first, so weights are never left perturbed by
  mistake. ``fuse=False`` keeps the separate passes, bit for bit the arithmetic of the plain step.

Restoring after +eps, -2 eps, +eps is exact in real arithmetic but not in floating point: each
``add_`` rounds. In fp32 the restored weights differ from the originals by at most a few ulp of
max(|w|, 2 eps |z|) (tested); fused and separate passes round differently, so they agree to that
tolerance, not bitwise. In bf16 or fp16 the same bound holds in that dtype's ulp, which is coarse
(bf16 keeps 8 significant bits): the objective computes losses in fp32 so the two-point difference is
not rounded away, and the drift per step is tested against the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import torch

from zofo.core import philox
from zofo.core.config import ZOConfig

# Values drawn per chunk: 256 KB in fp32, which stays in cache between drawing and adding; a
# multiple of 16 (see the module docstring).
CHUNK = 1 << 16
# torch's CPU sampler treats tensors shorter than this differently (one value at a time).
_BLOCK = 16


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a ZO method perturbs, in the fixed order every party uses."""
    return [p for p in model.parameters() if p.requires_grad]


def add_scaled_(w: torch.Tensor, z: torch.Tensor, alpha: float, portable: bool) -> torch.Tensor:
    """w += alpha * z. ``portable`` rounds the product and the sum apart: torch's fused
    ``add_(z, alpha=)`` is one multiply-add on some CPUs and GPUs and two roundings on others, so parties
    holding the same weights and z would drift apart by an ulp a step. The stock generator keeps the
    fused form, whose numbers the committed runs hold. The portable form runs in one pass of the
    generator's C kernel on the CPU (``philox.portable_axpy_``; the same bits as torch.mul then add_)."""
    return philox.portable_axpy_(w, z, alpha) if portable else w.add_(z, alpha=alpha)


def chunk_bounds(numel: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """[start, stop) of the chunks of a flat parameter: each a multiple of 16 long except the last,
    which is never shorter than 16 (a remainder under 16 joins the chunk before it)."""
    if chunk % _BLOCK:
        raise ValueError(f"chunk: got {chunk}; allowed: a multiple of {_BLOCK}")
    bounds, start = [], 0
    while start < numel:
        stop = min(start + chunk, numel)
        if 0 < numel - stop < _BLOCK:
            stop = numel
        bounds.append((start, stop))
        start = stop
    return bounds


class SeededDirections:
    """Seeded perturbation directions over a fixed list of parameters."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        eps: float,
        mode: str = "lean",
        cache_size: int = 1,
        fuse: bool = True,
        generator: str = "torch",
    ):
        if mode not in ("lean", "fast"):
            raise ValueError(f"zo.mode: got {mode!r}; allowed: 'lean' or 'fast'")
        if generator not in philox.GENERATORS:
            raise ValueError(f"zo.generator: got {generator!r}; allowed: one of {list(philox.GENERATORS)}")
        self.generator = generator
        self.params = list(params)
        self.eps = float(eps)
        self.mode = mode
        self.fuse = bool(fuse)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self._spare: list[list[torch.Tensor]] = []  # evicted z buffers, reused by the next seed
        self._buffers: dict[torch.dtype, torch.Tensor] = {}  # lean mode's chunk buffers
        self._bounds = [chunk_bounds(p.numel()) if self._chunked(p) else [] for p in self.params]
        self._scratch: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}  # lean, unchunked
        # (seed, c) while the weights are held at w + c * eps * z(seed) (see ``estimate(hold=True)``).
        self._held: tuple[int, float] | None = None
        self.regenerations = 0  # how many full z vectors were generated (a cost counter)

    @classmethod
    def from_config(
        cls, params: Sequence[torch.Tensor], zo: ZOConfig, cache_size: int = 1
    ) -> SeededDirections:
        """The directions a run's ``zo`` section asks for (eps, mode, fuse, generator)."""
        return cls(params, zo.eps, zo.mode, cache_size=cache_size, fuse=zo.fuse, generator=zo.generator)

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    @staticmethod
    def _chunked(p: torch.Tensor) -> bool:
        # Chunks are drawn on the CPU straight into the weights' memory order; other devices and
        # layouts take the whole-tensor path (same numbers, one allocation per parameter).
        return p.device.type == "cpu" and p.is_contiguous() and p.numel() >= _BLOCK

    def _buffer(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._buffers:
            self._buffers[dtype] = torch.empty(CHUNK + _BLOCK, dtype=dtype)
        return self._buffers[dtype]

    def _scratch_for(self, p: torch.Tensor) -> torch.Tensor:
        """A buffer shaped like p on p's device, shared by every parameter of that dtype and device
        (lean mode keeps no z, but a GPU parameter is drawn whole)."""
        key = (p.dtype, p.device)
        size = max(q.numel() for q in self.params if (q.dtype, q.device) == key)
        if key not in self._scratch:
            self._scratch[key] = torch.empty(size, dtype=p.dtype, device=p.device)
        return self._scratch[key][: p.numel()].view(p.shape)

    @staticmethod
    def _whole(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # Drawn on the CPU in the parameter's dtype, then moved: the numbers depend on the seed,
        # the parameter list and dtype only, not on the device the model lives on.
        z = torch.randn(p.shape, generator=g, dtype=p.dtype, device="cpu")
        return z if p.device.type == "cpu" else z.to(p.device)

    def _new_store(self) -> list[torch.Tensor]:
        if self._spare:
            return self._spare.pop()
        return [torch.empty(p.shape, dtype=p.dtype, device=p.device) for p in self.params]

    @torch.no_grad()
    def _generate(self, seed: int, alpha: float | None, store: list[torch.Tensor] | None) -> None:
        """One regeneration of z(seed), chunk by chunk: each chunk is added to the weights times alpha
        (if given) and kept in ``store`` (if given) while it is still in cache."""
        self.regenerations += 1
        whole, chunk = self._drawers(seed)
        for i, p in enumerate(self.params):
            bounds = self._bounds[i]
            if not bounds:
                z = whole(i, p, store[i] if store is not None else None)
                if store is not None and z is not store[i]:
                    store[i].copy_(z)
                if alpha is not None:
                    self._add(p, z, alpha)
                continue
            flat = p.view(-1)
            out = store[i].view(-1) if store is not None else None
            buf = self._buffer(p.dtype)
            for a, b in bounds:
                z = out[a:b] if out is not None else buf[: b - a]
                chunk(z, i, a)
                if alpha is not None:
                    self._add(flat[a:b], z, alpha)

    def _drawers(self, seed: int) -> tuple[Callable[..., torch.Tensor], Callable[..., object]]:
        """(whole, chunk) for one regeneration of z(seed): ``whole(i, p, dest)`` returns parameter i's
        z (in dest when given, if it can), ``chunk(z, i, start)`` fills a chunk in place.

        philox: parameter i is stream i, a function of position alone, so chunks need not come in
        order and unchunked (non-CPU) parameters are drawn whole on their own device. torch: one
        mt19937 stream on the CPU through every parameter in order, copied to the parameter's device."""
        if self.generator == "philox":

            def whole(i: int, p: torch.Tensor, dest: torch.Tensor | None) -> torch.Tensor:
                return philox.normal_(dest if dest is not None else self._scratch_for(p), seed, i)

            return whole, lambda z, i, start: philox.normal_(z, seed, i, start)
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        return (lambda i, p, dest: self._whole(p, g)), (lambda z, i, start: z.normal_(generator=g))

    def _add(self, w: torch.Tensor, z: torch.Tensor, alpha: float) -> None:
        add_scaled_(w, z, alpha, portable=self.generator == "philox")

    def z(self, seed: int) -> Iterator[torch.Tensor]:
        """z(seed), one tensor per parameter (in lean mode, freshly drawn and not kept)."""
        if self.mode == "fast":
            self._ensure_cached(seed)
            yield from self._cache[seed]
            return
        store = [torch.empty(p.shape, dtype=p.dtype, device=p.device) for p in self.params]
        self._generate(seed, None, store)
        yield from store

    def _ensure_cached(self, seed: int, alpha: float | None = None) -> bool:
        """Put z(seed) in the cache, adding alpha * z to the weights on the way if it had to be drawn;
        True if it was drawn (and alpha applied)."""
        if seed in self._cache:
            self._cache.move_to_end(seed)
            return False
        while len(self._cache) >= self.cache_size:
            self._spare.append(self._cache.popitem(last=False)[1])
        store = self._new_store()
        self._generate(seed, alpha, store)
        self._cache[seed] = store
        return True

    @torch.no_grad()
    def _shift(self, seed: int, alpha: float) -> None:
        """w += alpha * z(seed), one pass over the weights."""
        alpha = float(alpha)
        if self.mode == "lean":
            self._generate(seed, alpha, None)
        elif not self._ensure_cached(seed, alpha):
            for p, z in zip(self.params, self._cache[seed], strict=True):
                self._add(p, z, alpha)

    def _take_held(self, seed: int) -> float:
        """The held offset c on ``seed`` (0 if none), cleared; a hold on another seed is settled."""
        if self._held is None:
            return 0.0
        held_seed, c = self._held
        if held_seed != seed:
            self.settle()
            return 0.0
        self._held = None
        return c

    def settle(self) -> None:
        """Restore a held perturbation (no-op if none): the weights are w again, to rounding."""
        if self._held is not None:
            seed, c = self._held
            self._held = None
            self._shift(seed, -c * self.eps)

    @property
    def holding(self) -> bool:
        return self._held is not None

    def axpy(self, seed: int, alpha: float) -> None:
        """w += alpha * z(seed) (absorbing a held perturbation on the same seed)."""
        c = self._take_held(seed)
        self._shift(seed, float(alpha) - c * self.eps)

    def perturb(self, seed: int, c: float) -> None:
        """w += c * eps * z(seed)."""
        self.axpy(seed, c * self.eps)

    def estimate(self, seed: int, loss: Callable[[], float], hold: bool = False) -> float:
        """The two-point projected gradient (l+ - l-) / (2 eps).

        Leaves w as it found it (to rounding), unless ``hold`` and fusing is on: then the weights stay
        at w - eps z(seed) until the next pass on this seed (an update, another estimate) absorbs the
        restore, or ``settle()`` is called."""
        (g,) = self.estimates(seed, lambda: [loss()], hold)
        return g

    def estimates(self, seed: int, losses: Callable[[], Sequence[float]], hold: bool = False) -> list[float]:
        """One two-point estimate per loss that ``losses`` returns, all along z(seed) from the same two
        perturbed weights: several clients sharing a seed (FeedSign) evaluated by one call of
        ``losses`` per side, e.g. one batched forward. The weights are left as ``estimate`` leaves them."""
        c = self._take_held(seed)
        self._shift(seed, (1.0 - c) * self.eps)
        l_plus = [float(v) for v in losses()]
        self._shift(seed, -2.0 * self.eps)
        l_minus = [float(v) for v in losses()]
        if hold and self.fuse:
            self._held = (seed, -1.0)
        else:
            self._shift(seed, self.eps)
        if len(l_plus) != len(l_minus):
            raise RuntimeError(f"estimates: {len(l_plus)} losses at +eps, {len(l_minus)} at -eps")
        return [(a - b) / (2.0 * self.eps) for a, b in zip(l_plus, l_minus, strict=True)]

    def update(self, seed: int, coeff: float) -> None:
        """w -= coeff * z(seed): a ZO-SGD step has coeff = lr * g."""
        self.axpy(seed, -float(coeff))

    def clear(self) -> None:
        """Forget the cached directions (a held perturbation is settled first)."""
        self.settle()
        self._cache.clear()
        self._spare.clear()
