"""The engine: gevent, Engine.IO and WebSocket serving, and the limits every connection is held to.

The speed layer. It imports nothing of the chat (rooms, members, the /chat
namespace): the app factory gives it what it needs. Feature work does not
open these modules; a change here is a performance or hardening change,
measured with ../shared/bench (benchmarks/README.md).
"""
