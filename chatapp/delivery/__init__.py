"""Delivery across processes: each room's messages to every local socket, in order, once.

The Broadcaster sends what the registry recorded to the /chat sockets of
this process; with a shared store (Redis), the RoomSequencer orders what
other processes recorded and fills gaps from the store, and the
Housekeeper renews this process's leases and sweeps dead processes'.
"""
