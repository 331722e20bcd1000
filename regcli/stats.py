"""Seed statistics: one function, `seed_stats`, summarizes the values of a group of seeds, and
Welch's t interval says whether two such groups differ.

Two runs of the same configuration with different seeds differ by about 0.1 point of test
accuracy, so a single run per variant cannot rank variants. With several seeds per variant, each
quantity gets its mean, spread and the 95% interval of its mean; the difference of two groups'
means gets a 95% confidence interval from Welch's t (unequal variances), and a plain verdict:
"within noise" when the interval contains zero.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


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


@dataclass(frozen=True)
class Difference:
    estimate: float  # mean(a) - mean(b)
    half_width: float  # of the confidence interval; nan when it cannot be computed
    df: float  # Welch-Satterthwaite degrees of freedom

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    @property
    def worse(self) -> bool:
        """The whole interval lies below zero: a measurable loss (never with no interval)."""
        return self.high < 0

    def verdict(self, unit: str = "points") -> str:
        if math.isnan(self.half_width):
            return "needs at least 2 seeds on each side"
        if self.low <= 0 <= self.high:
            return f"within noise ({self.estimate:+.2f} +- {self.half_width:.2f} {unit})"
        direction = "better" if self.estimate > 0 else "worse"
        return f"{direction} by {abs(self.estimate):.2f} +- {self.half_width:.2f} {unit}"


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

    @property
    def spread(self) -> float:
        return self.max - self.min

    def versus(self, baseline: "SeedStats") -> Difference:
        """self.mean - baseline.mean with Welch's t interval, at self's confidence."""
        estimate = self.mean - baseline.mean
        if self.n < 2 or baseline.n < 2:
            return Difference(estimate, math.nan, math.nan)
        va, vb = self.std**2 / self.n, baseline.std**2 / baseline.n
        if va + vb == 0:  # identical runs on both sides: no spread, the difference is exact
            return Difference(estimate, 0.0, math.inf)
        df = (va + vb) ** 2 / (va**2 / (self.n - 1) + vb**2 / (baseline.n - 1))
        half_width = t_quantile(1 - (1 - self.confidence) / 2, df) * math.sqrt(va + vb)
        return Difference(estimate, half_width, df)


def seed_stats(values: Sequence[float], confidence: float = 0.95) -> SeedStats:
    """Count, mean, spread and the t interval of the mean of one quantity over some seeds."""
    if not values:
        raise ValueError("seed_stats needs at least one value")
    n, std = len(values), sample_std(values)
    half_width = None
    if n >= 2:
        half_width = t_quantile(1 - (1 - confidence) / 2, n - 1) * std / math.sqrt(n)
    return SeedStats(n, mean(values), std, min(values), max(values), half_width, confidence)


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """mean(a) - mean(b) with Welch's t confidence interval."""
    if not a or not b:
        raise ValueError("welch needs values on both sides")
    return seed_stats(a, confidence).versus(seed_stats(b, confidence))
