// The outbox: lines typed but not yet acknowledged by the server, sent one
// at a time, oldest first, each with a client id (`cid`) that makes a
// resend safe (PROTOCOL.md, `send`). Kept in sessionStorage, so a reload
// keeps them too. No DOM: what happens to a line is told to a listener.
// Unit-tested by tests/client/outbox.test.mjs under `node --test`.
import { lineOf } from "./text.js";

// Where the outbox is. Every line waits in the queue whatever the state.
//
//   offline --resume()--> idle          joined on a connection
//   idle    --(a line)--> sending       the oldest line is emitted
//   sending --ok--------> idle          acknowledged; the next goes at once
//   sending --refused---> idle          empty, too_long, invalid: dropped
//   sending --busy------> waiting       rate_limited (retry_after), unavailable,
//                                       or no answer in time; then back to idle
//   sending --not_joined> idle          the listener connects again (offline)
//                                       or, the second time running, ends it
//   any     --pause()---> offline       the connection dropped: replies to
//                                       what was sent are stale from now on
//   any     --end()-----> ended         the membership is over: the queue is
//                                       emptied and forgotten, nothing is sent
export const State = Object.freeze({
  OFFLINE: "offline",
  IDLE: "idle",
  SENDING: "sending",
  WAITING: "waiting",
  ENDED: "ended",
});

// Try again after this long when the server is busy or did not answer.
export const RETRY_UNAVAILABLE_MS = 2000;

const CID_RE = /^[A-Za-z0-9_-]{1,64}$/;

// A fresh client id for a line: 16 to 32 characters of [0-9a-z].
export function randomCid(crypto = globalThis.crypto, random = Math.random) {
  let cid = "";
  if (crypto && typeof crypto.randomUUID === "function") {
    cid = crypto.randomUUID().replace(/-/g, "");
  } else if (crypto && typeof crypto.getRandomValues === "function") {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    cid = Array.from(bytes, (b) => (b % 36).toString(36)).join("");
  } else {
    while (cid.length < 16) cid += random().toString(36).slice(2);
    cid = cid.slice(0, 16);
  }
  return cid;
}

// Seconds to wait after a `rate_limited` ack: its retry_after, 1 s when
// that is missing or not a positive number, 60 s at most.
export function retryAfterSeconds(value) {
  const seconds = Number(value);
  return Math.min(Number.isFinite(seconds) && seconds > 0 ? seconds : 1, 60);
}

// The lines kept under `key`: only well-formed ones, as the server keeps them.
function load(storage, key) {
  try {
    const raw = storage.getItem(key);
    const parsed = raw ? JSON.parse(raw) : [];
    if (!Array.isArray(parsed)) return [];
    return parsed
      .filter((item) => item && typeof item.text === "string" && typeof item.cid === "string" && CID_RE.test(item.cid))
      .map((item) => ({ cid: item.cid, text: lineOf(item.text) }))
      .filter((item) => item.text !== "");
  } catch {
    return [];
  }
}

const NO_LISTENER = Object.freeze({});

export class Outbox {
  #key;
  #storage;
  #transport;
  #newCid;
  #timers;
  #listener = NO_LISTENER;
  #items;
  #state = State.OFFLINE;
  #attempt = 0; // bumped on every send and every pause: replies to older attempts are stale
  #timer = null; // the retry, while waiting
  #rejoinTried = false; // a not_joined ack made the listener connect again once

  // storage: getItem/setItem/removeItem (sessionStorage); they may throw.
  // transport: send(payload, reply(err, ack)) and `connected`.
  constructor({ key, storage, transport, newCid = randomCid, timers = globalThis }) {
    this.#key = key;
    this.#storage = storage;
    this.#transport = transport;
    this.#newCid = newCid;
    this.#timers = timers;
    this.#items = load(storage, key);
  }

  // Tell `listener` what happens to lines, through any of:
  // queued(item), sending(cid), waiting(cid, reason, seconds) with reason
  // "rate_limited", "unavailable" or "no_answer", acknowledged(cid, id),
  // rejected(cid, code), paused(), notJoined(again).
  listen(listener) {
    this.#listener = listener;
  }

  get state() {
    return this.#state;
  }

