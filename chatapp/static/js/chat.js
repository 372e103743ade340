// chatapp room page: the Socket.IO client of the /chat namespace.
//
// Wire contract: PROTOCOL.md ("Socket.IO"). Everything the server or a user
// supplies is rendered with textContent, never parsed as HTML. A module: the
// text rules come from text.js, the outbox's states from outbox.js.
import { Outbox } from "./outbox.js";
import {
  afterGap,
  clockTime,
  dayKey,
  dayLabel,
  dayOfKey,
  fullTime,
  groupLine,
  lineLength,
  lineOf,
  linkParts,
  mentions,
  notificationBody,
  parseTs,
  typingText,
  untilNextDay,
} from "./text.js";

(() => {
  const root = document.getElementById("chat");
  if (!root || typeof window.io !== "function") {
    return;
  }

  // ---------------------------------------------------------------- constants
  const ROOM = root.dataset.roomCode || "";
  const NAMESPACE = root.dataset.namespace || "/chat";
  const INVITE_URL = root.dataset.inviteUrl || "";
  const LOBBY_URL = root.dataset.lobbyUrl || "/";
  const OUTBOX_KEY = `chatapp:outbox:${ROOM}`;
  const ACK_TIMEOUT_MS = 10000;
  // A margin over the server's 2 s relay interval: a ping that arrives a
  // little early is dropped, and the indicator would blink out.
  const TYPING_SEND_EVERY_MS = 2250;
  const TYPING_SHOW_MS = 3000;
  const BOTTOM_SLACK_PX = 40;
  const NOTIFY_KEY = "chatapp:notify-mentions";

  // ---------------------------------------------------------------- elements
  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const bannerEl = $("banner");
  const logEl = $("log");
  const logList = $("log-list");
  const outboxEl = $("outbox");
  const newMessagesBtn = $("new-messages");
  const typingEl = $("typing");
  const composer = $("composer");
  const textarea = $("message");
  const membersEl = $("members");
  const memberCountEl = $("member-count");
  const peopleDetails = $("people-details");
  const inviteInput = $("invite-url");
  const copyBtn = $("copy-invite");
  const copyFeedback = $("copy-feedback");
  const leaveForm = $("leave-form");
  const announcer = $("announcer");
  const notifyBtn = $("notify");
  const notifyFeedback = $("notify-feedback");

  // ---------------------------------------------------------------- state
  let myName = root.dataset.name || "";
  let lastId = null; // id of the newest message shown; null before the first `joined`
  let ended = false; // the server told us we are out of this room: stop everything
  let canSend = false; // joined on the current connection
  let reconnectTimer = null;
  let manualReconnectDelay = 1000;
  let lastTypingSent = 0;
  const typers = new Map(); // name -> timeout id
  const pendingEls = new Map(); // cid -> <li> in #outbox
  const awaitingEcho = new Map(); // message id -> <li> acknowledged, not yet in the log
  let lastShown = null; // {kind, name, time, day} of the newest item in the log: grouping, day separators
  let unread = 0; // chat lines from others that arrived while the tab was hidden
  const baseTitle = document.title;

  // ---------------------------------------------------------------- helpers
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function lobbyLink() {
    const url = new URL(LOBBY_URL, window.location.href);
    url.searchParams.set("code", ROOM);
    return url.pathname + url.search;
  }

  function announce(text) {
    if (!announcer) return;
    announcer.textContent = "";
    // A change on the next frame is what screen readers pick up reliably.
    window.requestAnimationFrame(() => {
      announcer.textContent = text;
    });
  }

  // ---------------------------------------------------------------- status
  const STATUS_TEXT = {
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: "Reconnecting…",
    offline: "Offline",
    ended: "Disconnected",
  };

  function setStatus(state) {
    if (ended && state !== "ended") return;
    if (state !== "connected" && state !== "ended" && navigator.onLine === false) {
      state = "offline";
    }
    if (statusEl.dataset.state === state) return;
    statusEl.dataset.state = state;
    statusEl.textContent = STATUS_TEXT[state];
  }

  // ---------------------------------------------------------------- banner
  function showBanner(text) {
    bannerEl.replaceChildren();
    bannerEl.append(el("span", "banner-text", text), " ");
    const link = el("a", "banner-link", "Back to the lobby");
    link.href = lobbyLink();
    bannerEl.append(link);
    bannerEl.hidden = false;
  }

  function endSession(text) {
    if (ended) return;
    setStatus("ended");
    ended = true;
    canSend = false;
    clearTimeout(reconnectTimer);
    showBanner(text);
    // Lines that never reached the room stay on screen, marked, so nothing is
    // lost silently; they leave the outbox, or joining again would send them
    // under the new membership.
    outbox.end();
    for (const li of pendingEls.values()) {
      li.classList.add("pending--error");
      li.querySelector(".pending-state").textContent = "Not sent: the room is no longer reachable";
    }
    textarea.disabled = true;
    composer.querySelector("button[type=submit]").disabled = true;
    clearAllTypers();
    // Disconnect after the current event has been handled.
    setTimeout(() => socket.disconnect(), 0);
  }

  // ---------------------------------------------------------------- log and scrolling
  function isAtBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight <= BOTTOM_SLACK_PX;
  }

  function scrollToBottom() {
    logEl.scrollTop = logEl.scrollHeight;
    newMessagesBtn.hidden = true;
  }

  // Append nodes to the log; follow them only if the reader was at the bottom.
  function appendToLog(nodes, { force = false } = {}) {
    if (!nodes.length) return;
    const follow = force || isAtBottom();
    const fragment = document.createDocumentFragment();
    nodes.forEach((node) => fragment.append(node));
    logList.append(fragment);
    if (follow) {
      scrollToBottom();
    } else {
      newMessagesBtn.hidden = false;
    }
  }

  function timeElement(ts) {
    const date = parseTs(ts);
    const time = el("time", "msg-time");
    time.dateTime = typeof ts === "string" ? ts : "";
    if (date) {
      time.textContent = clockTime(date);
      time.title = fullTime(date);
    }
    return time;
  }

  function daySeparator(date) {
    const li = el("li", "day-separator");
    const time = el("time", "day-separator-text", dayLabel(date));
    time.dateTime = dayKey(date);
    li.append(time);
    return li;
  }

  // "Today" becomes "Yesterday" at midnight, for a tab left open overnight.
  function relabelDays() {
    for (const time of logList.querySelectorAll(".day-separator-text")) {
      time.textContent = dayLabel(dayOfKey(time.dateTime));
    }
  }

  function relabelDaysAtMidnight() {
    setTimeout(() => {
      relabelDays();
      relabelDaysAtMidnight();
    }, untilNextDay(new Date()));
  }

  // Text with its http(s) URLs as links; everything else stays text.
  function linkify(text) {
    const fragment = document.createDocumentFragment();
    for (const part of linkParts(text)) {
      if (typeof part === "string") {
        fragment.append(part);
        continue;
      }
      const link = el("a", "msg-link", part.link);
      link.dir = "ltr"; // isolated: an override before it (U+202E) cannot reverse how it reads
      link.href = part.href;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      fragment.append(link);
    }
    return fragment;
  }

  // The log items for one message: a day separator when a new local day
  // begins, then the message; a chat line that follows one by the same
  // person shortly before joins its group and does not repeat the name.
  function messageNodes(msg) {
    const nodes = [];
    const { date, newDay, continues, shown } = groupLine(lastShown, msg);
    if (newDay) {
      relabelDays(); // a timer may have slept through midnight with the computer
      nodes.push(daySeparator(date));
    }
    nodes.push(messageElement(msg, continues));
    lastShown = shown;
    return nodes;
  }

  function messageElement(msg, continues = false) {
    const own = msg.name === myName;
    const li = el("li");
    li.dataset.id = String(msg.id);
    if (msg.kind === "chat") {
      li.className = `msg msg--chat${own ? " msg--own" : ""}${continues ? " msg--cont" : ""}`;
      // In a group the name is said once on screen; screen readers still hear it.
      const meta = el("p", continues ? "msg-meta visually-hidden" : "msg-meta");
      meta.append(el("span", "msg-name", msg.name), " ", timeElement(msg.ts));
      const body = el("p", "msg-text");
      body.append(linkify(typeof msg.text === "string" ? msg.text : ""));
      li.append(meta, body);
    } else {
      const verb = msg.kind === "join" ? "joined" : msg.kind === "leave" ? "left" : msg.kind;
      li.className = `msg msg--notice msg--${msg.kind === "join" ? "join" : "leave"}${own ? " msg--own-notice" : ""}`;
      li.append(el("span", "msg-notice-text", `${msg.name} ${verb}`), " ", timeElement(msg.ts));
    }
    return li;
  }

  function noticeElement(text) {
    const li = el("li", "msg msg--notice msg--gap");
    li.append(el("span", "msg-notice-text", text));
    lastShown = afterGap(lastShown);
    return li;
  }

  function isMessage(msg) {
    return (
      msg !== null &&
      typeof msg === "object" &&
      Number.isInteger(msg.id) &&
      typeof msg.name === "string" &&
      typeof msg.kind === "string"
    );
  }

  // The message became visible in the log: drop its "sent" placeholder, if any.
  function settleEcho(id) {
    const pending = awaitingEcho.get(id);
    if (pending) {
      pending.remove();
      awaitingEcho.delete(id);
      updateOutboxVisibility();
    }
  }

  // ---------------------------------------------------------------- members
  function renderMembers(members) {
    if (!Array.isArray(members)) return;
    const names = members.filter((m) => typeof m === "string");
    const items = names.map((name) => {
      const li = el("li", name === myName ? "member member--you" : "member", name);
      if (name === myName) {
        li.append(" ", el("span", "member-you", "(you)"));
      }
      return li;
    });
    membersEl.replaceChildren(...items);
    memberCountEl.textContent = `(${names.length})`;
    // Someone who left is no longer typing.
    for (const name of [...typers.keys()]) {
      if (!names.includes(name)) clearTyper(name);
    }
  }

  // ---------------------------------------------------------------- typing (in)
  function renderTyping() {
    const text = typingText([...typers.keys()]);
    if (typingEl.textContent !== text) typingEl.textContent = text;
  }

  function clearTyper(name) {
    if (!typers.has(name)) return;
    clearTimeout(typers.get(name));
    typers.delete(name);
    renderTyping();
  }

  function clearAllTypers() {
    typers.forEach((timer) => clearTimeout(timer));
    typers.clear();
    renderTyping();
  }

  function noteTyping(name) {
    if (typeof name !== "string" || !name || name === myName || ended) return;
    clearTimeout(typers.get(name));
    typers.set(
      name,
      setTimeout(() => clearTyper(name), TYPING_SHOW_MS),
    );
    renderTyping();
  }

  // ---------------------------------------------------------------- outbox
  // sessionStorage itself may throw (storage disabled): reach it only inside
  // the outbox's own guards.
  const outbox = new Outbox({
    key: OUTBOX_KEY,
    storage: {
      getItem: (key) => window.sessionStorage.getItem(key),
      setItem: (key, value) => window.sessionStorage.setItem(key, value),
      removeItem: (key) => window.sessionStorage.removeItem(key),
    },
    transport: {
      send: (payload, reply) => socket.timeout(ACK_TIMEOUT_MS).emit("send", payload, reply),
      get connected() {
        return socket.connected;
      },
    },
  });

  function updateOutboxVisibility() {
    outboxEl.hidden = outboxEl.childElementCount === 0;
  }

  const WAITING_TEXT = "not sent yet: waiting for the connection…";
  // The line stays queued and goes by itself; say why it is not sent yet.
  const RATE_LIMITED_TEXT = "not sent yet: you are sending fast, it goes in";
  const UNAVAILABLE_TEXT = "not sent yet: the server is busy, trying again…";

  function pendingElement(item) {
    const li = el("li", "pending");
    li.dataset.cid = item.cid;
    const state = canSend ? "sending…" : WAITING_TEXT;
    li.append(el("p", "pending-text", item.text), el("p", "pending-state", state));
    return li;
  }

  function markOutboxWaiting() {
    for (const [cid, li] of pendingEls) {
      if (!li.classList.contains("pending--error")) setPendingState(cid, WAITING_TEXT);
    }
  }

  function renderPending(item) {
    const li = pendingElement(item);
    pendingEls.set(item.cid, li);
    outboxEl.append(li);
    updateOutboxVisibility();
    outboxEl.scrollTop = outboxEl.scrollHeight;
  }

  function setPendingState(cid, text) {
    const li = pendingEls.get(cid);
    if (li) li.querySelector(".pending-state").textContent = text;
  }

  // The server recorded the line as message `id`.
  function acknowledged(cid, id) {
    const li = pendingEls.get(cid);
    pendingEls.delete(cid);
    if (!li) return;
    if (Number.isInteger(id) && (lastId === null || id > lastId)) {
      // Keep the line until its `message` arrives, so it never blinks out.
      li.classList.add("pending--sent");
      li.querySelector(".pending-state").textContent = "sent";
      awaitingEcho.set(id, li);
      setTimeout(() => settleEcho(id), ACK_TIMEOUT_MS);
    } else {
      li.remove();
      updateOutboxVisibility();
    }
  }

  const REJECTED_TEXT = {
    empty: () => "Not sent: the message is empty",
    too_long: () => `Too long: ${MAX_LENGTH} characters at most`,
    invalid: () => "Not sent: the message contains characters that are not allowed",
  };

  function rejected(cid, code) {
    const li = pendingEls.get(cid);
    pendingEls.delete(cid);
    if (!li) return;
    const text = REJECTED_TEXT[code]();
    li.classList.add("pending--error");
    const state = li.querySelector(".pending-state");
    state.textContent = text;
    const actions = el("p", "pending-actions");
    const edit = el("button", "button button--small button--quiet", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      const text = li.querySelector(".pending-text").textContent;
      textarea.value = textarea.value.trim() === "" ? text : `${textarea.value}\n${text}`;
      autosize();
      li.remove();
      updateOutboxVisibility();
      textarea.focus();
    });
    const dismiss = el("button", "button button--small button--quiet", "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => {
      li.remove();
      updateOutboxVisibility();
      textarea.focus();
    });
    actions.append(edit, " ", dismiss);
    li.append(actions);
    announce(text);
  }

  outbox.listen({
    queued: renderPending,
    sending: (cid) => setPendingState(cid, "sending…"),
    waiting: (cid, reason, seconds) => {
      // After no answer, it still says "sending…".
      if (reason === "rate_limited") setPendingState(cid, `${RATE_LIMITED_TEXT} ${Math.ceil(seconds)} s…`);
      else if (reason === "unavailable") setPendingState(cid, UNAVAILABLE_TEXT);
    },
    acknowledged,
    rejected,
    paused: markOutboxWaiting,
    notJoined: (again) => {
      // Another process may have ended the membership while this one was
      // away from the store: connecting again renews it if it can, and a
      // refusal ends the session (connect_error below).
      if (again) endSession("You are no longer in this room.");
      else socket.disconnect().connect();
    },
  });

  // ---------------------------------------------------------------- composer
  const MAX_LENGTH = Number(textarea.dataset.maxLength) || 2000;
  const composerError = $("composer-error");

  // A line over the limit stays in the box, with the reason: sending it would
  // only be refused (and a huge paste would exceed the frame limit).
  function checkLength() {
    const over = lineLength(textarea.value) - MAX_LENGTH;
    composerError.hidden = over <= 0;
    composerError.textContent =
      over > 0 ? `Too long: ${MAX_LENGTH} characters at most (${over} over). Shorten it to send.` : "";
    return over <= 0;
  }

  function autosize() {
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight + (textarea.offsetHeight - textarea.clientHeight)}px`;
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (ended) return;
    const text = textarea.value;
    if (text.trim() === "" || !checkLength()) {
      textarea.focus();
      return;
    }
    outbox.add(lineOf(text)); // untrimmed, a paste padded with spaces could pass the frame limit
    textarea.value = "";
    autosize();
    scrollToBottom();
    textarea.focus();
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    if (typeof composer.requestSubmit === "function") {
      composer.requestSubmit();
    } else {
      composer.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  textarea.addEventListener("input", () => {
    autosize();
    if (!composerError.hidden) checkLength();
    if (!canSend || ended || textarea.value.trim() === "") return;
    const now = Date.now();
    if (now - lastTypingSent >= TYPING_SEND_EVERY_MS) {
      lastTypingSent = now;
      socket.emit("typing", {});
    }
  });

  // ---------------------------------------------------------------- log scrolling
  // The log shrinks when the message box grows or a panel opens: a reader who
  // was following the newest line keeps following it.
  let following = true;
  logEl.addEventListener("scroll", () => {
    following = isAtBottom();
    if (!newMessagesBtn.hidden && following) newMessagesBtn.hidden = true;
  }, { passive: true });
  if ("ResizeObserver" in window) {
    new ResizeObserver(() => {
      if (following && !isAtBottom()) scrollToBottom();
    }).observe(logEl);
  }

  newMessagesBtn.addEventListener("click", () => {
    scrollToBottom();
    textarea.focus();
  });

  // ---------------------------------------------------------------- invite link
  let copyTimer = null;
  function copyFeedbackText(text) {
    copyFeedback.textContent = text;
    clearTimeout(copyTimer);
    copyTimer = setTimeout(() => {
      copyFeedback.textContent = "";
      copyBtn.textContent = "Copy invite link";
    }, 3000);
  }

  function selectInvite() {
    inviteInput.focus();
    inviteInput.select();
    inviteInput.setSelectionRange(0, inviteInput.value.length);
  }

  copyBtn.addEventListener("click", async () => {
    const url = INVITE_URL || inviteInput.value;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(url);
        copyBtn.textContent = "Copied";
        copyFeedbackText("Invite link copied");
        return;
      } catch {
        // Permission refused: fall back to a selection.
      }
    }
    selectInvite();
    copyFeedbackText("Link selected: copy it with Ctrl+C or your menu");
  });

  inviteInput.addEventListener("focus", () => inviteInput.select());

  // ---------------------------------------------------------------- people list
  // A disclosure on a phone; always open beside the log on a wide screen.
  const wide = window.matchMedia("(min-width: 50em)");
  const syncPeople = () => {
    peopleDetails.open = wide.matches;
  };
  syncPeople();
  wide.addEventListener("change", syncPeople);

  // ---------------------------------------------------------------- leave
  leaveForm.addEventListener("submit", () => {
    outbox.end();
    ended = true;
  });

  // ---------------------------------------------------------------- unread count and mentions
  function renderTitle() {
    document.title = unread > 0 ? `(${unread}) ${baseTitle}` : baseTitle;
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && unread > 0) {
      unread = 0;
      renderTitle();
    }
  });

  const canNotify = "Notification" in window;
  let notifyOn = false;

  function storedNotify() {
    try {
      return window.localStorage.getItem(NOTIFY_KEY) === "1";
    } catch {
      return false;
    }
  }

  function setNotify(on, feedback = "") {
    notifyOn = on;
    notifyBtn.setAttribute("aria-pressed", on ? "true" : "false");
    notifyFeedback.textContent = feedback;
    try {
      if (on) window.localStorage.setItem(NOTIFY_KEY, "1");
      else window.localStorage.removeItem(NOTIFY_KEY);
    } catch {
      // Not kept across reloads; still on for this page.
    }
  }

  if (canNotify) {
    notifyBtn.hidden = false;
    if (storedNotify() && window.Notification.permission === "granted") setNotify(true);
    notifyBtn.addEventListener("click", async () => {
      if (notifyOn) {
        setNotify(false, "Mention notifications off");
        return;
      }
      let permission = window.Notification.permission;
      if (permission === "default") {
        try {
          permission = await window.Notification.requestPermission();
        } catch {
          permission = "denied";
        }
      }
      if (permission === "granted") {
        setNotify(true, "You will be notified when someone writes @" + myName);
      } else {
        setNotify(false, "Notifications are blocked for this site in your browser settings");
      }
    });
  }

  function notifyMention(msg) {
    if (!notifyOn || window.Notification.permission !== "granted") return;
    try {
      const note = new window.Notification(`${msg.name} mentioned you in room ${ROOM}`, {
        body: notificationBody(msg.text),
        tag: `chatapp-${ROOM}-${msg.id}`,
      });
      note.onclick = () => {
        window.focus();
        textarea.focus();
        note.close();
      };
    } catch {
      // Some mobile browsers only notify from a service worker.
    }
  }

  // A message arrived live (or in a catch-up): count it and notify on a mention.
  function noteArrival(msg) {
    if (msg.kind !== "chat" || msg.name === myName) return;
    const away = document.hidden || !document.hasFocus();
    if (document.hidden) {
      unread += 1;
      renderTitle();
    }
    if (away && mentions(msg.text, myName)) notifyMention(msg);
  }

  // ---------------------------------------------------------------- socket
  setStatus("connecting");
  relabelDaysAtMidnight();
  outbox.items.forEach(renderPending);
  // Entering the room: straight to the composer.
  textarea.focus({ preventScroll: true });

  const socket = window.io(NAMESPACE, {
    transports: ["websocket", "polling"],
    // Fall back to long-polling where a proxy or network blocks WebSocket.
    tryAllTransports: true,
    // A function, so every (re)connection sends the newest last_id.
    auth: (cb) => cb(lastId === null ? { room: ROOM } : { room: ROOM, last_id: lastId }),
  });

  socket.on("connect", () => {
    clearTimeout(reconnectTimer);
    manualReconnectDelay = 1000;
    setStatus("connected");
  });

  socket.on("joined", (payload) => {
    if (ended || !payload || typeof payload !== "object") return;
    if (typeof payload.name === "string" && payload.name) myName = payload.name;
    const firstJoin = lastId === null;
    const nodes = [];
    if (payload.truncated === true) {
      nodes.push(noticeElement("Some earlier messages are no longer available"));
    }
    const history = Array.isArray(payload.history) ? payload.history : [];
    let newest = lastId;
    const shown = [];
    for (const msg of history) {
      if (!isMessage(msg) || (newest !== null && msg.id <= newest)) continue;
      nodes.push(...messageNodes(msg));
      shown.push(msg.id);
      newest = msg.id;
      if (!firstJoin) noteArrival(msg); // caught up after a drop: these are new to the reader
    }
    if (newest === null) {
      newest = Number.isInteger(payload.latest_id) && payload.latest_id >= 0 ? payload.latest_id : 0;
    }
    lastId = newest;
    appendToLog(nodes, { force: firstJoin });
    shown.forEach(settleEcho);
    renderMembers(payload.members);
    setStatus("connected");

    canSend = true;
    outbox.resume();
  });

  socket.on("message", (msg) => {
    // Live messages follow `joined` (PROTOCOL.md); anything before it is
    // covered by the history replay.
    if (ended || !canSend || !isMessage(msg)) return;
    if (lastId !== null && msg.id <= lastId) return; // already shown
    if (lastId !== null && msg.id > lastId + 1) {
      // A gap should never happen; reconnect to be replayed from last_id.
      socket.disconnect().connect();
      return;
    }
    if (msg.kind === "chat") clearTyper(msg.name);
    lastId = msg.id;
    appendToLog(messageNodes(msg));
    settleEcho(msg.id);
    noteArrival(msg);
  });

  socket.on("members", (payload) => {
    if (ended || !payload) return;
    renderMembers(payload.members);
  });

  socket.on("typing", (payload) => {
    if (payload) noteTyping(payload.name);
  });

  socket.on("disconnect", (reason) => {
    canSend = false;
    outbox.pause(); // acks of the old connection are stale now; the lines wait
    clearAllTypers();
    if (ended) return;
    setStatus("reconnecting");
    if (reason === "io server disconnect") {
      // The server dropped us (restart, or we left from another tab): try
      // again; a refusal then says why.
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(() => {
        if (!ended && !socket.connected) socket.connect();
      }, 1000);
    }
  });

  socket.on("connect_error", (err) => {
    if (ended) return;
    const reason = err && err.message;
    if (reason === "not_joined") {
      endSession("You are not in this room (any more).");
      return;
    }
    if (reason === "room_not_found") {
      endSession("This room no longer exists.");
      return;
    }
    setStatus("reconnecting");
    if (!socket.active) {
      // Refused by the server (e.g. "unavailable"): socket.io does not retry
      // by itself then, so back off and try again.
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(() => {
        if (!ended && !socket.connected) socket.connect();
      }, manualReconnectDelay);
      manualReconnectDelay = Math.min(manualReconnectDelay * 2, 30000);
    }
  });

  socket.io.on("reconnect_attempt", () => {
    if (!ended) setStatus("reconnecting");
  });

  window.addEventListener("offline", () => setStatus("offline"));
  window.addEventListener("online", () => {
    if (ended) return;
    if (socket.connected) {
      setStatus("connected");
      return;
    }
    setStatus("reconnecting");
    // Connect now, not when the reconnection backoff fires next (up to 5 s
    // away after attempts failed offline): a drop shorter than the leave
    // grace then tells the room nothing.
    clearTimeout(reconnectTimer);
    socket.disconnect().connect();
  });
})();
