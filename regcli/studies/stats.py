"""Seed statistics: `seed_stats` summarizes one quantity over a group of seeds, and `versus`
says whether two groups differ, in the way the design allows.

Two runs of the same configuration with different seeds differ by about 0.1 point of test
accuracy, so a single run per variant cannot rank variants. Seed k gives the same initial weights
and data order in every cell of a study, so two groups of the same seeds are compared seed by
seed: the mean of the per-seed differences with its paired t interval. Groups of other seeds get
Welch's t interval (unequal variances). Every difference carries its two-sided p; within one
study the p of all its comparisons are adjusted together by Holm's step-down correction, and a
difference is "measurable" only when its adjusted p is below ALPHA. A trend along a path (slope
per decade of strength, seeds as fixed effects) and the one-standard-error choice of a strength
(glmnet's lambda.1se) complete the set.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

ALPHA = 0.05  # a difference is measurable when its (Holm-adjusted) two-sided p is below this


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with Bessel's correction; 0 for a single value."""
    if len(values) < 2 or min(values) == max(values):
        return 0.0  # exactly: rounding in the mean must not invent a spread
    centre = mean(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))


def t_cdf(x: float, df: float) -> float:
    """Student's t cumulative distribution, by Simpson integration of the density from 0."""
    if x < 0:
        return 1 - t_cdf(-x, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda t: math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))  # noqa: E731
    intervals = 2_000
    h = x / intervals
    total = density(0) + density(x)
    total += sum((4 if i % 2 else 2) * density(i * h) for i in range(1, intervals))
    return 0.5 + total * h / 3


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The value t with t_cdf(t, df) = p (bisection; p in (0.5, 1))."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(df):  # no spread at all: the difference is exact
        return 0.0 if t else 1.0
    return max(0.0, min(1.0, 2 * (1 - t_cdf(abs(t), df))))


def p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


@dataclass(frozen=True)
class Difference:
    estimate: float  # mean(a) - mean(b), or the mean of the per-seed differences
    half_width: float  # of the 95% confidence interval; nan when it cannot be computed
    df: float  # degrees of freedom (n - 1 paired, Welch-Satterthwaite unpaired)
    method: str = "Welch"  # "paired": seed by seed; "Welch": groups of different seeds
    p: float | None = None  # two-sided p of "no difference" (None without an interval)
    adjusted_p: float | None = None  # after Holm's correction over the study's comparisons

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    @property
    def decisive_p(self) -> float | None:
        return self.adjusted_p if self.adjusted_p is not None else self.p

    @property
    def measurable(self) -> bool:
        """Its p (Holm-adjusted, where the study has several comparisons) is below ALPHA."""
        return self.decisive_p is not None and self.decisive_p < ALPHA

    @property
    def worse(self) -> bool:
        """A measurable loss."""
        return self.measurable and self.estimate < 0

    def verdict(self, unit: str = "points") -> str:
        if math.isnan(self.half_width):
            return "needs at least 2 seeds on each side"
        which = "Holm p" if self.adjusted_p is not None else "p"
        test = f"{self.method}, {which} {p_text(self.decisive_p)}"
        size = f"{self.half_width:.2f} {unit}; {test}"
        if not self.measurable:
            return f"within noise ({self.estimate:+.2f} +- {size})"
        direction = "better" if self.estimate > 0 else "worse"
        return f"{direction} by {abs(self.estimate):.2f} +- {size}"


def t_interval(estimate: float, variance: float, df: float, confidence: float, method: str):
    """A Difference from its estimate, its estimate's variance and degrees of freedom."""
    if variance == 0:  # identical runs on both sides: no spread, the difference is exact
        return Difference(estimate, 0.0, math.inf, method, 0.0 if estimate else 1.0)
    se = math.sqrt(variance)
    half_width = t_quantile(1 - (1 - confidence) / 2, df) * se
    return Difference(estimate, half_width, df, method, two_sided_p(estimate / se, df))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest p times
    (m - i + 1), made non-decreasing, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_adjusted(differences: Sequence[Difference | None]) -> list[Difference | None]:
    """The differences of one study with their p adjusted together (those without a p keep
    none); None stays None."""
    tested = [i for i, d in enumerate(differences) if d is not None and d.p is not None]
    adjusted = holm([differences[i].p for i in tested])
    out = list(differences)
    for i, p in zip(tested, adjusted, strict=True):
        out[i] = replace(differences[i], adjusted_p=p)
    return out


def verdict(difference: Difference | None, absent: str = "-") -> str:
    """A difference's verdict, or `absent` where nothing was compared."""
    return difference.verdict() if difference is not None else absent


