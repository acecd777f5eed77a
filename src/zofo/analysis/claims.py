"""The papers' headline claims set against what this run measured: the claims table.

Each claim of FeedSign, FedKSeed, FedKSeed-Pro, Ferret and one-shot FL (their papers; baselines/) gets
one row: the claim in a sentence, the evidence measured here (a sentence that quotes its numbers), a
verdict from ``VERDICTS`` and the reason for it. Every claim is always present, in the fixed order of
``CLAIMS``; a claim whose study or method this config did not run is "inconclusive at this scale", and
its reason names what is missing.

Statistics, the same for every claim that compares final metrics (``final_metric_table`` rows):

- A group's mean has standard error sd / sqrt(n) (sd over seeds, ddof=1). A difference of two groups,
  d = mean_a - mean_b, has se = sqrt(sd_a^2/n_a + sd_b^2/n_b); a difference of differences (a drop
  compared with another drop, a gap at one model size against the gap at another) adds all four
  groups' squared standard errors.
- Direction claims ("a is more accurate than b"): holds if d > 2 se in the claimed direction, does not
  hold if d < -2 se, otherwise inconclusive (within 2 standard errors over seeds).
- "At least as good" claims (comparable accuracy, a gap of at most about 6 points, a drop no larger
  than another's): holds unless d falls short of the claimed bound by more than 2 se, in which case it
  does not hold. With unknown se these are inconclusive as well.
- With fewer than 2 seeds in any group involved, se is unknown and the verdict is inconclusive.
- Exact claims (bit counts from the communication table) hold or do not hold with no statistics: the
  bits are counted from the payloads, so the numbers are the same in every seed.
- Claims whose size grows with the model (Ferret's communication ratio, proportional to d) hold when
  the measured value is of the claimed order of magnitude; below it they are inconclusive at this
  scale, with the measured value and d, unless d already reaches a billion parameters.
- Timings (Ferret's compute claim) come from a machine shared with other jobs; their ratio gets no
  standard error and is read against the claimed factor only.

Metrics are fractions in [0, 1] (accuracy, Rouge-L F), so "6 points" is 0.06.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from zofo.analysis.tables import GROUP_KEYS, PARAMETERS, pm, to_markdown
from zofo.engine.record import atomic_write_text

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive at this scale"
VERDICTS: tuple[str, str, str] = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
COLUMNS: tuple[str, ...] = ("paper", "claim", "evidence", "verdict", "reason")

# How many standard errors a difference must exceed before it counts as a difference.
Z = 2.0
# FeedSign's reported average shortfall against first-order full fine-tuning, as a metric fraction.
FEEDSIGN_FO_GAP = 0.06
# The alpha of FeedSign's non-iid experiments; the main study's default.
NON_IID_ALPHA = 0.5
# FedKSeed's uplink bound per client and round, in KiB.
FEDKSEED_UPLINK_KIB = 18.0
# Ferret's communication claim and the smallest ratio of the same order of magnitude: the paper's own
# "10^6" rounds its counts (7.7e5 on LLaMA-3B), so a log10 that rounds to 6 or
# more is the claim.
FERRET_COMM_RATIO = 1e6
FERRET_COMM_FLOOR = 10**5.5
# Ferret's compute claim (client seconds to reach the target, FedKSeed / Ferret).
FERRET_COMPUTE_RATIO = 6.0
# Trainable parameters from which a model is at the papers' scale: below it a scale-bound claim that
# misses is not refuted, only out of reach.
BILLION = 1e9
# Aggregators that are a method's own rule: "mean" in the config, FeedSign's vote shows as "majority".
OWN_RULES: frozenset[str] = frozenset({"mean", "majority"})

NAMES: dict[str, str] = {
    "fedavg": "FedAvg",
    "fedavg-lora": "FedIT (fedavg-lora)",
    "oneshot": "one-shot",
    "ferret": "Ferret",
    "fedkseed": "FedKSeed",
    "fedkseed-pro": "FedKSeed-Pro",
    "feedsign": "FeedSign",
    "zo-fedsgd": "ZO-FedSGD",
}

MAIN = "main study"
COMM = "main study's communication table"
COST = "cost study (client seconds per round)"
TARGET = "rounds-to-target study"
HETERO = "heterogeneity study (several Dirichlet alphas)"
BYZ = "Byzantine study"
ONESHOT = "one-shot model-size study"


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__/__hash__ would compare DataFrames
class Evidence:
    """The measured tables a claims table is built from; an optional study is None where not run.

    ``main``: ``final_metric_table`` of the main study. ``comm``: its ``communication_table``.
    ``cost``: method, n_seeds, client_seconds_per_round_mean/_sd, server_seconds_per_round_mean,
    peak_rss_mb_mean. ``to_target``: method, n_runs, n_reached, bits_up_to_target_mean,
    rounds_to_target_mean, target. ``heterogeneity``: ``final_metric_table`` over several alphas
    (inf = iid). ``byzantine``: ``final_metric_table`` over byz_frac and aggregator (honest runs have
    byz_frac 0). ``oneshot``: ``final_metric_table`` of fedavg and oneshot over models, with ``size``
    (trainable parameters).
    """

    main: pd.DataFrame
    comm: pd.DataFrame
    cost: pd.DataFrame | None = None
    to_target: pd.DataFrame | None = None
    heterogeneity: pd.DataFrame | None = None
    byzantine: pd.DataFrame | None = None
    oneshot: pd.DataFrame | None = None


@dataclass(frozen=True)
class Finding:
    evidence: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str
    text: str
    judge: Callable[[Evidence], Finding]


class _Missing(Exception):
    """The evidence a claim needs is not in this config (or not unambiguous); the message says what."""


# --------------------------------------------------------------------------------------------------
# estimates and the decision rules


@dataclass(frozen=True)
class _Est:
    """A mean or a difference of means with its standard error (NaN: unknown, a group had < 2 seeds)."""

    value: float
    se: float

    def __sub__(self, other: _Est) -> _Est:
        # Independent groups: variances add. NaN propagates, so one single-seed group makes se unknown.
        return _Est(self.value - other.value, math.sqrt(self.se**2 + other.se**2))

    def __neg__(self) -> _Est:
        return _Est(-self.value, self.se)


@dataclass(frozen=True)
class _Group:
    """One ``final_metric_table`` row reduced to what the statistics use."""

    mean: float
    sd: float
    n: int

    @property
    def est(self) -> _Est:
        se = self.sd / math.sqrt(self.n) if self.n >= 2 and math.isfinite(self.sd) else math.nan
        return _Est(self.mean, se)

    def __str__(self) -> str:
        return f"{pm(self.mean, self.sd)} (n={self.n})"


def _g(x: float) -> str:
    return f"{x:+.3g}"


def _unknown_se(label: str, d: _Est) -> tuple[str, str]:
    return INCONCLUSIVE, (
        f"{label} = {_g(d.value)}, but a group has fewer than 2 seeds, so the standard error is unknown"
    )


def _direction(d: _Est, label: str) -> tuple[str, str]:
    """Direction claim: ``d`` is oriented so that the claim says d > 0."""
    if not math.isfinite(d.se):
        return _unknown_se(label, d)
    bound = Z * d.se
    if d.value > bound:
        return HOLDS, f"{label} = {_g(d.value)} is beyond 2 standard errors over seeds ({bound:.3g})"
    if d.value < -bound:
        return DOES_NOT_HOLD, (
            f"{label} = {_g(d.value)} is beyond 2 standard errors over seeds ({bound:.3g}) "
            "against the claimed direction"
        )
    return INCONCLUSIVE, f"{label} = {_g(d.value)} is within 2 standard errors over seeds ({bound:.3g})"


def _at_least(d: _Est, floor: float, label: str) -> tuple[str, str]:
    """'At least as good' claim: holds unless d is below ``floor`` by more than 2 se."""
    if not math.isfinite(d.se):
        return _unknown_se(label, d)
    bound = Z * d.se
    if d.value >= floor - bound:
        return HOLDS, (
            f"{label} = {_g(d.value)} is not below {floor:g} by more than 2 standard errors over seeds "
            f"({bound:.3g})"
        )
    return DOES_NOT_HOLD, (
        f"{label} = {_g(d.value)} is below {floor:g} by more than 2 standard errors over seeds ({bound:.3g})"
    )


def _at_most(d: _Est, ceiling: float, label: str) -> tuple[str, str]:
    """'No more than' claim: holds unless d exceeds ``ceiling`` by more than 2 se."""
    if not math.isfinite(d.se):
        return _unknown_se(label, d)
    bound = Z * d.se
    if d.value <= ceiling + bound:
        return HOLDS, (
            f"{label} = {_g(d.value)} does not exceed {ceiling:g} by more than 2 standard errors over "
            f"seeds ({bound:.3g})"
        )
    return DOES_NOT_HOLD, (
        f"{label} = {_g(d.value)} exceeds {ceiling:g} by more than 2 standard errors over seeds ({bound:.3g})"
    )


# --------------------------------------------------------------------------------------------------
# picking groups out of the tables


def _need(frame: pd.DataFrame | None, study: str) -> pd.DataFrame:
    if frame is None:
        raise _Missing(f"this config has no {study}")
    return frame


def _honest(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without Byzantine clients, under each method's own rule (columns absent: nothing to drop)."""
    keep = pd.Series(True, index=df.index)
    if "byz_frac" in df.columns:
        keep &= df["byz_frac"].fillna(0.0).astype(float) == 0.0
    if "aggregator" in df.columns:
        keep &= df["aggregator"].fillna("mean").isin(OWN_RULES)
    return df[keep]


