"""The paired bootstrap: intervals that cover the truth as often as they say, narrower when paired."""

import numpy as np
import pytest

from smar.core import intervals
from smar.core.intervals import paired_bootstrap


def test_a_95_percent_interval_covers_the_true_difference_about_95_times_in_100():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(100):
        differences = rng.normal(0.02, 0.1, size=100)  # the true mean difference is 0.02
        interval = paired_bootstrap(differences, resamples=1_000, seed=trial)
        covered += interval.low <= 0.02 <= interval.high
    assert 88 <= covered <= 99  # binomial(100, 0.95): 95 +- 2.2


def test_pairing_makes_the_interval_narrower_than_the_two_scores_apart():
    rng = np.random.default_rng(1)
    hardness = rng.uniform(0, 1, size=300)  # a hard query is hard for both rankers
    champion = np.clip(hardness + rng.normal(0, 0.05, 300), 0, 1)
    candidate = np.clip(hardness + 0.01 + rng.normal(0, 0.05, 300), 0, 1)
    paired = paired_bootstrap(candidate - champion)
    unpaired_half_width = 1.96 * np.sqrt(candidate.var() / 300 + champion.var() / 300)
    assert (paired.high - paired.low) / 2 < unpaired_half_width / 3


def test_it_is_reproducible_and_says_what_it_covers(monkeypatch):
    differences = [0.0, 1.0, 0.0, 0.5, -0.5] * 20
    first, second = paired_bootstrap(differences, seed=3), paired_bootstrap(differences, seed=3)
    assert first == second and first.queries == 100 and first.low < first.mean == 0.2 < first.high
    assert str(first).startswith("+0.2000 [") and str(first).endswith("95%, 100 queries")
    monkeypatch.setattr(intervals, "CHUNK_VALUES", 1_000)  # resampled in chunks of 10: the same draws
    assert paired_bootstrap(differences, seed=3) == first


@pytest.mark.parametrize(("differences", "confidence"), [([], 0.95), ([0.1, 0.2], 1.0), ([[0.1]], 0.95)])
def test_bad_input_is_refused_naming_what_is_wrong(differences, confidence):
    with pytest.raises(ValueError, match="differences|confidence"):
        paired_bootstrap(differences, confidence)


def test_wilson_matches_hand_computed_intervals():
    # 50 of 100 at 95%: 0.5 -+ 1.96 sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    low, high = intervals.wilson(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    low, high = intervals.wilson(0, 200)  # none seen: the interval still bounds the rate
    assert low == pytest.approx(0.0, abs=1e-12) and round(high, 4) == 0.0188
    with pytest.raises(ValueError, match="successes <= trials"):
        intervals.wilson(3, 2)


def test_wilson_low_is_the_intervals_low_end_and_takes_expected_trials():
    assert intervals.wilson_low([50], [100], 0.95)[0] == pytest.approx(intervals.wilson(50, 100)[0])
    assert intervals.wilson_low([2, 2], [4.0, 1.6], 0.0).tolist() == [0.5, 1.0]  # 0: the rate, at most 1
    # 2 events in 4 examined impressions are weaker evidence of the same rate than 8 in 16
    few, many = intervals.wilson_low([2, 8], [4.0, 16.0], 0.9)
    assert few < 0.2 < many
