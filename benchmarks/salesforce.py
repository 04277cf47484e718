"""Benchmark: a large Salesforce object read and corrected through the real simple-salesforce
client against the loopback emulator, counting the API calls each path spends.

Seeds ``--records`` Opportunities (default 200,000), then side by side in one process:

1. **read**: the suite's source opened with REST pages (2,000 records a call, what
   ``bulk_threshold`` above the object's size gives) and with a Bulk API 2.0 query job (CSV
   pages of 50,000): API calls and seconds of each;
2. **correct**: ``--corrections`` records (default 1,000) written compare-and-set one by one
   (a read, a PATCH and a read each: what every correction cost before) and as sObject
   Collections (a re-read, 200 records a PATCH, a verification read): calls and seconds. The
   target is at most 10 calls besides the verification reads.

The emulator answers in-process over loopback HTTP, so seconds measure the client, the
connector and the emulator's own work, not a real org's latency; calls are what an org's daily
API limit counts. Nothing is asserted: it prints the figures.

Usage: ``.venv/bin/python benchmarks/salesforce.py [--records N] [--corrections N]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from dq_agent.config.models import SalesforceConnector, SalesforceSourceSpec  # noqa: E402
from dq_agent.sources import salesforce  # noqa: E402
from dq_agent.sources.base import CellWrite  # noqa: E402
from dq_agent.sources.retry import RetryPolicy  # noqa: E402
from dq_agent_sandbox.http import LoopbackServer, Request, Response  # noqa: E402
from dq_agent_sandbox.salesforce import SalesforceEmulator  # noqa: E402

FIELDS = {
    "Name": "string",
    "Amount": "currency",
    "Seats__c": "int",
    "Price_Per_Seat__c": "currency",
    "StageName": "picklist",
    "CloseDate": "date",
}


class Counting:
    """The emulator behind a count of the API calls it answers."""

    name = "salesforce"

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator
        self.calls = 0

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/services/data/v"):
            self.calls += 1
        return self.emulator.handle(request)


def seed(emulator: SalesforceEmulator, records: int) -> None:
    rows = [
        {
            "Name": f"deal {i}",
            "Amount": float(10 * (i % 40 + 1) * 5000),  # every one a tenfold slip
            "Seats__c": i % 40 + 1,
            "Price_Per_Seat__c": 5000.0,
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
            "LastModifiedDate": "2026-11-20T08:00:00+00:00",
        }
        for i in range(records)
    ]
    emulator.seed({"Opportunity": {"fields": FIELDS, "records": rows}})


def source(server: LoopbackServer, bulk_threshold: int) -> salesforce.SalesforceSource:
    connector = SalesforceConnector(
        type="salesforce",
        instance_url=server.base_url,
        session_id="sandbox",
        bulk_threshold=bulk_threshold,
    )  # type: ignore[arg-type]
    spec = SalesforceSourceSpec(connector="crm", object="Opportunity", fields=list(FIELDS))
    # Polls of a Bulk job wait with backoff; the emulator finishes a job in two polls.
    retry = RetryPolicy(base_delay=0.05)
    return salesforce.SalesforceSource(
        salesforce.connect(connector), spec, retry=retry, connector=connector
    )


def timed(counting: Counting, action: Any) -> tuple[Any, int, float]:
    calls, started = counting.calls, time.perf_counter()
    result = action()
    return result, counting.calls - calls, time.perf_counter() - started


def read(counting: Counting, server: LoopbackServer, bulk_threshold: int) -> tuple[int, float, int]:
    src = source(server, bulk_threshold)

    def go() -> int:
        relation = src.open()
        with relation.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(relation.selectable)
                ).scalar_one()
            )

    try:
        rows, calls, seconds = timed(counting, go)
    finally:
        src.close()
    return calls, seconds, rows


def correct(
    counting: Counting, server: LoopbackServer, n: int, *, batched: bool, offset: int
) -> tuple[int, float, int]:
    src = source(server, bulk_threshold=10**9)
    try:
        relation = src.open()
        with relation.connect() as conn:
            found = conn.execute(
                sa.select(
                    relation.column("Id"),
                    relation.column("Amount"),
                    relation.column("Seats__c"),
                    relation.column("Price_Per_Seat__c"),
                )
                .order_by(relation.column("Name"))
                .offset(offset)
                .limit(n)
            ).all()
        writes = [CellWrite({"Id": i}, "Amount", a, s * p) for i, a, s, p in found]

        def go() -> list[Any]:
            if batched:
                return src.write_many(writes)
            return [src.write(w.key, w.column, w.expected_old, w.new) for w in writes]

        results, calls, seconds = timed(counting, go)
    finally:
        src.close()
    return calls, seconds, sum(1 for r in results if r.status == "written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--corrections", type=int, default=1_000)
    parser.add_argument(
        "--round-trip-ms",
        type=float,
        default=150.0,
        help="a real org's latency per call, for the estimate printed beside the counts",
    )
    args = parser.parse_args()
    emulator = SalesforceEmulator(request_limit=10**9, page_size=2000)
    started = time.perf_counter()
    seed(emulator, args.records)
    print(f"seeded {args.records:,} Opportunities in {time.perf_counter() - started:.1f} s")
    counting = Counting(emulator)
    with LoopbackServer(counting) as server:  # type: ignore[arg-type]
        rest = read(counting, server, bulk_threshold=10**9)
        bulk = read(counting, server, bulk_threshold=10_000)
        print(f"\nread {args.records:,} records       calls   seconds   rows")
        print(f"  REST pages of 2,000        {rest[0]:>6,}   {rest[1]:>7.1f}   {rest[2]:,}")
        print(f"  Bulk API 2.0 query job     {bulk[0]:>6,}   {bulk[1]:>7.1f}   {bulk[2]:,}")
        ratio = f"{rest[0] / bulk[0]:>6.1f}x  {rest[1] / bulk[1]:>6.1f}x"
        print(f"  ratio REST/Bulk            {ratio}")
        trip = args.round_trip_ms / 1000
        print(
            f"  at {args.round_trip_ms:.0f} ms a round trip (not measured here: the emulator is "
            f"local), the calls alone add {rest[0] * trip:.1f} s to REST and "
            f"{bulk[0] * trip:.1f} s to Bulk"
        )
        n = args.corrections
        one = correct(counting, server, n, batched=False, offset=0)
        many = correct(counting, server, n, batched=True, offset=n)
        print(f"\ncorrect {n:,} records        calls   seconds   written")
        print(f"  one by one (read, PATCH, read) {one[0]:>6,}   {one[1]:>7.1f}   {one[2]:,}")
        print(f"  sObject Collections        {many[0]:>6,}   {many[1]:>7.1f}   {many[2]:,}")
        reads = 2 * -(-n // 2000)
        verdict = "PASS" if many[0] - reads <= 10 else "MISS"
        print(
            f"  Collections calls besides the {reads} re-reads: {many[0] - reads} "
            f"(target <= 10) {verdict}"
        )


if __name__ == "__main__":
    main()
