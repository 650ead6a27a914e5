"""The TCP echo target in a process of its own, so that it never competes
with the benchmark's client for one interpreter lock.

Prints its port on the first line; stops when its stdin closes.
"""

import sys

from tests.live import EchoServer


def main() -> None:
    server = EchoServer()
    print(server.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