def _alpha_text(alpha: float) -> str:
    return "iid" if math.isinf(alpha) else f"Dirichlet alpha {alpha:g}"


def _where(filters: dict[str, object]) -> str:
    parts = [
        _alpha_text(float(v)) if k == "alpha" else f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in filters.items()
    ]
    return f" at {', '.join(parts)}" if parts else ""


def _select(df: pd.DataFrame, method: str, study: str, **filters: object) -> pd.Series:
    """The one row of ``method`` matching ``filters`` (columns the frame lacks are not filtered on)."""
    rows = df[df["method"] == method]
    for col, val in filters.items():
        if col in rows.columns:
            rows = rows[rows[col] == val]
    if rows.empty:
        raise _Missing(f"the {study} has no {NAMES.get(method, method)} ({method}) runs{_where(filters)}")
    if len(rows) > 1:
        # Averaging two groups would mix settings, so an ambiguous selection is reported, not resolved.
        keys = [c for c in (*GROUP_KEYS, "size") if c in rows.columns and rows[c].nunique(dropna=False) > 1]
        raise _Missing(
            f"the {study} has {len(rows)} {method} groups{_where(filters)}, differing in "
            f"{', '.join(keys) or 'columns outside the group keys'}; the claim needs one"
        )
    return rows.iloc[0]


