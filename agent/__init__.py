"""The device agent (``remote-access-agent``).

It dials out to the gateway, keeps a control channel open, and for every
connect request forwards one TCP connection on the device's LAN through a
WebSocket tunnel. Plain asyncio: nothing in this package imports Django, so
it installs on a device with only ``websockets``.
"""
