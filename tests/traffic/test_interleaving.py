"""Team-draft interleaving: fair picks, every item once, clicks credited to the side that picked them."""

import random

import pytest

from smar.traffic.interleaving import SIDES, credit, preference, team_draft

CHAMPION, CHALLENGER = SIDES


def test_each_side_picks_its_best_item_not_yet_shown_and_the_picks_stay_balanced():
    first, second = list("abcdefgh"), list("bxaycwdvuts")  # neither runs out within 8
    for seed in range(50):
        shown, sides = team_draft(first, second, 8, random.Random(seed))
        assert len(shown) == len(set(shown)) == 8  # every item once
        for n in range(1, 9):  # after any prefix, neither side has more than one pick over the other
            assert abs(sides[:n].count(CHAMPION) - sides[:n].count(CHALLENGER)) <= 1
        for side, ranking in ((CHAMPION, first), (CHALLENGER, second)):
            picked = [item for item, by in zip(shown, sides) if by == side]
            positions = [ranking.index(item) for item in picked]
            assert positions == sorted(positions)  # in that side's own order


def test_a_coin_decides_who_picks_first_and_identical_rankings_show_that_ranking():
    firsts = {team_draft(list("abc"), list("xyz"), 2, random.Random(seed))[1][0] for seed in range(20)}
    assert firsts == {CHAMPION, CHALLENGER}
    shown, sides = team_draft(list("abcd"), list("abcd"), 4, random.Random(3))
    assert shown == list("abcd") and sides.count(CHAMPION) == sides.count(CHALLENGER) == 2


def test_when_one_ranking_runs_out_the_other_fills_the_page():
    shown, sides = team_draft(["a"], list("bcde"), 4, random.Random(0))
    assert sorted(shown) == list("abcd") and sides.count(CHAMPION) == 1
    assert team_draft([], [], 5, random.Random(0)) == ([], [])


@pytest.mark.parametrize(
    ("clicks", "winner"),
    [([1], CHAMPION), ([2], CHALLENGER), ([1, 2], None), ([], None), ([2, 4, 1], CHALLENGER), ([9], None)],
)
def test_clicks_credit_the_side_that_picked_the_item(clicks, winner):
    sides = [CHAMPION, CHALLENGER, CHAMPION, CHALLENGER]
    assert credit(sides, clicks) == winner


def test_the_preference_says_how_sure_it_is():
    even = preference([CHALLENGER, CHAMPION] * 200 + [None] * 100)
    assert (even.searches, even.wins, even.losses, even.ties) == (500, 200, 200, 100)
    assert even.share == 0.5 and even.low < 0.5 < even.high and even.verdict == "not distinguishable"
    better = preference([CHALLENGER] * 260 + [CHAMPION] * 200)
    assert better.low > 0.5 and better.verdict == "challenger better"
    assert preference([CHAMPION] * 30 + [CHALLENGER] * 10).verdict == "challenger worse"
    assert preference([None, None]).share is None and preference([]).verdict == "not distinguishable"


def test_over_many_searches_interleaving_finds_the_ranking_shoppers_prefer():
    """Simulated shoppers (examination 1/position, relevant clicked 0.7, others 0.05) on a
    champion with 3 relevant items in its top 10 and a challenger with 4: the challenger wins."""
    rng = random.Random(0)
    items = [f"i{n}" for n in range(40)]
    relevant = set(items[:6])
    champion = ["i0", "x1", "i1", "x2", "x3", "i2", "x4", "x5", "x6", "x7"]
    challenger = ["i0", "i3", "x1", "i1", "x2", "i2", "x3", "x4", "x5", "x6"]
    outcomes = []
    for _ in range(3000):
        shown, sides = team_draft(champion, challenger, 10, rng)
        clicks = [
            position
            for position, item in enumerate(shown, start=1)
            if rng.random() < 1 / position and rng.random() < (0.7 if item in relevant else 0.05)
        ]
        outcomes.append(credit(sides, clicks))
    assert preference(outcomes).verdict == "challenger better"
