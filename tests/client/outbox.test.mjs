// Unit tests of the outbox's state machine and its persistence
// (chatapp/static/js/outbox.js), with a fake storage, transport and clock.
// Run with `node --test tests/client/` (part of `./dev test`).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Outbox, randomCid, retryAfterSeconds, State } from "../../chatapp/static/js/outbox.js";

const KEY = "chatapp:outbox:ABCD";

// sessionStorage's three methods over a Map; `failing` makes them throw.
function fakeStorage(entries = {}) {
  const map = new Map(Object.entries(entries));
  return {
    map,
    failing: false,
    getItem(key) {
      if (this.failing) throw new Error("SecurityError");
      return map.has(key) ? map.get(key) : null;
    },
    setItem(key, value) {
      if (this.failing) throw new Error("QuotaExceededError");
      map.set(key, String(value));
    },
    removeItem(key) {
      if (this.failing) throw new Error("SecurityError");
      map.delete(key);
    },
    lines(key = KEY) {
      return map.has(key) ? JSON.parse(map.get(key)) : null;
    },
  };
}

// The connection as the outbox sees it: each send waits for the test to answer it.
function fakeTransport() {
  return {
    connected: true,
    sent: [],
    send(payload, reply) {
      this.sent.push({ payload, reply });
    },
    texts() {
      return this.sent.map((s) => s.payload.text);
    },
    // Answer the newest send (or send `index`): reply(err, ack).
    answer(ack, { err = null, index = this.sent.length - 1 } = {}) {
      this.sent[index].reply(err, ack);
    },
  };
}

// setTimeout/clearTimeout that run only when the test says.
function fakeTimers() {
  const due = new Map();
  let next = 1;
  return {
    setTimeout(fn, ms) {
      due.set(next, { fn, ms });
      return next++;
    },
    clearTimeout(id) {
      due.delete(id);
    },
    delays() {
      return [...due.values()].map((t) => t.ms);
    },
    runAll() {
      const now = [...due.values()];
      due.clear();
      now.forEach((t) => t.fn());
    },
  };
}

// An outbox with fakes, cids "c1", "c2", ... and a listener that records.
function make({ storage = fakeStorage(), transport = fakeTransport(), timers = fakeTimers() } = {}) {
  let n = 0;
  const outbox = new Outbox({ key: KEY, storage, transport, timers, newCid: () => `c${++n}` });
  const events = [];
  const record =
    (name) =>
    (...args) =>
      events.push([name, ...args]);
  outbox.listen({
    queued: (item) => events.push(["queued", item.cid, item.text, outbox.paused]),
    sending: record("sending"),
    waiting: record("waiting"),
    acknowledged: record("acknowledged"),
    rejected: record("rejected"),
    paused: record("paused"),
    notJoined: record("notJoined"),
  });
  return { outbox, storage, transport, timers, events };
}

describe("lines wait while offline and go one at a time, in order", () => {
  test("it starts offline: a line is queued and kept, not sent", () => {
    const { outbox, storage, transport, events } = make();
    assert.equal(outbox.state, State.OFFLINE);
    assert.equal(outbox.paused, true);
    outbox.add("hello");
    assert.deepEqual(events, [["queued", "c1", "hello", true]]);
    assert.deepEqual(transport.sent, []);
    assert.deepEqual(storage.lines(), [{ cid: "c1", text: "hello" }]);
    assert.deepEqual(outbox.items, [{ cid: "c1", text: "hello" }]);
  });

  test("resume sends the oldest line with its cid; the next goes once it is acknowledged", () => {
    const { outbox, storage, transport, events } = make();
    outbox.add("one");
    outbox.add("two");
    outbox.resume();
    assert.equal(outbox.state, State.SENDING);
    assert.deepEqual(
      transport.sent.map((s) => s.payload),
      [{ text: "one", cid: "c1" }],
    );

    transport.answer({ ok: true, id: 7 });
    assert.deepEqual(transport.texts(), ["one", "two"]);
    assert.deepEqual(storage.lines(), [{ cid: "c2", text: "two" }]);
    transport.answer({ ok: true, id: 8 });
    assert.equal(outbox.state, State.IDLE);
    assert.equal(storage.lines(), null); // an empty outbox leaves nothing in storage
    assert.deepEqual(events.slice(2), [
      ["sending", "c1"],
      ["acknowledged", "c1", 7],
      ["sending", "c2"],
      ["acknowledged", "c2", 8],
    ]);
  });

  test("a line added while one is in flight waits its turn", () => {
    const { outbox, transport, events } = make();
    outbox.resume();
    assert.equal(outbox.state, State.IDLE);
    outbox.add("one");
    outbox.add("two");
    assert.deepEqual(events.at(-1), ["queued", "c2", "two", false]);
    assert.deepEqual(transport.texts(), ["one"]);
    transport.answer({ ok: true, id: 1 });
    assert.deepEqual(transport.texts(), ["one", "two"]);
  });

  test("nothing goes while the socket is not connected", () => {
    const { outbox, transport } = make();
    transport.connected = false;
    outbox.add("one");
    outbox.resume();
    assert.deepEqual(transport.sent, []);
    assert.equal(outbox.state, State.IDLE);
  });
});

