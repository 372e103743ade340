// chatapp room page: the entry module. It reads the page's data
// attributes, builds the parts and wires them together:
//
//   connection.js  the Socket.IO connection (PROTOCOL.md, "Socket.IO")
//   outbox.js      lines not yet acknowledged, sent one at a time
//   render.js      the log, the pending lines, members, typing, status
//   notify.js      unread count in the title, mention notifications
//   composer.js    the message box
//   text.js        the pure text rules they share
//
// The socket.io client (a classic script setting window.io) is loaded
// before this module; both are deferred, and run in document order.
import { Composer } from "./composer.js";
import { ACK_TIMEOUT_MS, Connection } from "./connection.js";
import { Notifier } from "./notify.js";
import { Outbox } from "./outbox.js";
import { MessageLog, PendingList, renderMembers, renderStatus, showBanner, TypingIndicator } from "./render.js";

// How long someone shows as typing after their last typing event.
const TYPING_SHOW_MS = 3000;

const $ = (id) => document.getElementById(id);

// sessionStorage itself may throw (storage disabled): reach it only inside
// the outbox's own guards.
const sessionStore = {
  getItem: (key) => window.sessionStorage.getItem(key),
  setItem: (key, value) => window.sessionStorage.setItem(key, value),
  removeItem: (key) => window.sessionStorage.removeItem(key),
};

// The invite link: copied where the browser allows it, selected otherwise.
function setUpInvite(inviteUrl) {
  const input = $("invite-url");
  const button = $("copy-invite");
  const feedback = $("copy-feedback");
  let timer = null;
  const say = (text) => {
    feedback.textContent = text;
    clearTimeout(timer);
    timer = setTimeout(() => {
      feedback.textContent = "";
      button.textContent = "Copy invite link";
    }, 3000);
  };
  button.addEventListener("click", async () => {
    const url = inviteUrl || input.value;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(url);
        button.textContent = "Copied";
        say("Invite link copied");
        return;
      } catch {
        // Permission refused: fall back to a selection.
      }
    }
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
    say("Link selected: copy it with Ctrl+C or your menu");
  });
  input.addEventListener("focus", () => input.select());
}

// The people list: a disclosure on a phone, always open beside the log on
// a wide screen.
function setUpPeople() {
  const details = $("people-details");
  const wide = window.matchMedia("(min-width: 50em)");
  const sync = () => {
    details.open = wide.matches;
  };
  sync();
  wide.addEventListener("change", sync);
}

function main(root) {
  const room = root.dataset.roomCode || "";
  const lobbyUrl = new URL(root.dataset.lobbyUrl || "/", window.location.href);
  lobbyUrl.searchParams.set("code", room);
  const lobbyHref = lobbyUrl.pathname + lobbyUrl.search;
  const textarea = $("message");
  const maxLength = Number(textarea.dataset.maxLength) || 2000;

  const connection = new Connection({
    io: window.io,
    namespace: root.dataset.namespace || "/chat",
    room,
    name: root.dataset.name || "",
  });
  const me = () => connection.name;
  const outbox = new Outbox({ key: `chatapp:outbox:${room}`, storage: sessionStore, transport: connection });

  const log = new MessageLog({ log: $("log"), list: $("log-list"), newMessages: $("new-messages"), me });
  const composer = new Composer({
    form: $("composer"),
    textarea,
    error: $("composer-error"),
    maxLength,
    ready: () => connection.ready,
    open: () => !connection.ended,
    onLine: (line) => outbox.add(line),
    onSent: () => log.scrollToBottom(),
    sendTyping: () => connection.sendTyping(),
  });
  const pending = new PendingList($("outbox"), {
    maxLength,
    echoTimeoutMs: ACK_TIMEOUT_MS,
    announcer: $("announcer"),
    edit: (text) => composer.insert(text),
    focus: () => composer.focus(),
  });
  const typers = new TypingIndicator($("typing"), { showMs: TYPING_SHOW_MS });
  const notifier = new Notifier({
    room,
    me,
    button: $("notify"),
    feedback: $("notify-feedback"),
    focus: () => composer.focus(),
  });
  const showMembers = (members) => {
    const names = renderMembers($("members"), $("member-count"), members, me());
    if (names) typers.keepOnly(names);
  };

  // The server told us we are out of this room: stop everything, say why.
  function endSession(text) {
    if (connection.ended) return;
    connection.end();
    showBanner($("banner"), text, lobbyHref);
    // Lines that never reached the room stay on screen, marked; they leave
    // the outbox, or joining again would send them under the new membership.
    outbox.end();
    pending.failAll();
    composer.disable();
    typers.clearAll();
  }

  outbox.listen({
    queued: (item) => pending.add(item, { waiting: outbox.paused }),
    sending: (cid) => pending.sending(cid),
    waiting: (cid, reason, seconds) => pending.waiting(cid, reason, seconds),
    acknowledged: (cid, id) => pending.acknowledged(cid, Number.isInteger(id) && !connection.hasShown(id) ? id : null),
    rejected: (cid, code) => pending.rejected(cid, code),
    paused: () => pending.markWaiting(),
    notJoined: (again) => {
      if (again) endSession("You are no longer in this room.");
      else connection.reconnect();
    },
  });

  $("new-messages").addEventListener("click", () => {
    log.scrollToBottom();
    composer.focus();
  });
  setUpInvite(root.dataset.inviteUrl || "");
  setUpPeople();
  $("leave-form").addEventListener("submit", () => {
    outbox.end();
    connection.stop();
  });

  log.relabelDaysAtMidnight();
  outbox.items.forEach((item) => pending.add(item, { waiting: outbox.paused }));
  // Entering the room: straight to the composer.
  composer.focus({ preventScroll: true });

  connection.open({
    status: (state) => renderStatus($("status"), state),
    joined: ({ firstJoin, truncated, messages, members }) => {
      const nodes = [];
      if (truncated) nodes.push(log.gapNotice("Some earlier messages are no longer available"));
      for (const msg of messages) {
        nodes.push(...log.messageNodes(msg));
        if (!firstJoin) notifier.noteArrival(msg); // caught up after a drop: these are new to the reader
      }
      log.append(nodes, { force: firstJoin });
      messages.forEach((msg) => pending.settle(msg.id));
      showMembers(members);
      outbox.resume();
    },
    message: (msg) => {
      if (msg.kind === "chat") typers.clear(msg.name);
      log.append(log.messageNodes(msg));
      pending.settle(msg.id);
      notifier.noteArrival(msg);
    },
    members: showMembers,
    typing: (name) => {
      if (typeof name === "string" && name && name !== me()) typers.note(name);
    },
    disconnected: () => {
      outbox.pause();
      typers.clearAll();
    },
    refused: (reason) =>
      endSession(reason === "not_joined" ? "You are not in this room (any more)." : "This room no longer exists."),
  });
}

const root = document.getElementById("chat");
if (root && typeof window.io === "function") main(root);
