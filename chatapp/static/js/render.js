// Page elements of the room: the log, lines not sent yet, members, who is
// typing, the status and the banner. Everything the server or a user
// supplies is set as textContent, never parsed as HTML.
import {
  afterGap,
  clockTime,
  dayKey,
  dayLabel,
  dayOfKey,
  fullTime,
  groupLine,
  linkParts,
  parseTs,
  typingText,
  untilNextDay,
} from "./text.js";

// ---------------------------------------------------------------- elements

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// Say `text` to screen readers through the live region `announcer`.
function announce(announcer, text) {
  if (!announcer) return;
  announcer.textContent = "";
  // A change on the next frame is what screen readers pick up reliably.
  window.requestAnimationFrame(() => {
    announcer.textContent = text;
  });
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

function messageElement(msg, { own, continues }) {
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

// ---------------------------------------------------------------- the log

// Within this of the bottom, the reader counts as following the newest line.
const BOTTOM_SLACK_PX = 40;

export class MessageLog {
  #log;
  #list;
  #newMessages;
  #me;
  #last = null; // what groupLine returned for the newest item: grouping, day separators
  #following = true;

  // log: the scrolling element; list: its <ol>; newMessages: the button
  // shown when lines arrive below the view; me(): our name.
  constructor({ log, list, newMessages, me }) {
    this.#log = log;
    this.#list = list;
    this.#newMessages = newMessages;
    this.#me = me;
    // The log shrinks when the message box grows or a panel opens: a reader
    // who was following the newest line keeps following it.
    log.addEventListener(
      "scroll",
      () => {
        this.#following = this.isAtBottom();
        if (!newMessages.hidden && this.#following) newMessages.hidden = true;
      },
      { passive: true },
    );
    if ("ResizeObserver" in window) {
      new ResizeObserver(() => {
        if (this.#following && !this.isAtBottom()) this.scrollToBottom();
      }).observe(log);
    }
  }

  isAtBottom() {
    const log = this.#log;
    return log.scrollHeight - log.scrollTop - log.clientHeight <= BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.#log.scrollTop = this.#log.scrollHeight;
    this.#newMessages.hidden = true;
  }

  // Append nodes; follow them only if the reader was at the bottom.
  append(nodes, { force = false } = {}) {
    if (!nodes.length) return;
    const follow = force || this.isAtBottom();
    const fragment = document.createDocumentFragment();
    nodes.forEach((node) => fragment.append(node));
    this.#list.append(fragment);
    if (follow) {
      this.scrollToBottom();
    } else {
      this.#newMessages.hidden = false;
    }
  }

  // The items for one message: a day separator when a new local day
  // begins, then the message; a chat line that follows one by the same
  // person shortly before joins its group and does not repeat the name.
  messageNodes(msg) {
    const nodes = [];
    const { date, newDay, continues, shown } = groupLine(this.#last, msg);
    if (newDay) {
      this.relabelDays(); // a timer may have slept through midnight with the computer
      nodes.push(daySeparator(date));
    }
    nodes.push(messageElement(msg, { own: msg.name === this.#me(), continues }));
    this.#last = shown;
    return nodes;
  }

  // A notice that messages are missing here; no group goes on across it.
  gapNotice(text) {
    const li = el("li", "msg msg--notice msg--gap");
    li.append(el("span", "msg-notice-text", text));
    this.#last = afterGap(this.#last);
    return li;
  }

  // "Today" becomes "Yesterday" at midnight, for a tab left open overnight.
  relabelDays() {
    for (const time of this.#list.querySelectorAll(".day-separator-text")) {
      time.textContent = dayLabel(dayOfKey(time.dateTime));
    }
  }

  relabelDaysAtMidnight() {
    setTimeout(() => {
      this.relabelDays();
      this.relabelDaysAtMidnight();
    }, untilNextDay(new Date()));
  }
}

// ---------------------------------------------------------------- lines not sent yet

const SENDING_TEXT = "sending…";
const WAITING_TEXT = "not sent yet: waiting for the connection…";
// The line stays queued and goes by itself; say why it is not sent yet.
const RATE_LIMITED_TEXT = "not sent yet: you are sending fast, it goes in";
const UNAVAILABLE_TEXT = "not sent yet: the server is busy, trying again…";
const UNREACHABLE_TEXT = "Not sent: the room is no longer reachable";

// The outbox on screen: a line per cid, from queued to sent (kept until
// its message shows in the log, so it never blinks out) or refused (with
// Edit and Dismiss).
export class PendingList {
  #list;
  #items = new Map(); // cid -> <li>
  #awaitingEcho = new Map(); // message id -> <li> acknowledged, not yet in the log
  #rejectedText;
  #echoTimeoutMs;
  #announcer;
  #edit;
  #focus;

  // maxLength: the composer's limit; echoTimeoutMs: how long a sent line
  // waits for its message; announcer: the live region that says why a
  // line was refused; edit(text) puts a refused line back in the
  // composer; focus() returns to it.
  constructor(list, { maxLength, echoTimeoutMs, announcer, edit, focus }) {
    this.#list = list;
    this.#rejectedText = {
      empty: "Not sent: the message is empty",
      too_long: `Too long: ${maxLength} characters at most`,
      invalid: "Not sent: the message contains characters that are not allowed",
    };
    this.#echoTimeoutMs = echoTimeoutMs;
    this.#announcer = announcer;
    this.#edit = edit;
    this.#focus = focus;
  }

  // A line of the outbox; `waiting` when there is no connection to send it on.
  add(item, { waiting }) {
    const li = el("li", "pending");
    li.dataset.cid = item.cid;
    li.append(el("p", "pending-text", item.text), el("p", "pending-state", waiting ? WAITING_TEXT : SENDING_TEXT));
    this.#items.set(item.cid, li);
    this.#list.append(li);
    this.#updateVisibility();
    this.#list.scrollTop = this.#list.scrollHeight;
  }

  sending(cid) {
    this.#setState(cid, SENDING_TEXT);
  }

  // Not sent yet, and why; after no answer, it still says "sending…".
  waiting(cid, reason, seconds) {
    if (reason === "rate_limited") this.#setState(cid, `${RATE_LIMITED_TEXT} ${Math.ceil(seconds)} s…`);
    else if (reason === "unavailable") this.#setState(cid, UNAVAILABLE_TEXT);
  }

  // The connection dropped: every line still to send waits for the next one.
  markWaiting() {
    for (const [cid, li] of this.#items) {
      if (!li.classList.contains("pending--error")) this.#setState(cid, WAITING_TEXT);
    }
  }

  // The server recorded the line as message `echoId`, not yet in the log
  // (null: it is there already, or has no id).
  acknowledged(cid, echoId) {
    const li = this.#take(cid);
    if (!li) return;
    if (echoId !== null) {
      li.classList.add("pending--sent");
      li.querySelector(".pending-state").textContent = "sent";
      this.#awaitingEcho.set(echoId, li);
      setTimeout(() => this.settle(echoId), this.#echoTimeoutMs);
    } else {
      li.remove();
      this.#updateVisibility();
    }
  }

  // Message `id` became visible in the log: drop its "sent" line, if any.
  settle(id) {
    const li = this.#awaitingEcho.get(id);
    if (li) {
      li.remove();
      this.#awaitingEcho.delete(id);
      this.#updateVisibility();
    }
  }

  // The server refused the line (`code`): say why, offer Edit and Dismiss.
  rejected(cid, code) {
    const li = this.#take(cid);
    if (!li) return;
    const text = this.#rejectedText[code];
    li.classList.add("pending--error");
    li.querySelector(".pending-state").textContent = text;
    const actions = el("p", "pending-actions");
    const edit = el("button", "button button--small button--quiet", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      this.#edit(li.querySelector(".pending-text").textContent);
      li.remove();
      this.#updateVisibility();
      this.#focus();
    });
    const dismiss = el("button", "button button--small button--quiet", "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => {
      li.remove();
      this.#updateVisibility();
      this.#focus();
    });
    actions.append(edit, " ", dismiss);
    li.append(actions);
    announce(this.#announcer, text);
  }

  // The room is gone: lines that never reached it stay, marked, so nothing
  // is lost silently.
  failAll() {
    for (const li of this.#items.values()) {
      li.classList.add("pending--error");
      li.querySelector(".pending-state").textContent = UNREACHABLE_TEXT;
    }
  }

  #take(cid) {
    const li = this.#items.get(cid);
    this.#items.delete(cid);
    return li;
  }

  #setState(cid, text) {
    const li = this.#items.get(cid);
    if (li) li.querySelector(".pending-state").textContent = text;
  }

  #updateVisibility() {
    this.#list.hidden = this.#list.childElementCount === 0;
  }
}

// ---------------------------------------------------------------- members and typing

// The member list; returns the names shown, or null for a malformed list.
export function renderMembers(listEl, countEl, members, me) {
  if (!Array.isArray(members)) return null;
  const names = members.filter((m) => typeof m === "string");
  const items = names.map((name) => {
    const li = el("li", name === me ? "member member--you" : "member", name);
    if (name === me) {
      li.append(" ", el("span", "member-you", "(you)"));
    }
    return li;
  });
  listEl.replaceChildren(...items);
  countEl.textContent = `(${names.length})`;
  return names;
}

// Who is typing: each name shows until its line arrives, or `showMs` after
// its last typing event.
export class TypingIndicator {
  #el;
  #showMs;
  #typers = new Map(); // name -> timeout id

  constructor(element, { showMs }) {
    this.#el = element;
    this.#showMs = showMs;
  }

  note(name) {
    clearTimeout(this.#typers.get(name));
    this.#typers.set(
      name,
      setTimeout(() => this.clear(name), this.#showMs),
    );
    this.#render();
  }

  clear(name) {
    if (!this.#typers.has(name)) return;
    clearTimeout(this.#typers.get(name));
    this.#typers.delete(name);
    this.#render();
  }

  clearAll() {
    this.#typers.forEach((timer) => clearTimeout(timer));
    this.#typers.clear();
    this.#render();
  }

  // Someone who left is no longer typing.
  keepOnly(names) {
    for (const name of [...this.#typers.keys()]) {
      if (!names.includes(name)) this.clear(name);
    }
  }

  #render() {
    const text = typingText([...this.#typers.keys()]);
    if (this.#el.textContent !== text) this.#el.textContent = text;
  }
}

// ---------------------------------------------------------------- status and banner

const STATUS_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  ended: "Disconnected",
};

export function renderStatus(statusEl, state) {
  if (statusEl.dataset.state === state) return;
  statusEl.dataset.state = state;
  statusEl.textContent = STATUS_TEXT[state];
}

export function showBanner(bannerEl, text, lobbyHref) {
  bannerEl.replaceChildren();
  bannerEl.append(el("span", "banner-text", text), " ");
  const link = el("a", "banner-link", "Back to the lobby");
  link.href = lobbyHref;
  bannerEl.append(link);
  bannerEl.hidden = false;
}