def _group(df: pd.DataFrame, method: str, study: str, **filters: object) -> _Group:
    row = _select(df, method, study, **filters)
    n = int(row["n_seeds"])
    mean = float(row["final_mean"])
    if n == 0 or not math.isfinite(mean):
        raise _Missing(f"every {method} run in the {study}{_where(filters)} diverged or failed (0 ok seeds)")
    sd = float(row["final_sd"]) if "final_sd" in row.index and pd.notna(row["final_sd"]) else math.nan
    return _Group(mean, sd, n)


def _learns(df: pd.DataFrame, method: str, study: str, **filters: object) -> tuple[bool, str]:
    """Whether ``method`` improves on the pretrained model in this cell beyond 2 standard errors of its
    gain over seeds; a robustness claim about a method that does not learn is vacuous."""
    row = _select(df, method, study, **filters)
    if not {"gain_mean", "gain_sd"} <= set(row.index):
        return True, ""  # no gain columns: nothing to say
    n, gain, sd = int(row["n_seeds"]), float(row["gain_mean"]), float(row["gain_sd"])
    if n < 2 or not math.isfinite(sd):
        return True, ""  # the comparison's own rule reports the unknown se
    se = sd / math.sqrt(n)
    text = f"{NAMES.get(method, method)}'s gain over the pretrained model is {_g(gain)} (2 se {Z * se:.3g})"
    return gain > Z * se, text


def _reference_alpha(df: pd.DataFrame) -> float:
    """The main study's alpha for its claims: 0.5 (FeedSign's) if run, else the most skewed, else iid."""
    honest = _honest(df)
    if honest.empty:
        raise _Missing(f"the {MAIN} has no honest runs")
    alphas = {float(a) for a in honest["alpha"]}
    finite = sorted(a for a in alphas if math.isfinite(a))
    if NON_IID_ALPHA in alphas:
        return NON_IID_ALPHA
    return finite[0] if finite else math.inf


def _setting(row: pd.Series) -> str:
    bits = [str(row[c]) for c in ("model", "task") if c in row.index and pd.notna(row[c])]
    return f" ({', '.join(bits)})" if bits else ""


def _comm_values(comm: pd.DataFrame, method: str, col: str) -> list[float]:
    rows = _honest(comm)
    rows = rows[rows["method"] == method]
    if rows.empty:
        raise _Missing(f"the {COMM} has no {NAMES[method]} ({method}) rows")
    return sorted({float(v) for v in rows[col]})


def _comm_value(comm: pd.DataFrame, method: str, col: str) -> float:
    values = _comm_values(comm, method, col)
    if len(values) > 1:
        raise _Missing(f"{method}'s {col} differs across groups of the {COMM} ({_bits_list(values)})")
    return values[0]


def _bits(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.2f}"


def _bits_list(values: Iterable[float]) -> str:
    return " / ".join(_bits(v) for v in values)


def _sci(x: float) -> str:
    """``4.33e5``: three significant digits without the ``e+05`` noise."""
    if not math.isfinite(x) or x == 0:
        return f"{x:g}"
    exp = math.floor(math.log10(abs(x)))
    mant = x / 10**exp
    if round(abs(mant), 2) >= 10:  # 9.996 rounds to 10.0: carry into the exponent
        mant, exp = mant / 10, exp + 1
    return f"{mant:.3g}e{exp}"


