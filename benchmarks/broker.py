"""Benchmark: the same ten checks through the credential broker and without it, side by side.

Prepares the PostgreSQL ``bench_orders`` table as ``run.py`` does (``data.prepare_postgres``:
schema ``dq_bench`` at 1,000,000 rows, ``dq_bench_<N>`` otherwise, reused while fresh) and
writes ``run.py``'s ten-check project (``suite.write_dq_agent_project``) twice, each in a
temporary folder with its own state store:

1. **direct**: the project as ``run.py`` writes it; ``dq-agent check`` connects to the table
   itself;
2. **brokered**: the connector's URL holds its password as ``${BENCH_PG_PASSWORD}`` and
   ``dq-agent.yml`` adds ``broker: {url: unix:/tmp/dqb-…/b.sock, token: ${DQ_BROKER_TOKEN}}``.
   One ``dq-agent broker`` process, started once with the password in its environment only,
   runs the suite for the agent, which holds only a token (``--suites '*' --actions check``).

Each measurement is a fresh ``dq-agent check bench_orders --format json`` process, timed from
outside (wall clock), with the suite's own ``duration_s`` from its report (brokered: the
broker's run of the suite, as it hands it back). One untimed run of each comes first (it
creates the state stores). The two paths take turns, the first alternating from round to
round, so machine noise hits both alike; medians are reported. Both must report the suite
status the direct path reports in its first run: a disagreement, or an ``error``, stops the
run.

Target: checking through the broker costs at most 1.1x the same suite without it (median wall
clock of the whole command). A miss is reported, not an error. The broker's peak RSS (its
``VmHWM`` when it is stopped) is printed for information.

Then **every failing record through the broker** (its ``read``): a loopback Salesforce org
(the emulator, served from this process) with N Opportunity records, none with an
``Amount``, and a sealed project whose suite checks ``Amount`` is not null.
``dq-agent check --findings-out DIR`` (the agent, holding only a token with ``--actions
read``) writes all N failing records as the broker streams them. Each N (``--records``,
default 5,000 and 25,000) gets a fresh broker process and org; the broker's peak RSS
(``VmHWM``) is read just before it is stopped, and the ratio of the largest N's to the
smallest's printed: the stream holds a few lines at a time, so what grows with N is the
broker's copy of the object (a file on disk) and its key index, not the records streamed.
``--records 0`` skips this part.

Usage: ``.venv/bin/python benchmarks/broker.py [--rows N] [--repeat N] [--postgres-url URL]
[--records N,N] [--json PATH]`` (defaults: 10,000,000 rows, 5 rounds,
``$DQ_AGENT_BENCH_POSTGRES_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
5,000 and 25,000 records)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Queue
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402

from benchmarks.data import Dataset, Unreachable, prepare_postgres  # noqa: E402
from benchmarks.suite import TABLE, write_dq_agent_project  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_ROWS = 10_000_000
DEFAULT_RECORDS = (5_000, 25_000)
READ_SUITE = "crm_opportunities"
SUITE = TABLE  # write_dq_agent_project names the suite after the table
PATHS = ("direct", "brokered")
# The connector's password in the brokered project, and the broker's token in the agent's
# environment: each variable is set in one process's environment only.
PASSWORD_VAR = "BENCH_PG_PASSWORD"
TOKEN_VAR = "DQ_BROKER_TOKEN"
# Trust authentication takes any password; a URL without one gets this stand-in.
STAND_IN_PASSWORD = "bench-stand-in"
MAX_RATIO = 1.1
DQ_AGENT = [sys.executable, "-m", "dq_agent.cli"]
CHILD_TIMEOUT_S = 3600
BROKER_START_TIMEOUT_S = 60
LISTENING = "broker listening on"

_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", flush=True)


@dataclass(frozen=True)
class Sample:
    """One timed ``dq-agent check``."""

    path: str  # "direct" or "brokered"
    round: int  # 0 for the untimed warm-up
    wall_s: float  # the whole command, from outside
    suite_s: float  # the suite's duration_s in its JSON report
    status: str
    exit_code: int


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the table")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DQ_AGENT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="database for the dq_bench schemas (env DQ_AGENT_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--records",
        type=_counts,
        default=DEFAULT_RECORDS,
        help="Opportunity records of the read through the broker, e.g. 5000,25000 (0: skip)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 5000,25000, got {text!r}"
        ) from None
    if any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError("record counts are 0 or more")
    return tuple(n for n in counts if n > 0)


# --- the two projects -----------------------------------------------------------------------


def brokered_url(url: str) -> tuple[str, str]:
    """``url`` with its password as ``${BENCH_PG_PASSWORD}``, and the value of that variable.

    A URL without a user names libpq's default, the system user, so that the password has a
    place; one without a password gets a stand-in, which trust authentication accepts. The
    reference is substituted as it is, so the value is the password URL-encoded.
    """
    parsed = make_url(url)
    user = parsed.username or getpass.getuser()
    password = quote(parsed.password, safe="") if parsed.password else STAND_IN_PASSWORD
    rest = URL.create(
        parsed.drivername,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)
    scheme, _, tail = rest.partition("://")
    return f"{scheme}://{quote(user, safe='')}:${{{PASSWORD_VAR}}}@{tail}", password


def write_brokered_project(root: Path, dataset: Dataset, socket: Path) -> str:
    """``run.py``'s project with the password as a reference and a broker in ``dq-agent.yml``;
    returns the password the broker's environment must hold."""
    url, password = brokered_url(dataset.url)
    write_dq_agent_project(root, dataset.backend, url, dataset.schema)
    settings_file = root / "dq-agent.yml"
    settings = yaml.safe_load(settings_file.read_text(encoding="utf-8"))
    settings["broker"] = {"url": f"unix:{socket}", "token": f"${{{TOKEN_VAR}}}"}
    settings_file.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return password


