"""Protocol bridges between a device tunnel's bytes and a browser page.

Plain asyncio, no Django: each bridge is tested on its own against real
servers, with a plain TCP connection standing in for the tunnel.
"""
