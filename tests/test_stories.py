"""The incident stories (tests/stories.py), each held to what a team would call right: no
wrong write, message or claim; nobody touched more than the story needs; every incident
closed without a person where none was needed; and few messages per incident."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.stories import STORIES, Score, played


@pytest.mark.parametrize("story", STORIES, ids=[s.__name__ for s in STORIES])
def test_each_story_acts_rightly_with_the_least_touches(story: object, tmp_path: Path) -> None:
    with played(tmp_path) as play:
        score: Score = story(play)  # type: ignore[operator]
    assert score.wrong == []
    assert score.touches == score.least_touches
    assert score.closed_alone in (True, None)
    assert score.messages <= 6 * max(1, score.incidents)


def test_the_stories_cost_few_messages_per_incident(tmp_path: Path) -> None:
    scores = []
    for n, story in enumerate(STORIES):
        with played(tmp_path / str(n)) as play:
            scores.append(story(play))
    per_incident = [s.per_incident for s in scores]
    assert len(scores) >= 12
    assert statistics.median(per_incident) <= 2
    assert statistics.mean(per_incident) <= 3
    assert max(per_incident) <= 6
