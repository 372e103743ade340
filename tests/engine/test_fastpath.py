"""chatapp.engine.fastpath: FastEmitManager writes a room's frames itself and keeps
python-socketio's rooms as python-socketio does; a broadcast on the real server."""

from __future__ import annotations

import random

import engineio
import gevent
import pytest
import socketio

from chatapp.engine.fastpath import FastEmitManager
from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.wire import read_frames


def test_fast_emit_writes_frames_directly_and_queues_behind_waiting_packets(websocket_pair):
    server = socketio.Server(async_mode="gevent", client_manager=FastEmitManager())
    direct, direct_peer = websocket_pair()
    behind, behind_peer = websocket_pair()
    for eio_sid, websocket in (("e1", direct), ("e2", behind)):
        server.eio.sockets[eio_sid] = engineio.socket.Socket(server.eio, eio_sid)
        server.environ[eio_sid] = {"wsgi.websocket": websocket}
        server.manager.enter_room(eio_sid + "s", "/chat", None, eio_sid=eio_sid)
        server.manager.enter_room(eio_sid + "s", "/chat", "ROOM")
    waiting = engineio.packet.Packet(engineio.packet.MESSAGE, "earlier")
    server.eio.sockets["e2"].queue.put(waiting)

    server.emit("message", {"id": 1}, to="ROOM", namespace="/chat")
    gevent.sleep(0)  # the end of this turn writes the batches

    assert read_frames(direct_peer, 1) == [b'42/chat,["message",{"id":1}]']
    queued = server.eio.sockets["e2"].queue
    assert [queued.get_nowait().encode() for _ in range(2)] == [
        "4earlier",
        '42/chat,["message",{"id":1}]',
    ]


def _manager_state(manager):
    return {
        namespace: {room: dict(members) for room, members in rooms.items()}
        for namespace, rooms in manager.rooms.items()
    }


def test_room_index_keeps_python_socketios_state():
    # The same operations on python-socketio's Manager and on FastEmitManager
    # leave the same rooms, and get_rooms answers the same, without a walk.
    stock, ours = socketio.Manager(), FastEmitManager()
    for manager in (stock, ours):
        socketio.Server(async_mode="threading", client_manager=manager)
    rng = random.Random(7)
    connected: set[tuple[str, str]] = set()
    for step in range(3000):
        namespace = rng.choice(["/chat", "/other"])
        sid = f"s{rng.randrange(40)}"
        room = rng.choice(["ABCD", "EFGH", "IJKL"])
        op = rng.random()
        for manager in (stock, ours):
            if (namespace, sid) not in connected:
                manager.basic_enter_room(sid, namespace, None, eio_sid="e" + sid)
                manager.basic_enter_room(sid, namespace, sid, eio_sid="e" + sid)
            elif op < 0.5:
                manager.basic_enter_room(sid, namespace, room)
            elif op < 0.8:
                manager.basic_leave_room(sid, namespace, room)
            else:
                manager.pre_disconnect(sid, namespace)
                manager.basic_disconnect(sid, namespace)
        if (namespace, sid) not in connected:
            connected.add((namespace, sid))
        elif op >= 0.8:
            connected.discard((namespace, sid))
        assert _manager_state(ours) == _manager_state(stock), step
        assert sorted(ours.get_rooms(sid, namespace)) == sorted(stock.get_rooms(sid, namespace))
        assert ours.pending_disconnect == stock.pending_disconnect
    assert ours._rooms_of.keys() == connected


@pytest.mark.server
def test_broadcast_reaches_every_member_in_order(tmp_path):
    live = LiveServer({}, tmp_path).start()
    try:
        people = [LivePerson(live.url) for _ in range(4)]
        code = people[0].create_room("p0")
        for i, person in enumerate(people[1:], 1):
            person.join(code, f"p{i}")
        clients = [person.socket({"room": code}) for person in people]
        for n in range(30):
            clients[n % 4].send_line(f"line {n}")
        for client in clients:
            client.wait_for(lambda c: sum(1 for m in c.lines() if m["kind"] == "chat") == 30)
            chat = [m for m in client.lines() if m["kind"] == "chat"]
            assert [m["text"] for m in chat] == [f"line {n}" for n in range(30)]
            ids = [m["id"] for m in client.lines()]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
        for client in clients:
            client.close()
    finally:
        live.close()
