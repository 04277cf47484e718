"""Benchmark: the incident stories of tests/stories.py, played end to end and scored.

For each story: incidents opened, whether every incident closed without a person (where the
story needs none), people's touches against the least the story allows, Slack messages (in
all, and per incident), and every wrong action (a write, message or claim that should not
have happened). Then the median and mean messages per incident. Nothing is asserted here
(tests/test_stories.py holds the targets).

Usage: ``.venv/bin/python benchmarks/stories.py``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stories import play_all  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scores = play_all(Path(tmp))
    print(f"{'story':34} incidents  closed alone  touches  messages  per incident  wrong")
    for s in scores:
        alone = "-" if s.closed_alone is None else ("yes" if s.closed_alone else "NO")
        print(
            f"{s.story:34} {s.incidents:>9}  {alone:>12}  {s.touches:>3} / {s.least_touches:<2}"
            f" {s.messages:>8}  {s.per_incident:>12.1f}  {'; '.join(s.wrong) or 'none'}"
        )
    per_incident = [s.per_incident for s in scores]
    wrong = sum(len(s.wrong) for s in scores)
    at_least = sum(1 for s in scores if s.touches == s.least_touches)
    print(
        f"\n{len(scores)} stories: {wrong} wrong actions; {at_least} at their least touches; "
        f"messages per incident median {statistics.median(per_incident):.1f}, "
        f"mean {statistics.mean(per_incident):.2f}, most {max(per_incident):.1f}"
    )


if __name__ == "__main__":
    main()