def _pair(main: pd.DataFrame, a: str, b: str) -> tuple[_Group, _Group, float, str]:
    """Groups of ``a`` and ``b`` at the main study's reference alpha, and a description of the setting."""
    honest = _honest(main)
    alpha = _reference_alpha(main)
    ga, gb = _group(honest, a, MAIN, alpha=alpha), _group(honest, b, MAIN, alpha=alpha)
    row = _select(honest, a, MAIN, alpha=alpha)
    return ga, gb, alpha, f"{_alpha_text(alpha)}{_setting(row)}"


def _versus(main: pd.DataFrame, a: str, b: str) -> tuple[_Est, str]:
    """d = a - b at the main study's alpha, and an evidence sentence quoting both groups."""
    ga, gb, _, where = _pair(main, a, b)
    d = ga.est - gb.est
    return d, (
        f"Main study, {where}: {NAMES[a]} {ga}, {NAMES[b]} {gb}; difference {_g(d.value)}, se {d.se:.3g}."
    )


# --------------------------------------------------------------------------------------------------
# FeedSign


def _feedsign_one_bit(ev: Evidence) -> Finding:
    ups = _comm_values(ev.comm, "feedsign", "bits_up_per_client_round")
    downs = _comm_values(ev.comm, "feedsign", "bits_down_per_client_round")
    evidence = (
        f"Counted on the wire: FeedSign sends {_bits_list(ups)} bit up and {_bits_list(downs)} bit down "
        "per client and round (one round is one step)."
    )
    if ups == [1.0] and downs == [1.0]:
        return Finding(evidence, HOLDS, "exact count: one bit each way per client and step")
    return Finding(evidence, DOES_NOT_HOLD, "exact count: the payload is not one bit each way")


def _feedsign_uplink_ratio(ev: Evidence) -> Finding:
    fs = _comm_value(ev.comm, "feedsign", "bits_up_per_client_round")
    zo = _comm_value(ev.comm, "zo-fedsgd", "bits_up_per_client_round")
    ratio = f"1/{zo / fs:g}" if fs > 0 else "0"
    evidence = (
        f"Uplink per client and round: FeedSign {_bits(fs)} bit, ZO-FedSGD {_bits(zo)} bits; ratio {ratio}."
    )
    if fs * 64 == zo:
        return Finding(evidence, HOLDS, "exact count: the ratio is 1/64")
    return Finding(evidence, DOES_NOT_HOLD, f"exact count: the ratio is {ratio}, not 1/64")


def _feedsign_non_iid(ev: Evidence) -> Finding:
    if math.isinf(_reference_alpha(ev.main)):
        raise _Missing(f"the {MAIN} runs only iid partitions; the claim is about Dirichlet (non-iid) clients")
    d, evidence = _versus(ev.main, "feedsign", "zo-fedsgd")
    return Finding(evidence, *_direction(d, "FeedSign - ZO-FedSGD"))


def _feedsign_vs_fo(ev: Evidence) -> Finding:
    d, evidence = _versus(ev.main, "feedsign", "fedavg")
    return Finding(evidence, *_at_least(d, -FEEDSIGN_FO_GAP, "FeedSign - FedAvg"))


def _feedsign_byzantine(ev: Evidence) -> Finding:
    byz = _need(ev.byzantine, BYZ)
    agg = byz["aggregator"].fillna("mean") if "aggregator" in byz.columns else pd.Series("mean", byz.index)
    # FeedSign under its own vote, ZO-FedSGD under its own (plain mean) rule: the paper's comparison.
    fs_rows = byz[(byz["method"] == "feedsign") & agg.isin(OWN_RULES)]
    zo_rows = byz[(byz["method"] == "zo-fedsgd") & (agg == "mean")]
    shared = {float(f) for f in fs_rows["byz_frac"]} & {float(f) for f in zo_rows["byz_frac"]}
    fracs = sorted(f for f in shared if 0 < f < 0.5)
    if not fracs:
        raise _Missing(
            f"the {BYZ} has no Byzantine fraction between 0 and 0.5 run by both FeedSign (its vote) and "
            "ZO-FedSGD (mean)"
        )
    f = fracs[-1]  # the strongest attack that is still a minority
    fs0, fsf = (_group(fs_rows, "feedsign", BYZ, byz_frac=x) for x in (0.0, f))
    zo0, zof = (_group(zo_rows, "zo-fedsgd", BYZ, byz_frac=x) for x in (0.0, f))
    drop_fs, drop_zo = fs0.est - fsf.est, zo0.est - zof.est
    d = drop_zo - drop_fs
    attacks = ""
    if "attack" in byz.columns:
        fs_attack = _select(fs_rows, "feedsign", BYZ, byz_frac=f)["attack"]
        zo_attack = _select(zo_rows, "zo-fedsgd", BYZ, byz_frac=f)["attack"]
        attacks = f" (attacks: FeedSign {fs_attack}, ZO-FedSGD {zo_attack})"
    evidence = (
        f"Byzantine fraction 0 -> {f:g}{attacks}: FeedSign (vote) {fs0} -> {fsf}, drop "
        f"{drop_fs.value:.3f}; ZO-FedSGD (mean) {zo0} -> {zof}, drop {drop_zo.value:.3f}."
    )
    learns, gain_text = _learns(fs_rows, "feedsign", BYZ, byz_frac=0.0)
    if not learns:
        return Finding(
            evidence,
            INCONCLUSIVE,
            f"{gain_text} without attackers: it does not learn at this "
            "budget, so a small drop under attack says little about robustness",
        )
    return Finding(evidence, *_direction(d, "ZO-FedSGD's drop - FeedSign's drop"))


