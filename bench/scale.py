"""Scale-out benchmark: one, two and three `python -m bot run` processes in webhook mode on PostgreSQL.

Run from the repository root (needs Node.js for the Telegram emulator and a PostgreSQL admin URL,
e.g. the one `scripts/postgres.sh` prints)::

    .venv/bin/python -m bench.scale --postgres postgresql+asyncpg://postgres@127.0.0.1:54329/postgres
    .venv/bin/python -m bench.scale --postgres URL --users 60 --messages 1000   # a quick run

For each number of processes, on a fresh database:

1. updates: `--users` people at once go through the first five registration steps (a command, three
   button presses, a text), posted to the webhooks the way Telegram posts them (JSON, the secret
   header), each step once the previous one is answered; one update in ten is delivered twice, to
   two processes. Reported: updates handled per second and the time from posting an update to the
   bot's last answer to it (p50, p95).
2. broadcast: `--messages` outbox rows due now, with the rate limits lifted, dispatched by the
   processes' schedulers: messages per second from the first sendMessage to the last.

Then `--limited-rate`: the largest cluster with LIMITS__TELEGRAM_PER_SECOND at that value, to show
that the processes share the limit (each paces at 1/N of it; together they stay within it).

Where the time goes: CPU seconds of the bot processes, of PostgreSQL (all its processes), of the
emulator (node) and of this harness (the webhook poster and the Bot API proxies in front of the
emulator), read from /proc, as cores busy over the phase; with the rate limit lifted the pacing
costs nothing, so what is left is CPU (and the machine's idle share shows when it is not).

Checks: every update answered exactly once (the answers per chat are exactly the expected ones,
the journal holds each update once, the processes' `bot_updates_handled_total` add up to the
number of distinct updates); every broadcast message delivered exactly once; no row left behind.
Exit status 0 when three processes are not slower than one at both and nothing was handled twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # executed as `python bench/scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- CPU accounting from /proc -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_backends(database: str) -> list[int]:
    """PostgreSQL processes serving one database (their title names it: `postgres: user db host ...`)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    title = cmdline.read().replace(b"\0", b" ").decode(errors="replace").split()
            except OSError:
                continue
            if len(title) >= 3 and title[0] == "postgres:" and title[2] == database:
                found.append(int(entry))
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    at: float
    parts: dict[str, float]
    machine: tuple[int, int]


class CpuMeter:
    """CPU seconds of the bots, PostgreSQL (the backends of our database), the emulator and this
    harness; a poller keeps the last figure of backends that exit between two samples."""

    def __init__(self, bot_pids: list[int], emulator_pid: int, database: str) -> None:
        self.bot_pids = bot_pids
        self.emulator_pid = emulator_pid
        self.database = database
        self.backends: dict[int, float] = {}
        self._poller: asyncio.Task | None = None

    def _poll_backends(self) -> None:
        for pid in postgres_backends(self.database):
            self.backends[pid] = max(self.backends.get(pid, 0.0), cpu_seconds(pid))
        for pid in list(self.backends):
            self.backends[pid] = max(self.backends[pid], cpu_seconds(pid))

    async def _poll(self) -> None:
        while True:
            self._poll_backends()
            await asyncio.sleep(0.25)

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll())

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    def sample(self) -> CpuSample:
        self._poll_backends()
        return CpuSample(time.monotonic(), {
            "bots": sum(cpu_seconds(pid) for pid in self.bot_pids),
            "PostgreSQL": sum(self.backends.values()),
            "emulator": cpu_seconds(self.emulator_pid),
            "harness": cpu_seconds(os.getpid()),
        }, machine_ticks())

    @staticmethod
    def describe(first: CpuSample, last: CpuSample, items: int, unit: str) -> str:
        """CPU milliseconds per unit of work of each part, then cores busy and idle."""
        wall = max(last.at - first.at, 1e-9)
        spent = {name: last.parts[name] - first.parts[name] for name in first.parts}
        per_item = ", ".join(f"{name} {seconds / max(items, 1) * 1000:.2f}" for name, seconds in spent.items())
        cores = os.cpu_count() or 1
        ticks_total = max(last.machine[1] - first.machine[1], 1)
        machine_busy = (last.machine[0] - first.machine[0]) / ticks_total * cores
        other = max(0.0, machine_busy - sum(spent.values()) / wall)
        busy = ", ".join(f"{name} {seconds / wall:.2f}" for name, seconds in spent.items())
        return (f"CPU ms per {unit}: {per_item}\n      cores busy: {busy}, other processes {other:.2f}, "
                f"idle {max(0.0, cores - machine_busy):.2f} of {cores}")


