// The message box: Enter sends, Shift+Enter starts a new line; a line over
// the limit stays in the box with the reason; typing is said to the room.
import { lineLength, lineOf } from "./text.js";

// A margin over the server's 2 s relay interval: a ping that arrives a
// little early is dropped, and the indicator would blink out.
const TYPING_SEND_EVERY_MS = 2250;

export class Composer {
  #form;
  #textarea;
  #error;
  #maxLength;
  #ready;
  #open;
  #lastTypingSent = 0;

  // ready(): lines and typing may go now; open(): the room is not over;
  // onLine(line) takes a line as the server keeps it; onSent() follows it
  // once the box is empty again; sendTyping() says we are typing.
  constructor({ form, textarea, error, maxLength, ready, open, onLine, onSent, sendTyping }) {
    this.#form = form;
    this.#textarea = textarea;
    this.#error = error;
    this.#maxLength = maxLength;
    this.#ready = ready;
    this.#open = open;

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!this.#open()) return;
      const text = textarea.value;
      if (text.trim() === "" || !this.#checkLength()) {
        textarea.focus();
        return;
      }
      onLine(lineOf(text)); // untrimmed, a paste padded with spaces could pass the frame limit
      textarea.value = "";
      this.autosize();
      onSent();
      textarea.focus();
    });

    textarea.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      if (typeof form.requestSubmit === "function") {
        form.requestSubmit();
      } else {
        form.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });

    textarea.addEventListener("input", () => {
      this.autosize();
      if (!error.hidden) this.#checkLength();
      if (!this.#ready() || textarea.value.trim() === "") return;
      const now = Date.now();
      if (now - this.#lastTypingSent >= TYPING_SEND_EVERY_MS) {
        this.#lastTypingSent = now;
        sendTyping();
      }
    });
  }

  focus(options) {
    this.#textarea.focus(options);
  }

  // Put a line back in the box, after what is there.
  insert(text) {
    const box = this.#textarea;
    box.value = box.value.trim() === "" ? text : `${box.value}\n${text}`;
    this.autosize();
  }

  disable() {
    this.#textarea.disabled = true;
    this.#form.querySelector("button[type=submit]").disabled = true;
  }

  autosize() {
    const box = this.#textarea;
    box.style.height = "auto";
    box.style.height = `${box.scrollHeight + (box.offsetHeight - box.clientHeight)}px`;
  }

  // A line over the limit stays in the box, with the reason: sending it would
  // only be refused (and a huge paste would exceed the frame limit).
  #checkLength() {
    const over = lineLength(this.#textarea.value) - this.#maxLength;
    this.#error.hidden = over <= 0;
    this.#error.textContent =
      over > 0 ? `Too long: ${this.#maxLength} characters at most (${over} over). Shorten it to send.` : "";
    return over <= 0;
  }
}