def _feedsign_heterogeneity(ev: Evidence) -> Finding:
    het = _honest(_need(ev.heterogeneity, HETERO))
    alphas = sorted(
        {float(a) for a in het.loc[het["method"] == "feedsign", "alpha"]}
        & {float(a) for a in het.loc[het["method"] == "fedavg", "alpha"]}
    )
    if len(alphas) < 2:
        raise _Missing(f"the {HETERO} has fewer than two alphas run by both FeedSign and FedAvg")
    lo, hi = alphas[0], alphas[-1]
    fs_hi, fs_lo = (_group(het, "feedsign", HETERO, alpha=a) for a in (hi, lo))
    fa_hi, fa_lo = (_group(het, "fedavg", HETERO, alpha=a) for a in (hi, lo))
    drop_fs, drop_fa = fs_hi.est - fs_lo.est, fa_hi.est - fa_lo.est
    evidence = (
        f"From {_alpha_text(hi)} to {_alpha_text(lo)}: FeedSign {fs_hi} -> {fs_lo}, drop "
        f"{drop_fs.value:.3f}; FedAvg {fa_hi} -> {fa_lo}, drop {drop_fa.value:.3f}."
    )
    learns, gain_text = _learns(het, "feedsign", HETERO, alpha=hi)
    if not learns:
        # A method that does not move from its start loses nothing to heterogeneity, trivially.
        return Finding(
            evidence,
            INCONCLUSIVE,
            f"{gain_text} at {_alpha_text(hi)}: it does not learn at this "
            "budget, so there is nothing for heterogeneity to take",
        )
    return Finding(evidence, *_at_most(drop_fs - drop_fa, 0.0, "FeedSign's drop - FedAvg's drop"))


# --------------------------------------------------------------------------------------------------
# FedKSeed and FedKSeed-Pro


def _fedkseed_uplink(ev: Evidence) -> Finding:
    ups = _comm_values(ev.comm, "fedkseed", "bits_up_per_client_round")
    kib = [b / 8 / 1024 for b in ups]
    evidence = (
        f"FedKSeed sends {_bits_list(ups)} bits = {' / '.join(f'{k:.1f}' for k in kib)} KiB up per client "
        "and round, counted on the wire."
    )
    if max(kib) < FEDKSEED_UPLINK_KIB:
        return Finding(evidence, HOLDS, f"exact count: under {FEDKSEED_UPLINK_KIB:g} KiB")
    return Finding(evidence, DOES_NOT_HOLD, f"exact count: not under {FEDKSEED_UPLINK_KIB:g} KiB")


def _fedkseed_vs_fedit(ev: Evidence) -> Finding:
    d, evidence = _versus(ev.main, "fedkseed", "fedavg-lora")
    return Finding(evidence, *_direction(d, "FedKSeed - FedIT"))


def _pro_vs_fedkseed(ev: Evidence) -> Finding:
    d, evidence = _versus(ev.main, "fedkseed-pro", "fedkseed")
    return Finding(evidence, *_direction(d, "FedKSeed-Pro - FedKSeed"))


# --------------------------------------------------------------------------------------------------
# Ferret


