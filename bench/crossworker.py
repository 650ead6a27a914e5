"""The passthrough path across workers: the client's WebSocket on one
gateway process, the device's on another, the bytes between them through a
real redis-server; beside the same path within one worker and the stock
channels-redis layer carrying the same 64 KiB chunks. Every transfer is
checked: the bytes that come back equal those sent, in order.

Goal: cross-worker >= 150 MiB/s (4x the stock Redis channel layer).
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import chart, cli
from bench.paths import FRAME, MIB, OPEN_TIMEOUT, open_websocket, percentile, round_trips, throughput
from bench.report import now, run_record
from bench.world import BenchGateway, configure_django, create_device, create_user, start_target
from tests.live import Agent, redis_server

NAME = "crossworker"
GOAL_MIB_S = 150
WARM_UP_ROUND_TRIPS = 20


@dataclass(frozen=True)
class Pair:
    server: str
    client_port: int
    device_port: int
    device_pk: int
    endpoint_pk: int

    def url(self, port: int) -> str:
        return (f"ws://127.0.0.1:{port}/service/remoteaccess/client/"
                f"{self.device_pk}/configurations/{self.endpoint_pk}")


@contextmanager
def worker_pairs(servers: tuple[str, ...]) -> Iterator[tuple[list[Pair], str, str]]:
    """Per ASGI server, two gateways on one redis-server and one SQLite file,
    with a device whose agent is on the second; yields (pairs, token, redis URL)."""
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-data-")))
        configure_django(data_dir)
        redis_url = stack.enter_context(redis_server())
        echo_port = start_target(stack, "bench.echo")
        user, token = create_user()
        pairs = []
        for server in servers:
            device, endpoints = create_device(user, f"bench-{server}", {"echo": echo_port})
            gateways = []
            for _ in range(2):
                gateway = BenchGateway(data_dir, server)
                gateway.env["REDIS_URL"] = redis_url
                stack.callback(gateway.stop)
                gateways.append(gateway.start())
            agent = Agent(data_dir, gateways[1].url, device)
            stack.callback(agent.stop)
            agent.start().wait_online()
            pairs.append(Pair(server, gateways[0].port, gateways[1].port, device.pk, endpoints["echo"].pk))
        yield pairs, token, redis_url


async def measure_path(url: str, token: str, size: int, echo_count: int) -> dict[str, float]:
    pipe = await asyncio.wait_for(open_websocket(url, {"Authorization": f"Bearer {token}"}), OPEN_TIMEOUT)
    try:
        await asyncio.wait_for(round_trips(pipe, WARM_UP_ROUND_TRIPS), OPEN_TIMEOUT)
        echoes = await asyncio.wait_for(round_trips(pipe, echo_count), 30 + echo_count * 0.05)
        mib_s = await asyncio.wait_for(throughput(pipe, size, verify=True), 30 + size / MIB)
    finally:
        await asyncio.wait_for(pipe.close(), OPEN_TIMEOUT)
    return {"throughput_mib_s": mib_s, "echo_p50_ms": statistics.median(echoes) * 1000,
            "echo_p99_ms": percentile(echoes, 0.99) * 1000}


async def stock_layer(redis_url: str, size: int) -> float:
    """MiB/s of 64 KiB messages from one channels-redis layer to another's
    channel (two connections, as two workers have), all received in order."""
    from channels_redis.core import RedisChannelLayer

    hosts = [{"address": redis_url, "socket_timeout": None}]
    sender, receiver = RedisChannelLayer(hosts=hosts), RedisChannelLayer(hosts=hosts)
    channel = await receiver.new_channel()
    chunk = bytes(FRAME)
    count = size // FRAME

    async def send() -> None:
        for number in range(count):
            await sender.send(channel, {"type": "relay.data", "seq": number, "bytes": chunk})

    async def receive() -> None:
        for number in range(count):
            message = await receiver.receive(channel)
            if message["seq"] != number:
                raise ValueError(f"the stock layer delivered chunk {message['seq']} for {number}")

    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(send(), receive()), 60 + size / MIB)
    finally:
        await sender.close_pools()
        await receiver.close_pools()
    return size / MIB / (time.perf_counter() - start)


async def run_rounds(pairs: list[Pair], token: str, redis_url: str, rounds: int, size: int,
                     echo_count: int) -> list[dict]:
    samples = []
    for number in range(rounds):
        paths = [(f"{name}-{pair.server}", pair.url(port)) for pair in pairs
                 for name, port in (("cross-worker", pair.client_port), ("same-worker", pair.device_port))]
        # Rotate the order, so that no path is always the cold one.
        shift = number % len(paths)
        for name, url in paths[shift:] + paths[:shift]:
            samples.append({"path": name, "round": number, **await measure_path(url, token, size, echo_count)})
        # The stock layer carries a quarter as much: it is the slow baseline.
        samples.append({"path": "stock-redis-layer", "round": number,
                        "throughput_mib_s": await stock_layer(redis_url, max(size // 4, FRAME))})
    return samples


def medians(samples: list[dict]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for path in dict.fromkeys(sample["path"] for sample in samples):
        rows = [sample for sample in samples if sample["path"] == path]
        table[path] = {metric: statistics.median(row[metric] for row in rows)
                       for metric in rows[0] if metric not in ("path", "round")}
    return table


def format_table(result: dict) -> str:
    settings = result["settings"]
    lines = [f"cross-worker: median of {settings['rounds']} rounds, {settings['size_mib']} MiB each way, verified",
             f"{'path':<28}{'throughput MiB/s':>18}{'echo p50 ms':>13}{'echo p99 ms':>13}", "-" * 72]
    for path, values in result["medians"].items():
        echo = (f"{values['echo_p50_ms']:>13.3f}{values['echo_p99_ms']:>13.3f}"
                if "echo_p50_ms" in values else f"{'':>26}")
        lines.append(f"{path:<28}{values['throughput_mib_s']:>18.1f}{echo}")
    lines.append("")
    for goal in result["goals"]:
        lines.append(f"{goal['goal']:<56}{goal['figure']:>8.1f}  {'pass' if goal['pass'] else 'MISS'}")
    return "\n".join(lines)


def draw(result: dict, path: Path) -> None:
    chart.bars(path, "throughput, all bytes verified (MiB/s, higher is better)",
               {name: values["throughput_mib_s"] for name, values in result["medians"].items()}, limit=GOAL_MIB_S)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.new_parser(NAME, __doc__)
    cli.add_transfers(parser, rounds=3, echo_count=300)
    cli.add_servers(parser)
    cli.add_out(parser, NAME)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = now()
    with worker_pairs(args.servers) as (pairs, token, redis_url):
        samples = asyncio.run(run_rounds(pairs, token, redis_url, args.rounds, args.size * MIB, args.echo_count))
    table = medians(samples)
    stock = table["stock-redis-layer"]["throughput_mib_s"]
    goals = [{"goal": f"cross-worker-{server} >= {GOAL_MIB_S} MiB/s", "server": server,
              "figure": table[f"cross-worker-{server}"]["throughput_mib_s"],
              "pass": table[f"cross-worker-{server}"]["throughput_mib_s"] >= GOAL_MIB_S}
             for server in args.servers]
    result = run_record(
        started,
        {"size_mib": args.size, "rounds": args.rounds, "echo_count": args.echo_count},
        medians=table,
        ratios={f"cross-worker-{server}/stock-redis-layer":
                table[f"cross-worker-{server}"]["throughput_mib_s"] / stock for server in args.servers},
        goals=goals,
        samples=samples,
    )
    cli.publish(result, args.out, draw, format_table(result))
    return result


if __name__ == "__main__":
    main()