  // Not sending for now: no connection, or the membership ended.
  get paused() {
    return this.#state === State.OFFLINE || this.#state === State.ENDED;
  }

  // The lines not yet acknowledged, oldest first (copies).
  get items() {
    return this.#items.map((item) => ({ ...item }));
  }

  // Queue a line (already as lineOf gives it) and send it when its turn
  // comes; once ended, take nothing (null).
  add(text) {
    if (this.#state === State.ENDED) return null;
    const item = { cid: this.#newCid(), text };
    this.#items.push(item);
    this.#save();
    this.#emit("queued", { ...item });
    this.#pump();
    return item;
  }

  // Joined on a connection: start sending.
  resume() {
    if (this.#state === State.ENDED) return;
    this.#cancelRetry();
    this.#state = State.IDLE;
    this.#pump();
  }

  // The connection dropped: wait for the next one.
  pause() {
    this.#attempt += 1;
    if (this.#state === State.ENDED) return;
    this.#cancelRetry();
    this.#state = State.OFFLINE;
    this.#emit("paused");
  }

  // The membership is over: forget every line, here and in storage.
  end() {
    this.#attempt += 1;
    this.#cancelRetry();
    this.#state = State.ENDED;
    this.#items.length = 0;
    this.#save();
  }

  #emit(name, ...args) {
    const handler = this.#listener[name];
    if (typeof handler === "function") handler(...args);
  }

  #save() {
    try {
      if (this.#items.length) {
        this.#storage.setItem(this.#key, JSON.stringify(this.#items));
      } else {
        this.#storage.removeItem(this.#key);
      }
    } catch {
      // Storage full or disabled: the lines are still kept in memory.
    }
  }

  #remove(cid) {
    const index = this.#items.findIndex((item) => item.cid === cid);
    if (index === -1) return;
    this.#items.splice(index, 1);
    this.#save();
  }

  #cancelRetry() {
    this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #waitThenRetry(cid, reason, seconds) {
    this.#cancelRetry();
    this.#state = State.WAITING;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#state = State.IDLE;
      this.#pump();
    }, seconds * 1000);
    this.#emit("waiting", cid, reason, seconds);
  }

  // Send the oldest line, if the outbox is idle and the socket connected.
  #pump() {
    if (this.#state !== State.IDLE || !this.#transport.connected) return;
    const item = this.#items[0];
    if (!item) return;
    this.#state = State.SENDING;
    const mine = ++this.#attempt;
    this.#emit("sending", item.cid);
    this.#transport.send({ text: item.text, cid: item.cid }, (err, ack) => {
      if (mine !== this.#attempt) {
        // A reply to an attempt given up on; a success still counts.
        if (!err && ack && ack.ok === true) this.#acknowledged(item.cid, ack.id);
        return;
      }
      this.#state = State.IDLE;
      this.#reply(item.cid, err, ack);
    });
  }

  #acknowledged(cid, id) {
    this.#remove(cid);
    this.#emit("acknowledged", cid, id);
  }

  #reply(cid, err, ack) {
    if (err || !ack || typeof ack !== "object") {
      // No answer in time: keep the line. The cid makes a resend safe.
      if (this.#transport.connected) this.#waitThenRetry(cid, "no_answer", RETRY_UNAVAILABLE_MS / 1000);
      return;
    }
    if (ack.ok === true) {
      this.#rejoinTried = false;
      this.#acknowledged(cid, ack.id);
      this.#pump();
      return;
    }
    switch (ack.error) {
      case "empty":
      case "too_long":
      case "invalid":
        this.#remove(cid);
        this.#emit("rejected", cid, ack.error);
        this.#pump();
        break;
      case "rate_limited": {
        this.#waitThenRetry(cid, "rate_limited", retryAfterSeconds(ack.retry_after));
        break;
      }
      case "not_joined": {
        // Another process may have ended the membership while this one was
        // away from the store: connecting again renews it if it can; the
        // second time running, the listener ends the session.
        const again = this.#rejoinTried;
        this.#rejoinTried = true;
        this.#emit("notJoined", again);
        break;
      }
      default: // "unavailable" and anything unknown: try again shortly
        this.#waitThenRetry(cid, "unavailable", RETRY_UNAVAILABLE_MS / 1000);
    }
  }
}