def _ferret_comm(ev: Evidence) -> Finding:
    fedavg_up = _comm_value(ev.comm, "fedavg", "bits_up_per_client_round")
    ferret_up = _comm_value(ev.comm, "ferret", "bits_up_per_client_round")
    # FedAvg broadcasts the d trainable weights as float32 and nothing else, so its downlink gives d.
    d = _comm_value(ev.comm, "fedavg", "bits_down_per_client_round") / 32
    ratio = fedavg_up / ferret_up
    evidence = (
        f"Uplink per client and round: FedAvg {_bits(fedavg_up)} bits, Ferret {_bits(ferret_up)} bits; "
        f"FedAvg / Ferret = {_sci(ratio)} at d = {_sci(d)} trainable parameters."
    )
    if ratio >= FERRET_COMM_FLOOR:
        return Finding(
            evidence,
            HOLDS,
            f"the ratio {_sci(ratio)} is of the claimed order 10^6 (log10 rounds to 6 or more)",
        )
    if d >= BILLION:
        return Finding(
            evidence,
            DOES_NOT_HOLD,
            f"the ratio {_sci(ratio)} is below the order of 10^6 even at d = {_sci(d)}",
        )
    return Finding(
        evidence,
        INCONCLUSIVE,
        f"the ratio {_sci(ratio)} misses 10^6, but it grows in proportion to d (FedAvg sends 32 d bits, "
        f"Ferret about 33 K) and this model has d = {_sci(d)}, against the paper's billion-parameter models",
    )


@dataclass(frozen=True)
class _Reach:
    """Rounds to the target as an interval: a run that never reached it needs more than any that did."""

    lo: float
    hi: float
    text: str


def _reach(to_target: pd.DataFrame, method: str) -> _Reach:
    row = _select(to_target, method, TARGET)
    n_runs, n_reached = int(row["n_runs"]), int(row["n_reached"])
    rounds = float(row["rounds_to_target_mean"])
    counts = f"{n_reached} of {n_runs} runs"
    if n_reached == 0 or not math.isfinite(rounds):
        return _Reach(math.inf, math.inf, f"{NAMES[method]} never ({counts})")
    if n_reached < n_runs:
        # The mean is over the runs that reached it; the others would need more: a lower bound only.
        return _Reach(
            rounds, math.inf, f"{NAMES[method]} {rounds:g} over the runs that reached it ({counts})"
        )
    return _Reach(rounds, rounds, f"{NAMES[method]} {rounds:g} ({counts})")


def _surely_le(a: _Reach, b: _Reach, slack: float) -> bool | None:
    """Is a <= b + slack for every value in the intervals (True), for none (False), or undecided (None)?"""
    if math.isfinite(a.hi) and a.hi <= b.lo + slack:
        return True
    if math.isfinite(b.hi) and a.lo > b.hi + slack:
        return False
    return None


def _surely_lt(a: _Reach, b: _Reach) -> bool | None:
    if math.isfinite(a.hi) and a.hi < b.lo:
        return True
    if math.isfinite(b.hi) and a.lo >= b.hi:
        return False
    return None


def _target_text(to_target: pd.DataFrame) -> str:
    if "target" not in to_target.columns:
        return "the target"
    targets = sorted({str(t) if not isinstance(t, float) else f"{t:g}" for t in to_target["target"]})
    return f"the target {' / '.join(targets)}"


def _ferret_rounds(ev: Evidence) -> Finding:
    tt = _need(ev.to_target, TARGET)
    fe, fa, fk = (_reach(tt, m) for m in ("ferret", "fedavg", "fedkseed"))
    evidence = f"Mean rounds to reach {_target_text(tt)}: {fe.text}; {fa.text}; {fk.text}."
    near_fedavg, below_fedkseed = _surely_le(fe, fa, 1.0), _surely_lt(fe, fk)
    if near_fedavg and below_fedkseed:
        return Finding(
            evidence, HOLDS, "Ferret needs at most one round more than FedAvg and fewer than FedKSeed"
        )
    if near_fedavg is False:
        return Finding(evidence, DOES_NOT_HOLD, "Ferret needs more than one round more than FedAvg")
    if below_fedkseed is False:
        return Finding(evidence, DOES_NOT_HOLD, "Ferret needs no fewer rounds than FedKSeed")
    return Finding(
        evidence,
        INCONCLUSIVE,
        "a method reached the target in only some runs or not at all, which leaves the order undecided",
    )


