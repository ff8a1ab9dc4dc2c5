"""How sure a comparison is: a paired bootstrap of per-query differences, and a Wilson interval of a rate.

Two rankers scored on the same queries differ query by query; the mean of those differences
is the comparison, and resampling the queries (with replacement, the pairs kept together)
gives its sampling distribution. The percentile interval of the resampled means is what a
decision states: "candidate - champion: +0.012 [-0.004, +0.029], 95%, 459 queries".
Pairing matters: two models' scores on one query move together (a hard query is hard for
both), so the paired interval is several times narrower than one built from the two means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
CHUNK_VALUES = 4_000_000  # resampled values held at once (32 MB of float64), whatever the query count


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    confidence: float
    queries: int

    def __str__(self) -> str:
        return f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}], {self.confidence:.0%}, {self.queries:,} queries"


def paired_bootstrap(differences, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """The mean of per-query `differences` and its percentile bootstrap interval at `confidence`."""
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"paired_bootstrap needs a non-empty list of per-query differences, got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_VALUES // len(values))
    means = np.concatenate(
        [
            values[rng.integers(0, len(values), size=(min(per_chunk, resamples - done), len(values)))].mean(axis=1)
            for done in range(0, resamples, per_chunk)
        ]
    )
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(values.mean()), float(low), float(high), confidence, len(values))


def wilson_low(successes, trials, confidence: float) -> np.ndarray:
    """The low end of the Wilson interval of each rate successes / trials at `confidence` (0: the rate
    itself). Trials may be fractional (expected examined impressions) and fewer than the successes;
    the rate is then taken as 1."""
    successes, trials = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    if (trials <= 0).any() or (successes < 0).any():
        raise ValueError("wilson_low needs trials > 0 and successes >= 0")
    rate = np.minimum(successes / trials, 1.0)
    return rate if confidence == 0 else _wilson(rate, trials, confidence)[0]


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the rate successes / trials (trials > 0) at `confidence`."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"wilson needs 0 <= successes <= trials and trials > 0, got {successes} of {trials}")
    low, high = _wilson(np.float64(successes / trials), np.float64(trials), confidence)
    return float(low), float(high)


def _wilson(rate, trials, confidence: float):
    from statistics import NormalDist

    z2 = NormalDist().inv_cdf(1 - (1 - confidence) / 2) ** 2
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = np.sqrt(z2 * rate * (1 - rate) / trials + z2 * z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return centre - half, centre + half
