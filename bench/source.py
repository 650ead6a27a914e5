"""A TCP target that sends `size` bytes to each connection as fast as the
connection takes them, then closes it: the device side of the slow-reader
benchmark, in a process of its own.

Usage: python -m bench.source SIZE_BYTES. Prints its port on the first line;
stops when its stdin closes.
"""

import asyncio
import os
import sys

CHUNK = 64 * 1024


async def serve(size: int) -> None:
    # Random, so that no layer gains by compressing it.
    chunk = os.urandom(CHUNK)

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for offset in range(0, size, CHUNK):
                writer.write(chunk[: min(CHUNK, size - offset)])
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