def _ferret_compute(ev: Evidence) -> Finding:
    tt = _need(ev.to_target, TARGET)
    cost = _need(ev.cost, COST)
    fe, fk = _reach(tt, "ferret"), _reach(tt, "fedkseed")
    c_fe = float(_select(cost, "ferret", COST)["client_seconds_per_round_mean"])
    c_fk = float(_select(cost, "fedkseed", COST)["client_seconds_per_round_mean"])
    head = (
        f"Client seconds per round: Ferret {c_fe:.3g}, FedKSeed {c_fk:.3g}; rounds to {_target_text(tt)}: "
        f"{fe.text}; {fk.text}"
    )
    shared = "timings come from a machine shared with other jobs"
    if math.isinf(fe.lo):
        # Refuted only against a FedKSeed that reached it in every run; otherwise nothing to compare.
        verdict = DOES_NOT_HOLD if math.isfinite(fk.hi) else INCONCLUSIVE
        return Finding(f"{head}.", verdict, f"Ferret never reached the target; {fk.text}")
    if not (math.isfinite(fk.hi) and fe.lo == fe.hi and fk.lo == fk.hi):
        # A never-reached FedKSeed needs more rounds than it ran, but how many more is unknown, so no
        # factor can be claimed from it.
        return Finding(
            f"{head}.",
            INCONCLUSIVE,
            "not every run reached the target, so the compute to reach it is unknown",
        )
    ratio = (c_fk * fk.lo) / (c_fe * fe.lo)
    evidence = (
        f"{head}. Client compute to the target: FedKSeed {c_fk * fk.lo:.3g} s, Ferret {c_fe * fe.lo:.3g} s; "
        f"ratio {ratio:.3g}."
    )
    if ratio >= FERRET_COMPUTE_RATIO:
        return Finding(
            evidence, HOLDS, f"FedKSeed / Ferret = {ratio:.3g} >= {FERRET_COMPUTE_RATIO:g}; {shared}"
        )
    if ratio < 1:
        return Finding(
            evidence, DOES_NOT_HOLD, f"Ferret needs more client compute than FedKSeed ({ratio:.3g}); {shared}"
        )
    return Finding(
        evidence,
        INCONCLUSIVE,
        f"Ferret needs less client compute, but {ratio:.3g}x rather than {FERRET_COMPUTE_RATIO:g}x; the "
        f"factor depends on model size, local steps and K, and {shared}",
    )


def _ferret_accuracy(ev: Evidence) -> Finding:
    d, evidence = _versus(ev.main, "ferret", "fedavg")
    return Finding(evidence, *_at_least(d, 0.0, "Ferret - FedAvg"))


# --------------------------------------------------------------------------------------------------
# one-shot FL


def _oneshot_gaps(ev: Evidence) -> tuple[list[tuple[float, str, _Group, _Group]], float]:
    """(size, model, FedAvg, one-shot) per model size run by both, ascending, and the alpha used."""
    os_df = _honest(_need(ev.oneshot, ONESHOT))
    alpha = math.nan
    if "alpha" in os_df.columns:
        alphas = sorted({float(a) for a in os_df["alpha"]})
        try:
            ref = _reference_alpha(ev.main)
        except _Missing:
            ref = math.nan
        # The main study's alpha where the size study ran it, so the two speak of one setting.
        alpha = ref if ref in alphas else alphas[0] if alphas else math.nan
        os_df = os_df[os_df["alpha"] == alpha]
    sizes = sorted(
        {float(s) for s in os_df.loc[os_df["method"] == "fedavg", "size"]}
        & {float(s) for s in os_df.loc[os_df["method"] == "oneshot", "size"]}
    )
    if not sizes:
        raise _Missing(f"the {ONESHOT} has no model size run by both FedAvg and one-shot")
    out = []
    for s in sizes:
        row = _select(os_df, "fedavg", ONESHOT, size=s)
        model = str(row["model"]) if "model" in row.index else "model"
        out.append(
            (s, model, _group(os_df, "fedavg", ONESHOT, size=s), _group(os_df, "oneshot", ONESHOT, size=s))
        )
    return out, alpha


def _gap_text(size: float, model: str, fa: _Group, os_: _Group) -> str:
    gap = fa.est - os_.est
    return f"{model} ({_sci(size)} parameters): FedAvg {fa}, one-shot {os_}, gap {_g(gap.value)}"


def _oneshot_matches(ev: Evidence) -> Finding:
    gaps, alpha = _oneshot_gaps(ev)
    size, model, fa, os_ = gaps[-1]
    at = f" at {_alpha_text(alpha)}" if not math.isnan(alpha) else ""
    evidence = f"Largest model{at}: {_gap_text(size, model, fa, os_)}."
    verdict, reason = _at_most(fa.est - os_.est, 0.0, "FedAvg - one-shot")
    if size < BILLION:
        reason += f"; the paper's models have 1e9 to 1.3e10 parameters, this one {_sci(size)}"
    return Finding(evidence, verdict, reason)


def _oneshot_shrinks(ev: Evidence) -> Finding:
    gaps, alpha = _oneshot_gaps(ev)
    if len(gaps) < 2:
        raise _Missing(f"the {ONESHOT} has only one model size run by both FedAvg and one-shot")
    small, large = gaps[0], gaps[-1]
    gap_small, gap_large = small[2].est - small[3].est, large[2].est - large[3].est
    at = f" at {_alpha_text(alpha)}" if not math.isnan(alpha) else ""
    evidence = f"Gap FedAvg - one-shot{at}: smallest {_gap_text(*small)}; largest {_gap_text(*large)}."
    return Finding(evidence, *_direction(gap_small - gap_large, "smallest model's gap - largest model's gap"))


