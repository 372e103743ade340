// The Socket.IO connection to the /chat namespace (PROTOCOL.md,
// "Socket.IO"): connecting with the newest last_id, reconnecting where
// socket.io does not by itself, the order of messages, the ack timeout.
// It renders nothing: what happens is told to the handlers given to open().

// How long a `send` waits for its acknowledgement.
export const ACK_TIMEOUT_MS = 10000;
// Waits before connecting again where socket.io would not: after a
// server disconnect, and after a refusal (doubling up to the maximum).
const SERVER_DISCONNECT_RETRY_MS = 1000;
const REFUSED_RETRY_MS = 1000;
const REFUSED_RETRY_MAX_MS = 30000;

// Whether a payload has the shape of a Message.
export function isMessage(msg) {
  return (
    msg !== null &&
    typeof msg === "object" &&
    Number.isInteger(msg.id) &&
    typeof msg.name === "string" &&
    typeof msg.kind === "string"
  );
}

export class Connection {
  #io;
  #namespace;
  #room;
  #name;
  #handlers = {};
  #socket = null;
  #lastId = null; // id of the newest message shown; null before the first `joined`
  #joined = false; // joined on the current connection
  #ended = false; // out of this room for good: everything stops
  #reconnectTimer = null;
  #refusedDelay = REFUSED_RETRY_MS;

  // io: socket.io's `io`; name: who the page says we are, until `joined` says.
  constructor({ io, namespace, room, name }) {
    this.#io = io;
    this.#namespace = namespace;
    this.#room = room;
    this.#name = name;
  }

  // Our name in the room.
  get name() {
    return this.#name;
  }

  get lastId() {
    return this.#lastId;
  }

  get ended() {
    return this.#ended;
  }

  get connected() {
    return this.#socket !== null && this.#socket.connected;
  }

  // Joined on a live connection, and not ended: lines and typing may go.
  get ready() {
    return this.#joined && !this.#ended;
  }

  // Whether message `id` is in the log already.
  hasShown(id) {
    return this.#lastId !== null && id <= this.#lastId;
  }