describe("refusals and waits", () => {
  for (const code of ["empty", "too_long", "invalid"]) {
    test(`a line refused as ${code} is dropped and the next goes`, () => {
      const { outbox, storage, transport, events } = make();
      outbox.add("bad");
      outbox.add("good");
      outbox.resume();
      transport.answer({ ok: false, error: code });
      assert.deepEqual(events.at(-2), ["rejected", "c1", code]);
      assert.deepEqual(transport.texts(), ["bad", "good"]);
      assert.deepEqual(storage.lines(), [{ cid: "c2", text: "good" }]);
    });
  }

  test("rate_limited waits retry_after seconds, then resends the same line", () => {
    const { outbox, transport, timers, events } = make();
    outbox.add("quick");
    outbox.resume();
    transport.answer({ ok: false, error: "rate_limited", retry_after: 1.5 });
    assert.equal(outbox.state, State.WAITING);
    assert.deepEqual(events.at(-1), ["waiting", "c1", "rate_limited", 1.5]);
    assert.deepEqual(timers.delays(), [1500]);
    outbox.add("queued meanwhile");
    assert.equal(transport.sent.length, 1);

    timers.runAll();
    assert.equal(outbox.state, State.SENDING);
    assert.deepEqual(
      transport.sent.map((s) => s.payload),
      [
        { text: "quick", cid: "c1" },
        { text: "quick", cid: "c1" },
      ],
    );
  });

  test("retry_after is a positive number of seconds, 60 at most", () => {
    assert.equal(retryAfterSeconds(0.2), 0.2);
    assert.equal(retryAfterSeconds("3"), 3);
    for (const bad of [undefined, null, "soon", 0, -5, NaN, Infinity]) {
      assert.equal(retryAfterSeconds(bad), 1, String(bad));
    }
    assert.equal(retryAfterSeconds(3600), 60);
  });

  for (const error of ["unavailable", "something new"]) {
    test(`${error} waits 2 s and tries again`, () => {
      const { outbox, transport, timers, events } = make();
      outbox.add("line");
      outbox.resume();
      transport.answer({ ok: false, error });
      assert.deepEqual(events.at(-1), ["waiting", "c1", "unavailable", 2]);
      assert.deepEqual(timers.delays(), [2000]);
      timers.runAll();
      assert.deepEqual(transport.texts(), ["line", "line"]);
    });
  }

  for (const [what, err, ack] of [
    ["no answer in time", new Error("operation has timed out"), undefined],
    ["an answer that is no ack", null, "not an ack"],
    ["an empty answer", null, null],
  ]) {
    test(`${what} keeps the line and tries again in 2 s while connected`, () => {
      const { outbox, transport, timers, events } = make();
      outbox.add("line");
      outbox.resume();
      transport.answer(ack, { err });
      assert.equal(outbox.state, State.WAITING);
      assert.deepEqual(events.at(-1), ["waiting", "c1", "no_answer", 2]);
      assert.deepEqual(timers.delays(), [2000]);
      assert.deepEqual(outbox.items, [{ cid: "c1", text: "line" }]);
      timers.runAll();
      assert.deepEqual(transport.texts(), ["line", "line"]);
    });
  }

  test("no answer once disconnected waits for the next connection instead", () => {
    const { outbox, transport, timers } = make();
    outbox.add("line");
    outbox.resume();
    transport.connected = false;
    transport.answer(undefined, { err: new Error("timed out") });
    assert.equal(outbox.state, State.IDLE);
    assert.deepEqual(timers.delays(), []);
    assert.equal(transport.sent.length, 1);
  });
});

