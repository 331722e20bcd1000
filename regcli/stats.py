"""Just enough statistics to say whether two groups of seeds differ: Welch's t interval.

Two runs of the same configuration with different seeds differ by about 0.1 point of test
accuracy, so a single run per variant cannot rank variants. With several seeds per variant, the
difference of the means gets a 95% confidence interval from Welch's t (unequal variances), and a
plain verdict: "within noise" when the interval contains zero.
"""

import math
from dataclasses import dataclass


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sample_std(values: list[float]) -> float:
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

    def verdict(self, unit: str = "points") -> str:
        if math.isnan(self.half_width):
            return "needs at least 2 seeds on each side"
        if self.low <= 0 <= self.high:
            return f"within noise ({self.estimate:+.2f} +- {self.half_width:.2f} {unit})"
        direction = "better" if self.estimate > 0 else "worse"
        return f"{direction} by {abs(self.estimate):.2f} +- {self.half_width:.2f} {unit}"


def mean_half_width(values: list[float], confidence: float = 0.95) -> float:
    """Half width of the t confidence interval of the mean; nan for fewer than 2 values."""
    if len(values) < 2:
        return math.nan
    quantile = t_quantile(1 - (1 - confidence) / 2, len(values) - 1)
    return quantile * sample_std(values) / math.sqrt(len(values))


def welch(a: list[float], b: list[float], confidence: float = 0.95) -> Difference:
    """mean(a) - mean(b) with Welch's t confidence interval."""
    if not a or not b:
        raise ValueError("welch needs values on both sides")
    estimate = mean(a) - mean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, math.nan, math.nan)
    va, vb = sample_std(a) ** 2 / len(a), sample_std(b) ** 2 / len(b)
    if va + vb == 0:  # identical runs on both sides: no spread, the difference is exact
        return Difference(estimate, 0.0, math.inf)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half_width = t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(va + vb)
    return Difference(estimate, half_width, df)
