"""Memory under a slow reader: the device's target pushes --size MiB down a
passthrough tunnel as fast as it can, to a client that reads --rate MiB/s;
the gateway's resident memory is sampled throughout, on each ASGI server.

Goal: the gateway grows by at most 16 MiB per session, whatever the device
sends: the fast side must be slowed down, not buffered.
"""

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from bench import chart, cli
from bench.memory import PeakSampler, rss
from bench.paths import MIB, OPEN_TIMEOUT, WebSocketPipe, open_websocket
from bench.report import now, run_record
from bench.world import Site, World, running_world

GOAL_MIB = 16
NAME = "slowreader"


async def read_slowly(pipe: WebSocketPipe, size: int, rate: float) -> int:
    """Reads until the target closes, no faster than rate bytes/s; returns
    the bytes read."""
    received = 0
    start = time.perf_counter()
    while received < size:
        try:
            received += len(await pipe.recv())
        except (ConnectionError, ConnectionClosed):
            # Whatever did not arrive shows as an incomplete session.
            break
        ahead = received / rate - (time.perf_counter() - start)
        if ahead > 0:
            # The reader's pace is what is measured here, not a wait for an event.
            await asyncio.sleep(ahead)
    return received


async def session(world: World, site: Site, size: int, rate: float) -> int:
    pipe = await open_websocket(site.client_url("source"), {"Authorization": f"Bearer {world.token}"})
    try:
        return await read_slowly(pipe, size, rate)
    finally:
        await asyncio.wait_for(pipe.close(), OPEN_TIMEOUT)


async def measure(world: World, site: Site, size: int, rate: float, sessions: int) -> dict:
    # A first session loads what every session shares (code, database
    # connections), which is not the cost of one session.
    await asyncio.wait_for(session(world, site, min(size, MIB), rate * 10), OPEN_TIMEOUT + 30)
    base, agent_base = rss(site.pid), rss(site.agent_pid)
    server, agent = PeakSampler(site.pid), PeakSampler(site.agent_pid)
    server.start()
    agent.start()
    started = time.perf_counter()
    try:
        received = await asyncio.wait_for(
            asyncio.gather(*(session(world, site, size, rate) for _ in range(sessions))),
            OPEN_TIMEOUT + 60 + size / rate,
        )
    finally:
        server_peak, agent_peak = await server.stop(), await agent.stop()
    growth = (server_peak - base) / MIB / sessions
    return {
        "server": site.server,
        "sessions": sessions,
        "received_mib": [count / MIB for count in received],
        "complete": all(count == size for count in received),
        "seconds": time.perf_counter() - started,
        "base_rss_mib": base / MIB,
        "peak_rss_mib": server_peak / MIB,
        "growth_per_session_mib": growth,
        "agent_growth_mib": (agent_peak - agent_base) / MIB,
        "pass": growth <= GOAL_MIB,
    }


def format_table(result: dict) -> str:
    settings = result["settings"]
    lines = [f"slow reader: {settings['size_mib']} MiB per session read at {settings['rate_mib_s']} MiB/s, "
             f"{settings['sessions']} session(s) at once",
             f"{'server':<10}{'MiB received':>14}{'base MiB':>10}{'peak MiB':>10}{'growth/session':>16}"
             f"{'agent growth':>14}  goal <= {GOAL_MIB} MiB",
             "-" * 94]
    for row in result["servers"]:
        received = f"{min(row['received_mib']):.0f}/{settings['size_mib']}"
        lines.append(f"{row['server']:<10}{received:>14}{row['base_rss_mib']:>10.1f}{row['peak_rss_mib']:>10.1f}"
                     f"{row['growth_per_session_mib']:>16.1f}{row['agent_growth_mib']:>14.1f}  "
                     f"{'pass' if row['pass'] and row['complete'] else 'MISS'}")
    return "\n".join(lines)


def draw(result: dict, path: Path) -> None:
    chart.bars(path, "gateway RSS growth per slow session (MiB, lower is better)",
               {row["server"]: row["growth_per_session_mib"] for row in result["servers"]}, limit=GOAL_MIB)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.new_parser(NAME, __doc__)
    parser.add_argument("--size", type=cli.positive, default=200, metavar="MIB",
                        help="MiB the device sends per session (default 200)")
    parser.add_argument("--rate", type=cli.positive, default=20, metavar="MIB_S",
                        help="MiB/s the client reads (default 20)")
    parser.add_argument("--sessions", type=cli.positive, default=1, help="slow sessions at once (default 1)")
    cli.add_servers(parser)
    cli.add_out(parser, NAME)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = now()
    size = args.size * MIB
    with running_world(args.servers, source_size=size) as world:
        rows = [asyncio.run(measure(world, site, size, args.rate * MIB, args.sessions)) for site in world.sites]
    result = run_record(
        started,
        {"size_mib": args.size, "rate_mib_s": args.rate, "sessions": args.sessions},
        servers=rows,
        goals=[{"goal": f"{row['server']}: growth <= {GOAL_MIB} MiB per session",
                "figure": row["growth_per_session_mib"], "pass": row["pass"] and row["complete"]}
               for row in rows],
    )
    cli.publish(result, args.out, draw, format_table(result))
    return result


if __name__ == "__main__":
    main()