describe("dropped connections", () => {
  test("pause goes offline, cancels a wait, and makes replies of the old connection stale", () => {
    const { outbox, transport, timers, events } = make();
    outbox.add("one");
    outbox.resume();
    transport.answer({ ok: false, error: "rate_limited", retry_after: 1 });
    assert.deepEqual(timers.delays(), [1000]);
    outbox.pause();
    assert.equal(outbox.state, State.OFFLINE);
    assert.deepEqual(events.at(-1), ["paused"]);
    assert.deepEqual(timers.delays(), []);
    timers.runAll();
    assert.equal(transport.sent.length, 1);
  });

  test("a late error for an attempt given up on is ignored", () => {
    const { outbox, transport, timers, events } = make();
    outbox.add("one");
    outbox.resume();
    outbox.pause();
    const before = events.length;
    transport.answer({ ok: false, error: "rate_limited", retry_after: 5 });
    transport.answer(undefined, { err: new Error("socket has been disconnected") });
    assert.equal(events.length, before);
    assert.equal(outbox.state, State.OFFLINE);
    assert.deepEqual(timers.delays(), []);
  });

  test("a late success still counts, but sends nothing by itself", () => {
    const { outbox, storage, transport, events } = make();
    outbox.add("one");
    outbox.add("two");
    outbox.resume();
    outbox.pause();
    transport.answer({ ok: true, id: 3 });
    assert.deepEqual(events.at(-1), ["acknowledged", "c1", 3]);
    assert.deepEqual(storage.lines(), [{ cid: "c2", text: "two" }]);
    assert.equal(transport.sent.length, 1);
  });

  test("the next connection resends the unacknowledged line with the same cid", () => {
    const { outbox, transport } = make();
    outbox.add("typed once");
    outbox.resume();
    outbox.pause();
    outbox.resume();
    assert.deepEqual(
      transport.sent.map((s) => s.payload.cid),
      ["c1", "c1"],
    );
    transport.answer({ ok: true, id: 9 }, { index: 0 }); // the first reply is stale now
    transport.answer({ ok: true, id: 9 });
    assert.deepEqual(outbox.items, []);
  });

  test("not_joined asks to connect again once; twice running, it gives up", () => {
    const { outbox, transport, events } = make();
    outbox.add("one");
    outbox.resume();
    transport.answer({ ok: false, error: "not_joined" });
    assert.deepEqual(events.at(-1), ["notJoined", false]);
    assert.deepEqual(outbox.items, [{ cid: "c1", text: "one" }]);
    outbox.pause();
    outbox.resume();
    transport.answer({ ok: false, error: "not_joined" });
    assert.deepEqual(events.at(-1), ["notJoined", true]);
  });

  test("a success between two not_joined makes the second a first again", () => {
    const { outbox, transport, events } = make();
    outbox.add("one");
    outbox.add("two");
    outbox.resume();
    transport.answer({ ok: false, error: "not_joined" });
    outbox.pause();
    outbox.resume();
    transport.answer({ ok: true, id: 5 });
    transport.answer({ ok: false, error: "not_joined" });
    assert.deepEqual(
      events.filter((e) => e[0] === "notJoined"),
      [
        ["notJoined", false],
        ["notJoined", false],
      ],
    );
  });
});

describe("when the membership ends", () => {
  test("end empties the outbox and its storage, and nothing is sent after", () => {
    const { outbox, storage, transport, timers, events } = make();
    outbox.add("one");
    outbox.add("two");
    outbox.resume();
    transport.answer({ ok: false, error: "rate_limited", retry_after: 1 });
    outbox.end();
    assert.equal(outbox.state, State.ENDED);
    assert.equal(outbox.paused, true);
    assert.deepEqual(outbox.items, []);
    assert.equal(storage.lines(), null);
    assert.deepEqual(timers.delays(), []);

    const before = events.length;
    assert.equal(outbox.add("after the end"), null);
    outbox.resume();
    outbox.pause();
    assert.equal(events.length, before);
    assert.equal(storage.lines(), null);
    assert.equal(transport.sent.length, 1);
  });

  test("a reply to a line in flight at the end only counts as a success", () => {
    const { outbox, transport, timers, events } = make();
    outbox.add("one");
    outbox.resume();
    outbox.end();
    transport.answer({ ok: false, error: "rate_limited", retry_after: 1 });
    assert.deepEqual(timers.delays(), []);
    transport.answer({ ok: true, id: 4 });
    assert.deepEqual(events.at(-1), ["acknowledged", "c1", 4]);
    assert.equal(outbox.state, State.ENDED);
  });

  test("a new outbox for the room after the end finds nothing to send", () => {
    const storage = fakeStorage();
    const first = make({ storage });
    first.outbox.add("held back");
    first.outbox.end();
    assert.deepEqual(make({ storage }).outbox.items, []);
  });
});