# ---- one run -----------------------------------------------------------------------------------


class Replies:
    """What the bot sent to each chat (seen by the Bot API proxies), with waiting for a count."""

    def __init__(self) -> None:
        self.by_chat: dict[str, list[dict]] = defaultdict(list)
        self.at: dict[str, list[float]] = defaultdict(list)
        self._waiters: dict[str, list[tuple[int, asyncio.Future]]] = defaultdict(list)

    def __call__(self, chat: str, message: dict) -> None:
        self.by_chat[chat].append(message)
        self.at[chat].append(time.perf_counter())
        waiting = []
        for count, future in self._waiters.pop(chat, []):
            if future.done():
                continue
            if len(self.by_chat[chat]) >= count:
                future.set_result(None)
            else:
                waiting.append((count, future))
        if waiting:
            self._waiters[chat] = waiting

    async def wait(self, chat: str, count: int, timeout: float) -> None:
        if len(self.by_chat[chat]) >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters[chat].append((count, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise SystemExit(f"chat {chat}: no answer within {timeout} s ({len(self.by_chat[chat])} messages)")


@dataclass
class Run:
    processes: int
    updates: int = 0
    update_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    update_cpu: str = ""
    broadcast: int = 0
    broadcast_seconds: float = 0.0
    broadcast_cpu: str = ""
    by_process: list[int] = field(default_factory=list)
    together: tuple[float, float] | None = None  # (msg/s, seconds) while every process was sending
    twice: list[str] = field(default_factory=list)

    @property
    def update_rate(self) -> float:
        return self.updates / self.update_seconds if self.update_seconds else 0.0

    @property
    def broadcast_rate(self) -> float:
        return self.broadcast / self.broadcast_seconds if self.broadcast_seconds else 0.0


async def fresh_database(admin_url: str) -> str:
    """A new database, migrated and holding the demo reference data; returns its URL."""
    from storage.bootstrap import prepare_database
    from tests.support.postgres_db import admin_sql, new_name, sibling_url

    name = new_name("bench_scale")
    await admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    url = sibling_url(admin_url, name)
    database = await prepare_database(url)
    await database.engine.dispose()
    return url


async def drop_database(admin_url: str, url: str) -> None:
    from tests.support.postgres_db import drop

    await drop(admin_url, url.rsplit("/", 1)[1])


async def run_updates(run: Run, http, processes, fronts, users: int, db, meter: "CpuMeter") -> None:
    from sqlalchemy import func, select

    from storage.models import InboxUpdate
    from tests.e2e.test_replicas import ANSWERS, STEPS, post_update, press_update, text_update

    replies = Replies()
    for front in fronts:
        front.listener = replies
    base = random.randrange(10**6, 10**8) * 1000
    count = len(processes)

    async def person(index: int, base: int = base, latencies: list[float] = run.latencies) -> None:
        user = base + index
        expected = 0
        for step, (kind, value, answer) in enumerate(STEPS):
            expected += len(answer)
            if kind == "text":
                update = text_update(user, value)
            else:
                update = press_update(user, replies.by_chat[str(user)][-1], value)
            first, second = processes[(index + step) % count], processes[(index + step + 1) % count]
            posted = time.perf_counter()
            if (index + step) % 10 == 0:  # delivered twice, to two processes (one, with one process)
                statuses = await asyncio.gather(post_update(http, first, update), post_update(http, second, update))
            else:
                statuses = [await post_update(http, first, update)]
            if set(statuses) != {200}:
                raise SystemExit(f"webhook answered {statuses}")
            await replies.wait(str(user), expected, 60)
            latencies.append(replies.at[str(user)][expected - 1] - posted)

    # Warm up: every process handles every kind of step a few times first (per-process caches:
    # compiled statements, reference rows, pydantic types), as a long-running replica has.
    await asyncio.gather(*(person(index, base + 500_000, []) for index in range(3 * count)))
    await asyncio.sleep(0.5)
    first = meter.sample()
    started = time.perf_counter()
    await asyncio.gather(*(person(index) for index in range(users)))
    run.update_seconds = time.perf_counter() - started
    run.updates = users * len(STEPS)
    run.update_cpu = CpuMeter.describe(first, meter.sample(), run.updates, "update")
    await asyncio.sleep(0.5)  # a second answer to a duplicate would have come by now
    for index in range(users):
        texts = [message.get("text", "") for message in replies.by_chat[str(base + index)]]
        if len(texts) != len(ANSWERS) or not all(text.startswith(begins) for text, begins in zip(texts, ANSWERS)):
            run.twice.append(f"updates: chat {base + index} got {len(texts)} answers, {len(ANSWERS)} expected")
    async with db.unit() as uow:
        journal = (await uow.session.execute(select(func.count()).select_from(InboxUpdate))).scalar_one()
    handled = sum([await process.metric(http, "bot_updates_handled_total") for process in processes])
    distinct = (users + 3 * count) * len(STEPS)  # the warm-up's updates too
    if journal != distinct or handled != distinct:
        run.twice.append(f"updates: journal {journal}, handled {handled:.0f}, distinct updates {distinct}")
    for front in fronts:
        front.listener = None


async def run_broadcast(run: Run, fronts, messages: int, db, meter: CpuMeter) -> None:
    from sqlalchemy import func, insert, select

    from storage.models import Account, Member, Municipality, utcnow
    from storage.models_outbox import OutboxMessage

    chat_base = random.randrange(10**6, 10**8) * 10_000
    async with db.unit() as uow:
        municipality_id = (await uow.session.execute(
            select(Municipality.id).where(Municipality.code == "vsevolozhsky"))).scalar_one()
        member_ids = list((await uow.session.execute(insert(Member).returning(Member.id), [
            {"role": "teacher", "full_name": f"Учитель {index}", "municipality_id": municipality_id,
             "preferred_transport": "telegram", "mentor_confirmed": False} for index in range(messages)
        ])).scalars())
        await uow.session.execute(insert(Account), [
            {"transport": "telegram", "external_id": str(chat_base + index), "chat_id": str(chat_base + index),
             "member_id": member_id} for index, member_id in enumerate(member_ids)
        ])
        due = utcnow() - timedelta(minutes=1)
        await uow.session.execute(insert(OutboxMessage), [
            {"key": f"bench-scale:{index}", "kind": "bench.broadcast", "member_id": member_id,
             "text": f"Напоминание № {index}", "buttons": [], "due_at": due, "state": "pending", "attempts": 0,
             "created_at": due}
            for index, member_id in enumerate(member_ids)
        ])
        await uow.commit()
    marks = [len(front.sent) for front in fronts]

    def new_sends() -> list[tuple[str, int, float]]:
        return [item for front, mark in zip(fronts, marks) for item in front.sent[mark:]]

    first_sample = None
    deadline = time.monotonic() + 60 + messages / 50
    while True:
        if first_sample is None and new_sends():
            first_sample = meter.sample()
        async with db.unit() as uow:
            left = (await uow.session.execute(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.kind == "bench.broadcast", OutboxMessage.state != "sent")
            )).scalar_one()
        if not left:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the broadcast did not finish: {left} rows not sent")
        await asyncio.sleep(0.1)
    last_sample = meter.sample()
    sends = sorted(new_sends(), key=lambda item: item[2])
    run.broadcast = messages
    run.broadcast_seconds = sends[-1][2] - sends[0][2] if len(sends) > 1 else 0.0
    # All processes sending at once: from the last one's first send to the first one's last send
    # (each scheduler ticks every 5 s on its own clock, so they join a few seconds apart).
    spans = [(front.sent[mark][2], front.sent[-1][2]) for front, mark in zip(fronts, marks) if len(front.sent) > mark]
    start, end = max(first for first, _last in spans), min(last for _first, last in spans)
    inside = sum(1 for _chat, _status, at in sends if start <= at <= end)
    run.together = (inside / (end - start), end - start) if end - start >= 1.0 else None
    run.broadcast_cpu = CpuMeter.describe(first_sample or last_sample, last_sample, messages, "message")
    run.by_process = [len(front.sent) - mark for front, mark in zip(fronts, marks)]
    per_chat: dict[str, int] = defaultdict(int)
    for chat, status, _at in sends:
        if status == 200:
            per_chat[chat] += 1
    wanted = {str(chat_base + index) for index in range(messages)}
    twice = sum(1 for chat in wanted if per_chat.get(chat, 0) > 1)
    lost = sum(1 for chat in wanted if per_chat.get(chat, 0) == 0)
    if twice or lost:
        run.twice.append(f"broadcast: {twice} chats got a message twice, {lost} got none")


async def one_run(args, emulator, count: int, workdir: Path, **extra: str) -> Run:
    from storage.db import create_engine, session_factory
    from storage.unit_of_work import Database
    from tests.e2e.test_replicas import cluster

    run = Run(count)
    url = await fresh_database(args.postgres)
    engine = create_engine(url)
    db = Database(session_factory(engine))
    try:
        async with cluster(emulator, url, workdir, size=count, **extra) as (http, processes, fronts):
            meter = CpuMeter([process.pid for process in processes], emulator._proc.pid, url.rsplit("/", 1)[1])
            meter.start()
            try:
                await asyncio.sleep(2.0)  # the scheduler's jobs that run at start
                if args.users:
                    await run_updates(run, http, processes, fronts, args.users, db, meter)
                if args.messages:
                    await run_broadcast(run, fronts, args.messages, db, meter)
            finally:
                meter.stop()
    finally:
        await engine.dispose()
        await drop_database(args.postgres, url)
    return run


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def best(runs: list[Run]) -> Run:
    """The best of repeated runs of one configuration (other programs on the machine only slow a run down)."""
    chosen = max(runs, key=lambda run: (run.update_rate, 0))
    fastest = max(runs, key=lambda run: run.broadcast_rate)
    merged = Run(chosen.processes, chosen.updates, chosen.update_seconds, chosen.latencies, chosen.update_cpu,
                 fastest.broadcast, fastest.broadcast_seconds, fastest.broadcast_cpu, fastest.by_process,
                 fastest.together, [problem for run in runs for problem in run.twice])
    return merged


def report(runs: list[Run], args) -> bool:
    one = runs[0]
    cores = os.cpu_count() or 1
    print()
    print(f"Scale-out on PostgreSQL, {cores} cores: {args.users} people × 5 updates (one in ten delivered "
          f"twice), {args.messages} broadcast messages, rate limits lifted; best of {args.repeat} run(s)")
    print(f"{'processes':>9}  {'updates/s':>9} {'× one':>6} {'p50 ms':>7} {'p95 ms':>7}   "
          f"{'broadcast msg/s':>15} {'× one':>6}  {'all sending':>17}  sent by each process")
    for run in runs:
        up = run.update_rate / one.update_rate if one.update_rate else 0.0
        down = run.broadcast_rate / one.broadcast_rate if one.broadcast_rate else 0.0
        together = f"{run.together[0]:.0f}/s for {run.together[1]:.1f} s" if run.together else "-"
        print(f"{run.processes:>9}  {run.update_rate:>9.1f} {up:>6.2f} {percentile(run.latencies, .5) * 1000:>7.0f} "
              f"{percentile(run.latencies, .95) * 1000:>7.0f}   {run.broadcast_rate:>15.1f} {down:>6.2f}  "
              f"{together:>17}  {run.by_process}")
    print()
    print("Where the time goes (from /proc: CPU of the bot processes, of PostgreSQL's backends for this")
    print("database, of the emulator, of this harness; 'other processes' is the rest of the machine's load.")
    print("With the limits lifted no time goes to pacing; the run with the limit follows below):")
    for run in runs:
        if run.update_cpu:
            print(f"  updates,   {run.processes} process(es): {run.update_cpu}")
        if run.broadcast_cpu:
            print(f"  broadcast, {run.processes} process(es): {run.broadcast_cpu}")
    print()
    problems = [f"{run.processes} process(es): {problem}" for run in runs for problem in run.twice]
    print("Handled twice or lost: " + ("; ".join(problems) if problems else "nothing (every update answered "
          "once, the journal holds each once, every broadcast message delivered once)"))
    last = runs[-1]
    ok = not problems
    if len(runs) > 1:
        not_slower = (not args.users or last.update_rate >= one.update_rate * 0.95) and (
            not args.messages or last.broadcast_rate >= one.broadcast_rate * 0.95)
        print(f"{last.processes} processes not slower than one (5 % tolerance): {'yes' if not_slower else 'NO'}")
        ok &= not_slower
    return ok


async def orchestrate(args) -> int:
    from tests.support.telegram_emulator import running_emulator

    counts = [int(part) for part in args.processes.split(",")]
    async with running_emulator() as emulator:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            workdir = Path(folder)
            trials: dict[int, list[Run]] = defaultdict(list)
            for trial in range(args.repeat):  # interleaved, so that a busy spell of the machine hits all alike
                for count in counts:
                    started = time.monotonic()
                    run = await one_run(args, emulator, count, workdir)
                    trials[count].append(run)
                    await emulator.clear()
                    print(f"[run {trial + 1}, {count} process(es)] {time.monotonic() - started:.0f} s: "
                          f"{run.update_rate:.0f} updates/s, {run.broadcast_rate:.0f} msg/s", flush=True)
            ok = report([best(trials[count]) for count in counts], args)
            if args.limited_rate:
                count = max(counts)
                limited = argparse.Namespace(**{**vars(args), "users": 0, "messages": args.limited_messages})
                run = await one_run(limited, emulator, count, workdir,
                                    LIMITS__TELEGRAM_PER_SECOND=str(args.limited_rate),
                                    LIMITS__TELEGRAM_PER_CHAT_PER_SECOND="1")
                print(f"\nRate limit: {count} processes with LIMITS__TELEGRAM_PER_SECOND={args.limited_rate:g} sent "
                      f"{run.broadcast_rate:.1f} msg/s together ({run.broadcast_rate / args.limited_rate:.2f} × the "
                      f"setting; by process {run.by_process}). Telegram's ~30 msg/s is per bot, so the processes "
                      f"share the setting: each paces at 1/N of it (N counted through PostgreSQL every tick).")
                if run.twice:
                    print("  " + "; ".join(run.twice))
                    ok = False
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True, help="PostgreSQL admin URL (a database per run is created)")
    parser.add_argument("--processes", default="1,2,3", help="numbers of processes to compare (default 1,2,3)")
    parser.add_argument("--users", type=int, default=150, help="people registering at once (0 skips updates)")
    parser.add_argument("--messages", type=int, default=3000, help="broadcast size (0 skips the broadcast)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each configuration; the best counts")
    parser.add_argument("--limited-rate", type=float, default=30.0, help="LIMITS__TELEGRAM_PER_SECOND of the last run, shared by its processes (0 skips)")
    parser.add_argument("--limited-messages", type=int, default=1500,
                        help="more than one claim batch (500) per process, so that each process sends")
    args = parser.parse_args(argv)
    return asyncio.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