# --------------------------------------------------------------------------------------------------
# the table

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "feedsign-one-bit",
        "FeedSign",
        "Each client uploads a single sign bit per step and the server broadcasts a single bit back.",
        _feedsign_one_bit,
    ),
    Claim(
        "feedsign-uplink-1/64",
        "FeedSign",
        "FeedSign's uplink is 1/64 of ZO-FedSGD's (one bit against a 32-bit seed and a 32-bit scalar).",
        _feedsign_uplink_ratio,
    ),
    Claim(
        "feedsign-non-iid",
        "FeedSign",
        "On label-skewed clients (Dirichlet 0.5) FeedSign ends more accurate than ZO-FedSGD "
        "(reported: 3.6 points on SST-2, 4.0 on RTE).",
        _feedsign_non_iid,
    ),
    Claim(
        "feedsign-vs-fo",
        "FeedSign",
        "FeedSign gives up about 6 points against first-order full fine-tuning, not more.",
        _feedsign_vs_fo,
    ),
    Claim(
        "feedsign-byzantine",
        "FeedSign",
        "A minority of Byzantine clients that reverse their vote hurts FeedSign less than attackers hurt "
        "ZO-FedSGD's mean.",
        _feedsign_byzantine,
    ),
    Claim(
        "feedsign-heterogeneity",
        "FeedSign",
        "More heterogeneous client data costs FeedSign no more accuracy than it costs first-order FedAvg.",
        _feedsign_heterogeneity,
    ),
    Claim(
        "fedkseed-uplink-18kb",
        "FedKSeed",
        "A client uploads less than 18 KB per round.",
        _fedkseed_uplink,
    ),
    Claim(
        "fedkseed-vs-fedit",
        "FedKSeed",
        "FedKSeed is more accurate than FedIT (federated LoRA).",
        _fedkseed_vs_fedit,
    ),
    Claim(
        "pro-vs-fedkseed",
        "FedKSeed-Pro",
        "Sampling seeds by their importance makes FedKSeed-Pro more accurate than FedKSeed.",
        _pro_vs_fedkseed,
    ),
    Claim(
        "ferret-comm-1e6",
        "Ferret",
        "Ferret uploads about a millionth of FedAvg's bits.",
        _ferret_comm,
    ),
    Claim(
        "ferret-rounds",
        "Ferret",
        "Ferret reaches its accuracy in about as few rounds as FedAvg and in far fewer than FedKSeed.",
        _ferret_rounds,
    ),
    Claim(
        "ferret-compute-6x",
        "Ferret",
        "Ferret needs about 6 times less client compute than FedKSeed to reach the same accuracy.",
        _ferret_compute,
    ),
    Claim(
        "ferret-vs-fedavg",
        "Ferret",
        "Ferret's accuracy is comparable to first-order FedAvg's.",
        _ferret_accuracy,
    ),
    Claim(
        "oneshot-matches",
        "One-shot FL",
        "For a large pre-trained model one communication round matches multi-round FedAvg at equal local "
        "compute.",
        _oneshot_matches,
    ),
    Claim(
        "oneshot-gap-shrinks",
        "One-shot FL",
        "The gap between multi-round FedAvg and one round shrinks as the model grows.",
        _oneshot_shrinks,
    ),
)


def assess(claim: Claim, ev: Evidence) -> Finding:
    """One claim's finding; evidence this config lacks makes it inconclusive, naming what is missing."""
    try:
        found = claim.judge(ev)
    except _Missing as missing:
        found = Finding("not measured in this config", INCONCLUSIVE, f"missing evidence: {missing}")
    if found.verdict not in VERDICTS:
        raise AssertionError(f"{claim.key}: verdict {found.verdict!r} is not one of {VERDICTS}")
    return found


def largest_model(main: pd.DataFrame) -> str:
    """The model of the main table with the most weights (its ``parameters`` column, the pretrained
    model's size), or its only model; ValueError when several models and no sizes."""
    models = sorted(set(main["model"].astype(str)))
    if len(models) == 1:
        return models[0]
    if PARAMETERS not in main.columns or main[PARAMETERS].isna().all():
        raise ValueError(
            f"the main table holds models {models} but no {PARAMETERS!r} column to tell the largest"
        )
    return str(main.loc[main[PARAMETERS].astype(float).idxmax(), "model"])


def claims_table(ev: Evidence) -> pd.DataFrame:
    """One row per claim of ``CLAIMS``, in that order: paper, claim, evidence, verdict, reason."""
    records = []
    for claim in CLAIMS:
        found = assess(claim, ev)
        records.append(
            {
                "paper": claim.paper,
                "claim": claim.text,
                "evidence": found.evidence,
                "verdict": found.verdict,
                "reason": found.reason,
            }
        )
    return pd.DataFrame(records, columns=list(COLUMNS))


def write_claims(table: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    """The claims table as CSV and as Markdown, each replaced atomically (never half-written)."""
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, to_markdown(table))