describe("persistence in sessionStorage", () => {
  test("a reload finds the lines not acknowledged, in order, with their cids", () => {
    const storage = fakeStorage();
    const before = make({ storage });
    before.outbox.add("one");
    before.outbox.add("two");
    before.outbox.add("three");
    before.outbox.resume();
    before.transport.answer({ ok: true, id: 1 });

    const after = make({ storage });
    assert.deepEqual(after.outbox.items, [
      { cid: "c2", text: "two" },
      { cid: "c3", text: "three" },
    ]);
    assert.equal(after.outbox.state, State.OFFLINE);
    after.outbox.resume();
    assert.deepEqual(after.transport.sent[0].payload, { text: "two", cid: "c2" });
  });

  test("each room has its own key", () => {
    const storage = fakeStorage({ "chatapp:outbox:WXYZ": JSON.stringify([{ cid: "x1", text: "elsewhere" }]) });
    assert.deepEqual(make({ storage }).outbox.items, []);
  });

  test("only well-formed lines are loaded, as the server would keep them", () => {
    const storage = fakeStorage({
      [KEY]: JSON.stringify([
        { cid: "ok_1", text: "  kept\r\ntrimmed \r\n" },
        { cid: "has space", text: "bad cid" },
        { cid: "x".repeat(65), text: "cid too long" },
        { cid: "", text: "empty cid" },
        { cid: 5, text: "number cid" },
        { cid: "no_text" },
        { cid: "blank", text: " \r\n " },
        null,
        "a string",
        { cid: "ok-2", text: "second", extra: true },
      ]),
    });
    assert.deepEqual(make({ storage }).outbox.items, [
      { cid: "ok_1", text: "kept\ntrimmed" },
      { cid: "ok-2", text: "second" },
    ]);
  });

  for (const [what, raw] of [
    ["not JSON", "{oops"],
    ["not a list", JSON.stringify({ cid: "a", text: "b" })],
    ["null", "null"],
  ]) {
    test(`a stored value that is ${what} loads as empty`, () => {
      assert.deepEqual(make({ storage: fakeStorage({ [KEY]: raw }) }).outbox.items, []);
    });
  }

  test("storage that throws: lines are still kept in memory and sent", () => {
    const storage = fakeStorage();
    storage.failing = true;
    const { outbox, transport } = make({ storage });
    assert.deepEqual(outbox.items, []);
    outbox.add("still goes");
    outbox.resume();
    assert.deepEqual(transport.texts(), ["still goes"]);
    transport.answer({ ok: true, id: 1 });
    outbox.end();
    assert.equal(outbox.state, State.ENDED);
  });

  test("items are copies: changing them changes nothing inside", () => {
    const { outbox } = make();
    outbox.add("one");
    outbox.items[0].text = "changed";
    assert.deepEqual(outbox.items, [{ cid: "c1", text: "one" }]);
  });
});

describe("randomCid", () => {
  const CID = /^[0-9a-z]{16,32}$/;

  test("from randomUUID, getRandomValues, or Math.random where neither exists", () => {
    assert.match(randomCid(), CID);
    assert.notEqual(randomCid(), randomCid());
    const noUuid = { getRandomValues: (bytes) => bytes.fill(200) };
    assert.equal(randomCid(noUuid), "k".repeat(16)); // 200 % 36 = 20 -> "k"
    assert.match(randomCid(null), CID);
    assert.equal(
      randomCid(null, () => 0.5),
      "i".repeat(16),
    ); // 0.5 is "0.i" in base 36
    assert.equal(randomCid(null, () => 0.123456789).length, 16); // about 10 digits a draw: cut
  });
});
