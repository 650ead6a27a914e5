"""The technician's local proxy (``remote-access-client``).

It listens on a local TCP port (or on stdin/stdout) and carries each
connection to a PASSTHROUGH endpoint on a device's network, through its own
WebSocket to the gateway's passthrough route, so that ``ssh``, ``scp`` or any
TCP client on the technician's machine reaches the device's LAN. Plain
asyncio, like the agent: nothing here imports Django.
"""