# --- the broker -----------------------------------------------------------------------------


class BrokerProcess:
    """``dq-agent broker`` as a subprocess, its stderr drained by a thread (the last lines
    kept for an error message)."""

    def __init__(self, project: Path, home: Path, socket: Path, env: Mapping[str, str]) -> None:
        command = [*DQ_AGENT, "broker", "--project", str(project), "--home", str(home)]
        self.process = subprocess.Popen(
            [*command, "--listen", f"unix:{socket}"],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.tail: deque[str] = deque(maxlen=40)
        self._lines: Queue[str | None] = Queue()
        self._reader = threading.Thread(target=self._drain, name="broker-stderr", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        # Read to the end, so that a chatty broker never blocks on a full pipe.
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.tail.append(line.rstrip())
            self._lines.put(line)
        self._lines.put(None)

    def wait_listening(self, timeout: float) -> str:
        """The line announcing the broker's address; stops the run if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except Empty:
                break
            if line is None:
                break
            if LISTENING in line:
                return line.strip()
        raise SystemExit(
            f"ABORT: the broker did not say {LISTENING!r} within {timeout:g}s "
            f"(exit code {self.process.poll()}):\n" + "\n".join(self.tail)
        )

    def peak_rss_mb(self) -> float | None:
        """The broker's peak resident set so far (VmHWM); None off Linux or once it has exited."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        """Terminate it by its PID and wait (kill it if SIGTERM is not enough)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def create_token(home: Path, env: Mapping[str, str], actions: str = "check") -> str:
    """A token for ``actions`` on every suite, from ``dq-agent broker token create``."""
    done = subprocess.run(
        [*DQ_AGENT, "broker", "token", "create", "--home", str(home)]
        + ["--suites", "*", "--actions", actions, "--ttl", "1d", "--note", "benchmark"],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(
            f"ABORT: dq-agent broker token create failed (exit {done.returncode}):\n"
            f"{done.stderr[-2000:]}"
        )
    return lines[-1].strip()


# --- measuring ------------------------------------------------------------------------------


def run_check(path: str, round_: int, project: Path, env: Mapping[str, str]) -> Sample:
    """One ``dq-agent check --format json`` in a fresh process, timed from outside."""
    command = [*DQ_AGENT, "check", SUITE, "--project", str(project), "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - started
    try:
        (suite,) = json.loads(done.stdout)["suites"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"ABORT: dq-agent check ({path}) printed no report of one suite (exit "
            f"{done.returncode}): {exc}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        ) from exc
    if suite["status"] == "error":
        raise SystemExit(
            f"ABORT: dq-agent check ({path}) could not run the suite: {suite.get('error')}"
        )
    return Sample(path, round_, wall, float(suite["duration_s"]), suite["status"], done.returncode)


def require_agreement(sample: Sample, expected: str) -> None:
    if sample.status != expected:
        raise SystemExit(
            f"ABORT: the {sample.path} check reports {sample.status!r} where the direct one "
            f"reported {expected!r}: both paths run the same suite on the same table, so "
            "their timings are not comparable."
        )


def measure(
    repeat: int, projects: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]]
) -> tuple[str, list[Sample]]:
    """The untimed warm-up of each path, then ``repeat`` rounds taking turns; the status both
    report and the timed samples."""
    expected = ""
    for path in PATHS:
        sample = run_check(path, 0, projects[path], envs[path])
        expected = expected or sample.status  # the direct path's, which runs first
        require_agreement(sample, expected)
        log(
            f"warm-up {path:<8} wall {sample.wall_s:.3f}s, suite {sample.suite_s:.3f}s, "
            f"{sample.status}"
        )
    samples: list[Sample] = []
    for round_ in range(1, repeat + 1):
        shift = (round_ - 1) % len(PATHS)
        for path in PATHS[shift:] + PATHS[:shift]:
            sample = run_check(path, round_, projects[path], envs[path])
            require_agreement(sample, expected)
            samples.append(sample)
            log(
                f"round {round_}/{repeat}: {path:<8} wall {sample.wall_s:.3f}s, "
                f"suite {sample.suite_s:.3f}s"
            )
    return expected, samples


# --- every failing record through the broker (read) -----------------------------------------

SF_SESSION_VAR = "BENCH_SF_SESSION_ID"
SF_SESSION = "sandbox"  # the emulator's session id
READ_SUITE_YAML = f"""
suite: {READ_SUITE}
owner: sales-ops@acme.example
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, StageName]
key: [Id]
checks:
  - expect_column_values_to_not_be_null: {{column: Amount}}
"""


@dataclass(frozen=True)
class Read:
    """N records through a fresh broker: its ``check`` of the suite, then its ``read``."""

    records: int
    written: int  # lines in the not-null check's file
    wall_s: float  # the agent's whole ``check --findings-out``, from outside
    # The broker's peak RSS (VmHWM) after the check (the source opened: its copy made, the
    # suite checked) and after the read (the same, and every failing record streamed).
    check_peak_rss_mb: float | None
    read_peak_rss_mb: float | None


def write_read_project(root: Path, instance_url: str, socket: Path) -> Path:
    """A sealed project: the org's session id is the broker's, the agent has a broker."""
    (root / "connectors").mkdir(parents=True)
    (root / "checks").mkdir()
    (root / "connectors" / "crm.yml").write_text(
        f"type: salesforce\ninstance_url: {instance_url}\nsession_id: ${{{SF_SESSION_VAR}}}\n",
        encoding="utf-8",
    )
    (root / "checks" / "crm.yml").write_text(READ_SUITE_YAML, encoding="utf-8")
    settings = {"broker": {"url": f"unix:{socket}", "token": f"${{{TOKEN_VAR}}}"}}
    (root / "dq-agent.yml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return root


def opportunities(count: int) -> list[dict[str, Any]]:
    """``count`` open deals, none with an amount: each fails the not-null check."""
    return [
        {
            "Name": f"Deal {i:06d}",
            "Amount": None,
            "StageName": "Prospecting",
            "CloseDate": "2027-01-31",
        }
        for i in range(count)
    ]


def agent_check(project: Path, env: Mapping[str, str], *extra: str) -> tuple[float, int, str]:
    """``dq-agent check`` of the read suite in a fresh process: wall clock, exit code, output."""
    command = [*DQ_AGENT, "check", READ_SUITE, "--project", str(project), "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *extra],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    output = f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return time.perf_counter() - started, done.returncode, output


def measure_read(records: int, base_env: Mapping[str, str], sockets: Path) -> Read:
    """N failing records through a fresh broker process and a fresh org."""
    from dq_agent_sandbox.http import LoopbackServer
    from dq_agent_sandbox.salesforce import SalesforceEmulator

    emulator = SalesforceEmulator(session_id=SF_SESSION)
    emulator.seed({"Opportunity": {"records": opportunities(records)}})
    with (
        LoopbackServer(emulator) as org,
        tempfile.TemporaryDirectory(prefix="dq-bench-read-") as tmp,
    ):
        socket = sockets / f"r{records}.sock"
        project = write_read_project(Path(tmp) / "project", org.base_url, socket)
        home = Path(tmp) / "broker-home"
        env = {**base_env, TOKEN_VAR: create_token(home, base_env, actions="check,read")}
        broker = BrokerProcess(project, home, socket, {**base_env, SF_SESSION_VAR: SF_SESSION})
        out = Path(tmp) / "findings"
        try:
            log(broker.wait_listening(BROKER_START_TIMEOUT_S))
            _, checked, output = agent_check(project, env)
            check_peak = broker.peak_rss_mb()
            if checked == 2:
                wall, code, output = agent_check(project, env, "--findings-out", str(out))
            read_peak = broker.peak_rss_mb()
        finally:
            broker.stop()
        files = list((out / READ_SUITE).glob("*.jsonl")) if out.exists() else []
        if checked != 2 or code != 2 or len(files) != 1:
            raise SystemExit(
                f"ABORT: the read of {records:,} records through the broker did not write one "
                f"file:\n{output}"
            )
        with files[0].open(encoding="utf-8") as lines:
            written = sum(1 for _ in lines)
    if written != records:
        raise SystemExit(f"ABORT: {written:,} of {records:,} failing records were written")
    return Read(records, written, wall, check_peak, read_peak)


def _mb(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def print_reads(reads: Sequence[Read]) -> float | None:
    """The reads' table, and the ratio of the largest read's broker peak RSS to the
    smallest's (None when not known)."""
    print()
    print("== every failing record through the broker (read): Salesforce emulator ==")
    header = (
        f"{'records':>10}{'written':>10}{'read wall s':>13}"
        f"{'peak MB after check':>21}{'after read':>12}{'read adds':>11}"
    )
    print(header)
    print("-" * len(header))
    for read in reads:
        check, after = read.check_peak_rss_mb, read.read_peak_rss_mb
        added = _mb(after - check) if check is not None and after is not None else "n/a"
        print(
            f"{read.records:>10,}{read.written:>10,}{read.wall_s:>13.2f}"
            f"{_mb(check):>21}{_mb(after):>12}{added:>11}"
        )
    small, large = reads[0], reads[-1]
    if len(reads) < 2 or small.read_peak_rss_mb is None or large.read_peak_rss_mb is None:
        return None
    ratio = large.read_peak_rss_mb / small.read_peak_rss_mb
    print(
        f"broker peak RSS, read of {large.records:,} records / of {small.records:,}: "
        f"{ratio:.2f}x ({large.records / small.records:g}x the records)"
    )
    print(
        "  peak MB: the broker's VmHWM after the agent's `check` (the org's records copied and\n"
        "  checked), then after its `check --findings-out` (every failing record streamed);\n"
        "  read adds: the difference, what streaming the records costs the broker"
    )
    return ratio


# --- the report -----------------------------------------------------------------------------


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Per path the median wall clock, suite duration and time outside the suite; ratios."""
    summary: dict[str, Any] = {}
    for path in PATHS:
        mine = [s for s in samples if s.path == path]
        summary[path] = {
            "wall_s": statistics.median(s.wall_s for s in mine),
            "suite_s": statistics.median(s.suite_s for s in mine),
            "outside_s": statistics.median(s.wall_s - s.suite_s for s in mine),
        }
    direct, brokered = summary["direct"], summary["brokered"]
    summary["ratios"] = {
        "wall_s": brokered["wall_s"] / direct["wall_s"],
        # A tiny table's suite may report 0.000 s.
        "suite_s": brokered["suite_s"] / direct["suite_s"] if direct["suite_s"] > 0 else None,
    }
    return summary


def print_report(
    rows: int, repeat: int, status: str, summary: Mapping[str, Any], peak_rss: float | None
) -> bool:
    """The table and the verdict; whether the target was met."""
    print()
    print(f"== postgresql: {rows:,} rows, 10 checks, median of {repeat} ==")
    header = f"{'path':<18}{'wall s':>10}{'suite s':>10}{'outside s':>11}"
    print(header)
    print("-" * len(header))
    for path in PATHS:
        row = summary[path]
        print(f"{path:<18}{row['wall_s']:>10.3f}{row['suite_s']:>10.3f}{row['outside_s']:>11.3f}")
    ratios = summary["ratios"]
    shown = [f"{r:>9.2f}x" if r is not None else f"{'n/a':>10}" for r in ratios.values()]
    print(f"{'brokered/direct':<18}{''.join(shown)}")
    print(
        "  wall: the whole `dq-agent check --format json` process; suite: its report's "
        "duration_s\n  (brokered: the broker's run of the suite); outside: wall - suite"
    )
    ratio = float(ratios["wall_s"])
    met = ratio <= MAX_RATIO
    print(
        f"target: checking through the broker costs <= {MAX_RATIO:g}x the same suite without "
        f"it (wall): {ratio:.2f}x   {'PASS' if met else 'MISS'}"
    )
    print(f"suite status: {status}, both paths, every run")
    rss = f"{peak_rss:.0f} MB" if peak_rss is not None else "n/a (no /proc/<pid>/status)"
    print(f"broker peak RSS (VmHWM): {rss}")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print((__doc__ or "").split("\n\n")[0], flush=True)
    try:
        dataset = prepare_postgres(args.postgres_url, args.rows, log)
    except Unreachable as exc:
        log(f"PostgreSQL is unreachable at {args.postgres_url} ({exc}): skipped")
        return 0
    started_at = datetime.now(UTC)
    # Neither variable reaches a check: the password is the broker's, the token the agent's.
    base_env = {k: v for k, v in os.environ.items() if k not in (PASSWORD_VAR, TOKEN_VAR)}
    sockets = Path(tempfile.mkdtemp(prefix="dqb-", dir="/tmp"))  # a socket's path is short
    try:
        with tempfile.TemporaryDirectory(prefix="dq-bench-broker-") as tmp:
            socket = sockets / "b.sock"
            home = Path(tmp) / "broker-home"
            projects = {
                "direct": write_dq_agent_project(
                    Path(tmp) / "direct", dataset.backend, dataset.url, dataset.schema
                ),
                "brokered": Path(tmp) / "brokered",
            }
            password = write_brokered_project(projects["brokered"], dataset, socket)
            token = create_token(home, base_env)
            broker = BrokerProcess(
                projects["brokered"], home, socket, {**base_env, PASSWORD_VAR: password}
            )
            try:
                log(broker.wait_listening(BROKER_START_TIMEOUT_S))
                envs = {"direct": base_env, "brokered": {**base_env, TOKEN_VAR: token}}
                status, samples = measure(args.repeat, projects, envs)
                peak_rss = broker.peak_rss_mb()
            finally:
                broker.stop()
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    summary = summarize(samples)
    met = print_report(dataset.rows, args.repeat, status, summary, peak_rss)
    reads: list[Read] = []
    read_ratio = None
    if args.records:
        sockets = Path(tempfile.mkdtemp(prefix="dqb-", dir="/tmp"))
        try:
            for records in sorted(args.records):
                reads.append(measure_read(records, base_env, sockets))
                log(f"read {records:,} records through the broker")
        finally:
            shutil.rmtree(sockets, ignore_errors=True)
        read_ratio = print_reads(reads)
    if args.json:
        results = {
            "started_at": started_at.isoformat(),
            "rows": dataset.rows,
            "table": dataset.table,
            "postgres_url": make_url(dataset.url).render_as_string(hide_password=True),
            "repeat": args.repeat,
            "python": sys.version.split()[0],
            "status": status,
            "summary": summary,
            "target_max_ratio": MAX_RATIO,
            "target_met": met,
            "broker_peak_rss_mb": peak_rss,
            "samples": [asdict(s) for s in samples],
            "reads": [asdict(r) for r in reads],
            "read_peak_rss_ratio": read_ratio,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
