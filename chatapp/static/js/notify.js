// The reader's attention: the count of unread lines in the title while
// the tab is hidden, and opt-in notifications when someone writes @name.
import { mentions, notificationBody } from "./text.js";

const NOTIFY_KEY = "chatapp:notify-mentions";

function storedNotify() {
  try {
    return window.localStorage.getItem(NOTIFY_KEY) === "1";
  } catch {
    return false;
  }
}

export class Notifier {
  #room;
  #me;
  #button;
  #feedback;
  #focus;
  #baseTitle = document.title;
  #unread = 0; // chat lines from others that arrived while the tab was hidden
  #on = false;

  // me(): our name; button and feedback: the opt-in toggle and its status
  // line; focus(): where a click on a notification leads.
  constructor({ room, me, button, feedback, focus }) {
    this.#room = room;
    this.#me = me;
    this.#button = button;
    this.#feedback = feedback;
    this.#focus = focus;
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.#unread > 0) {
        this.#unread = 0;
        this.#renderTitle();
      }
    });
    if ("Notification" in window) this.#offer();
  }

  // A message arrived live (or in a catch-up): count it and notify on a mention.
  noteArrival(msg) {
    if (msg.kind !== "chat" || msg.name === this.#me()) return;
    const away = document.hidden || !document.hasFocus();
    if (document.hidden) {
      this.#unread += 1;
      this.#renderTitle();
    }
    if (away && mentions(msg.text, this.#me())) this.#notifyMention(msg);
  }

  #renderTitle() {
    document.title = this.#unread > 0 ? `(${this.#unread}) ${this.#baseTitle}` : this.#baseTitle;
  }

  // Show the toggle; it asks for permission only when pressed.
  #offer() {
    const button = this.#button;
    button.hidden = false;
    if (storedNotify() && window.Notification.permission === "granted") this.#set(true);
    button.addEventListener("click", async () => {
      if (this.#on) {
        this.#set(false, "Mention notifications off");
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
        this.#set(true, "You will be notified when someone writes @" + this.#me());
      } else {
        this.#set(false, "Notifications are blocked for this site in your browser settings");
      }
    });
  }

  #set(on, feedback = "") {
    this.#on = on;
    this.#button.setAttribute("aria-pressed", on ? "true" : "false");
    this.#feedback.textContent = feedback;
    try {
      if (on) window.localStorage.setItem(NOTIFY_KEY, "1");
      else window.localStorage.removeItem(NOTIFY_KEY);
    } catch {
      // Not kept across reloads; still on for this page.
    }
  }

  #notifyMention(msg) {
    if (!this.#on || window.Notification.permission !== "granted") return;
    try {
      const note = new window.Notification(`${msg.name} mentioned you in room ${this.#room}`, {
        body: notificationBody(msg.text),
        tag: `chatapp-${this.#room}-${msg.id}`,
      });
      note.onclick = () => {
        window.focus();
        this.#focus();
        note.close();
      };
    } catch {
      // Some mobile browsers only notify from a service worker.
    }
  }
}
