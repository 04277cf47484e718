"""Posts to one Slack channel are paced as Slack allows: a short burst, then about one a
second, in order; other channels are not held up. The clock is injected: nothing sleeps."""

from __future__ import annotations

from dq_agent.config.models import SlackSettings
from dq_agent.escalate.slack import SlackApi
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.slack import SlackEmulator

TOKEN = "xoxb-test"


class Clock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_to_one_channel_is_spaced_out_in_order() -> None:
    emulator = SlackEmulator(token=TOKEN)
    ids = emulator.seed({"channels": [{"name": "revenue-data"}, {"name": "big-deals"}]})
    busy, quiet = ids["channels"]["revenue-data"], ids["channels"]["big-deals"]
    clock = Clock()
    with LoopbackServer(emulator) as server:
        settings = SlackSettings(
            token=TOKEN, signing_secret="unused", base_url=f"{server.base_url}/api/"
        )  # type: ignore[arg-type]
        api = SlackApi(settings, sleep=clock.sleep, monotonic=clock)
        for n in range(10):
            api.post(busy, f"incident {n}", None, key=f"k{n}")
            if n == 5:
                api.post(quiet, "meanwhile", None, key="quiet")
    # Four at once, then each further four once the channel's four seconds are over.
    assert clock.slept == [4.0, 4.0]
    assert api.paced_s == 8.0
    texts = [m["text"] for m in emulator.state()["messages"] if m["channel"] == busy]
    assert texts == [f"incident {n}" for n in range(10)]
    assert [m["text"] for m in emulator.state()["messages"] if m["channel"] == quiet] == [
        "meanwhile"
    ]


def test_replicas_on_one_postgresql_store_share_each_channels_pace(postgres_url: str) -> None:
    from dq_agent.store import Store
    from dq_agent.store.pacing import SharedPace

    emulator = SlackEmulator(token=TOKEN)
    busy = emulator.seed({"channels": [{"name": "revenue-data"}]})["channels"]["revenue-data"]
    clock = Clock()
    with (
        LoopbackServer(emulator) as server,
        Store.open(postgres_url) as one,
        Store.open(postgres_url) as two,
    ):
        settings = SlackSettings(
            token=TOKEN, signing_secret="unused", base_url=f"{server.base_url}/api/"
        )  # type: ignore[arg-type]
        replicas = [
            SlackApi(settings, sleep=clock.sleep, pace=SharedPace(store, clock=clock))
            for store in (one, two)
        ]
        for n in range(10):  # the two replicas take turns sending to one channel
            replicas[n % 2].post(busy, f"incident {n}", None, key=f"k{n}")
    # Together they keep to one channel's pace: four at once, then four per four seconds,
    # as one sender would (with a pace of its own each, the two would send eight at once).
    assert clock.slept == [4.0, 4.0]
    assert sum(api.paced_s for api in replicas) == 8.0
    texts = [m["text"] for m in emulator.state()["messages"] if m["channel"] == busy]
    assert texts == [f"incident {n}" for n in range(10)]