@dataclass(frozen=True)
class SeedStats:
    """One quantity over a group of seeds. No NaN: what one value cannot say is None."""

    n: int
    mean: float
    std: float  # sample standard deviation (Bessel); 0 for one value
    min: float
    max: float
    half_width: float | None  # of the confidence interval of the mean; None for one value
    confidence: float = 0.95
    by_seed: tuple[tuple[int, float], ...] = ()  # (seed, value), when the seeds are known

    @property
    def spread(self) -> float:
        return self.max - self.min

    def versus(self, baseline: "SeedStats") -> Difference:
        """self - baseline: seed by seed (paired t) when both hold the same seeds, else Welch."""
        mine, theirs = dict(self.by_seed), dict(baseline.by_seed)
        if mine and set(mine) == set(theirs) and len(mine) == self.n == baseline.n:
            return paired([mine[k] for k in sorted(mine)], [theirs[k] for k in sorted(mine)])
        estimate = self.mean - baseline.mean
        if self.n < 2 or baseline.n < 2:
            return Difference(estimate, math.nan, math.nan)
        va, vb = self.std**2 / self.n, baseline.std**2 / baseline.n
        if va + vb == 0:
            return t_interval(estimate, 0.0, math.inf, self.confidence, "Welch")
        df = (va + vb) ** 2 / (va**2 / (self.n - 1) + vb**2 / (baseline.n - 1))
        return t_interval(estimate, va + vb, df, self.confidence, "Welch")


def seed_stats(
    values: Sequence[float], confidence: float = 0.95, seeds: Sequence[int] | None = None
) -> SeedStats:
    """Count, mean, spread and the t interval of the mean of one quantity over some seeds
    (give `seeds`, in the same order, to let two groups be compared seed by seed)."""
    if not values:
        raise ValueError("seed_stats needs at least one value")
    n, std = len(values), sample_std(values)
    half_width = None
    if n >= 2:
        half_width = t_quantile(1 - (1 - confidence) / 2, n - 1) * std / math.sqrt(n)
    by_seed = tuple(zip(seeds, values, strict=True)) if seeds is not None else ()
    return SeedStats(
        n, mean(values), std, min(values), max(values), half_width, confidence, by_seed
    )


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """The mean of the per-seed differences a[i] - b[i], with its paired t interval."""
    if len(a) != len(b) or not a:
        raise ValueError("paired needs the same seeds on both sides")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    estimate, n = mean(differences), len(differences)
    if n < 2:
        return Difference(estimate, math.nan, math.nan, "paired")
    variance = sample_std(differences) ** 2 / n
    return t_interval(estimate, variance, n - 1, confidence, "paired")


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """mean(a) - mean(b) with Welch's t confidence interval."""
    if not a or not b:
        raise ValueError("welch needs values on both sides")
    return seed_stats(a, confidence).versus(seed_stats(b, confidence))


@dataclass(frozen=True)
class Trend:
    """The slope of a quantity per decade of strength, with its 95% interval and p."""

    slope: float  # change per factor of 10 in strength
    half_width: float  # nan when it cannot be computed
    p: float | None
    points: int

    def text(self, unit: str = "points") -> str:
        return (
            f"{self.slope:+.2f} +- {self.half_width:.2f} {unit} per decade of strength "
            f"(p {p_text(self.p)})"
        )


def trend(points: Sequence[tuple[float, int, float]], confidence: float = 0.95) -> Trend:
    """Least squares slope of value against log10(strength) over (strength, seed, value)
    points, each seed with its own intercept (a fixed effect: seeds are paired across cells)."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for strength, seed, value in points:
        by_seed.setdefault(seed, []).append((math.log10(strength), value))
    centred = []
    for values in by_seed.values():
        mx, my = mean([x for x, _ in values]), mean([y for _, y in values])
        centred += [(x - mx, y - my) for x, y in values]
    sxx = sum(x * x for x, _ in centred)
    df = len(centred) - len(by_seed) - 1
    if sxx == 0 or df < 1:
        return Trend(math.nan, math.nan, None, len(centred))
    slope = sum(x * y for x, y in centred) / sxx
    residual = sum((y - slope * x) ** 2 for x, y in centred) / df
    if residual == 0:
        return Trend(slope, 0.0, 0.0 if slope else 1.0, len(centred))
    se = math.sqrt(residual / sxx)
    half_width = t_quantile(1 - (1 - confidence) / 2, df) * se
    return Trend(slope, half_width, two_sided_p(slope / se, df), len(centred))


def one_standard_error(choices: Sequence[tuple[float, SeedStats]]) -> float:
    """The one-standard-error rule (glmnet's lambda.1se): of (strength, validation accuracy)
    pairs, the strongest strength whose mean is within one standard error of the best mean
    (the best's standard error over its seeds)."""
    if not choices:
        raise ValueError("one_standard_error needs at least one strength")
    best = max(choices, key=lambda c: c[1].mean)[1]
    threshold = best.mean - (best.std / math.sqrt(best.n) if best.n > 1 else 0.0)
    return max(strength for strength, stats in choices if stats.mean >= threshold)
