"""What a pipeline subprocess runs inside the tree it measures (``zofo.bench.pipeline``).

The file is executed by path (``runpy.run_path``) with ``PYTHONPATH=<tree>/src``, so ``zofo`` below is
the measured tree's package, never this one; a baseline tree is an unmodified export of an older
revision. Hence only the standard library at the top, and only what every revision of zofo has:
``zofo.engine.loop.sample_cohort`` (the round loop calls it once at the start of each round),
``zofo.methods.base.FederatedMethod`` and its ``end_round`` hook (called once at the end of each round),
and the ``zofo.cli`` module run as ``python -m zofo.cli``.

Modes (first argument):

- ``info OUT_JSON``: seconds to ``import zofo.engine.loop`` in this fresh interpreter, and the zo
  generator a config that names none gets.
- ``profile OUT_PSTATS ARGS...``: ``python -m zofo.cli ARGS...`` with cProfile switched on from the
  start of each round (``sample_cohort``) to the end of its outermost ``end_round``: the clients' and
  the server's work of every round, none of the set-up, evaluation or writing around it.
"""

import sys
import time
from collections.abc import Callable
from typing import Any


def info(out_path: str) -> None:
    t0 = time.perf_counter()
    import zofo.engine.loop  # noqa: F401  (its import is what is timed)

    seconds = time.perf_counter() - t0
    import json

    from zofo.core.config import ZOConfig

    with open(out_path, "w") as f:
        json.dump({"import_seconds": seconds, "default_generator": ZOConfig().generator}, f)


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


def profile(out_path: str, cli_args: list[str]) -> None:
    import cProfile
    import runpy

    import zofo.engine.loop as loop
    from zofo.methods.base import FederatedMethod

    prof = cProfile.Profile()
    state: dict[str, Any] = {"patched": False, "depth": 0}

    def end_round_of(original: Callable[..., Any]) -> Callable[..., Any]:
        def end_round(self: Any, *args: Any, **kwargs: Any) -> Any:
            # A subclass's end_round may call its parent's (both wrapped): only the outermost return
            # ends the round.
            state["depth"] += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                state["depth"] -= 1
                if state["depth"] == 0:
                    prof.disable()

        return end_round

    sample_cohort = loop.sample_cohort

    def profiled_sample_cohort(*args: Any, **kwargs: Any) -> Any:
        if not state["patched"]:
            # By the first round every method class the run uses has been imported (the method is
            # built before round 0 is evaluated).
            for cls in set(_subclasses(FederatedMethod)):
                if "end_round" in cls.__dict__:
                    cls.end_round = end_round_of(cls.__dict__["end_round"])
            state["patched"] = True
        prof.enable()
        return sample_cohort(*args, **kwargs)

    loop.sample_cohort = profiled_sample_cohort
    sys.argv = ["zofo", *cli_args]
    try:
        runpy.run_module("zofo.cli", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    prof.disable()
    if not state["patched"]:
        raise SystemExit("probe: the run never called zofo.engine.loop.sample_cohort; nothing profiled")
    prof.dump_stats(out_path)


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "info":
        info(argv[1])
    elif len(argv) >= 3 and argv[0] == "profile":
        profile(argv[1], argv[2:])
    else:
        raise SystemExit("usage: probe.py info OUT_JSON | probe.py profile OUT_PSTATS ZOFO_ARGS...")


if __name__ == "__main__":
    main(sys.argv[1:])