  // Connect, telling `handlers` (each optional) what happens:
  // status(state) with state "connecting", "connected", "reconnecting",
  // "offline" or "ended"; joined({name, firstJoin, truncated, messages,
  // members}) where messages are the history's new ones, in order;
  // message(msg), each once and in order; members(list); typing(name);
  // disconnected(); refused(reason) for "not_joined" and "room_not_found".
  open(handlers) {
    this.#handlers = handlers;
    this.#status("connecting");
    const socket = this.#io(this.#namespace, {
      transports: ["websocket", "polling"],
      // Fall back to long-polling where a proxy or network blocks WebSocket.
      tryAllTransports: true,
      // A function, so every (re)connection sends the newest last_id.
      auth: (cb) => cb(this.#lastId === null ? { room: this.#room } : { room: this.#room, last_id: this.#lastId }),
    });
    this.#socket = socket;
    socket.on("connect", () => this.#onConnect());
    socket.on("joined", (payload) => this.#onJoined(payload));
    socket.on("message", (msg) => this.#onMessage(msg));
    socket.on("members", (payload) => {
      if (!this.#ended && payload) this.#emit("members", payload.members);
    });
    socket.on("typing", (payload) => {
      if (!this.#ended && payload) this.#emit("typing", payload.name);
    });
    socket.on("disconnect", (reason) => this.#onDisconnect(reason));
    socket.on("connect_error", (err) => this.#onConnectError(err));
    socket.io.on("reconnect_attempt", () => this.#status("reconnecting"));
    window.addEventListener("offline", () => this.#status("offline"));
    window.addEventListener("online", () => this.#onOnline());
  }

  // Emit a `send`; reply(err, ack) gets its ack, or an error after ACK_TIMEOUT_MS.
  send(payload, reply) {
    this.#socket.timeout(ACK_TIMEOUT_MS).emit("send", payload, reply);
  }

  sendTyping() {
    this.#socket.emit("typing", {});
  }

  // Drop the connection and connect again at once (replayed from last_id).
  reconnect() {
    this.#socket.disconnect().connect();
  }

  // Ignore the server from now on (the page is leaving the room).
  stop() {
    this.#ended = true;
    this.#clearReconnect();
  }

  // The server told us we are out of this room: say so and disconnect.
  end() {
    this.#status("ended");
    this.stop();
    this.#joined = false;
    // Disconnect after the current event has been handled.
    setTimeout(() => this.#socket.disconnect(), 0);
  }

  #emit(name, ...args) {
    const handler = this.#handlers[name];
    if (typeof handler === "function") handler(...args);
  }

  #status(state) {
    if (this.#ended && state !== "ended") return;
    if (state !== "connected" && state !== "ended" && navigator.onLine === false) {
      state = "offline";
    }
    this.#emit("status", state);
  }

  #clearReconnect() {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  #connectLater(ms) {
    this.#clearReconnect();
    this.#reconnectTimer = setTimeout(() => {
      if (!this.#ended && !this.#socket.connected) this.#socket.connect();
    }, ms);
  }

  #onConnect() {
    this.#clearReconnect();
    this.#refusedDelay = REFUSED_RETRY_MS;
    this.#status("connected");
  }

  #onJoined(payload) {
    if (this.#ended || !payload || typeof payload !== "object") return;
    if (typeof payload.name === "string" && payload.name) this.#name = payload.name;
    const firstJoin = this.#lastId === null;
    const history = Array.isArray(payload.history) ? payload.history : [];
    const messages = [];
    let newest = this.#lastId;
    for (const msg of history) {
      if (!isMessage(msg) || (newest !== null && msg.id <= newest)) continue;
      messages.push(msg);
      newest = msg.id;
    }
    if (newest === null) {
      newest = Number.isInteger(payload.latest_id) && payload.latest_id >= 0 ? payload.latest_id : 0;
    }
    this.#lastId = newest;
    this.#joined = true;
    this.#emit("joined", {
      name: this.#name,
      firstJoin,
      truncated: payload.truncated === true,
      messages,
      members: payload.members,
    });
    this.#status("connected");
  }

  #onMessage(msg) {
    // Live messages follow `joined` (PROTOCOL.md); anything before it is
    // covered by the history replay.
    if (this.#ended || !this.#joined || !isMessage(msg)) return;
    if (this.#lastId !== null && msg.id <= this.#lastId) return; // already shown
    if (this.#lastId !== null && msg.id > this.#lastId + 1) {
      // A gap should never happen; reconnect to be replayed from last_id.
      this.reconnect();
      return;
    }
    this.#lastId = msg.id;
    this.#emit("message", msg);
  }

  #onDisconnect(reason) {
    this.#joined = false;
    this.#emit("disconnected");
    if (this.#ended) return;
    this.#status("reconnecting");
    if (reason === "io server disconnect") {
      // The server dropped us (restart, or we left from another tab): try
      // again; a refusal then says why.
      this.#connectLater(SERVER_DISCONNECT_RETRY_MS);
    }
  }

  #onConnectError(err) {
    if (this.#ended) return;
    const reason = err && err.message;
    if (reason === "not_joined" || reason === "room_not_found") {
      this.#emit("refused", reason);
      return;
    }
    this.#status("reconnecting");
    if (!this.#socket.active) {
      // Refused by the server (e.g. "unavailable"): socket.io does not retry
      // by itself then, so back off and try again.
      this.#connectLater(this.#refusedDelay);
      this.#refusedDelay = Math.min(this.#refusedDelay * 2, REFUSED_RETRY_MAX_MS);
    }
  }

  #onOnline() {
    if (this.#ended) return;
    if (this.#socket.connected) {
      this.#status("connected");
      return;
    }
    this.#status("reconnecting");
    // Connect now, not when the reconnection backoff fires next (up to 5 s
    // away after attempts failed offline): a drop shorter than the leave
    // grace then tells the room nothing.
    this.#clearReconnect();
    this.reconnect();
  }
}
