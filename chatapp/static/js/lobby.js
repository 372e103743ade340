// chatapp lobby: pressing Enter joins when a room code is typed and creates a
// room otherwise, and the matching button is shown as the main one; a name
// over the limit is refused before it is sent. Without this script the form
// still works: the server puts the likelier button first and explains refusals.
import { nameLength } from "./text.js";

function enhance(form) {
  const name = form.querySelector("input[name=name]");
  const code = form.querySelector("input[name=code]");
  const createBtn = form.querySelector("button[name=create]");
  const joinBtn = form.querySelector("button[name=join]");
  if (!name || !code || !createBtn || !joinBtn) return;

  // The server's count: NFKC, trimmed, inner white space folded, in code
  // points (an emoji is one, where maxlength would count two).
  const maxName = Number(name.dataset.maxLength) || 32;
  const checkName = () => {
    const over = nameLength(name.value) - maxName;
    name.setCustomValidity(over > 0 ? `Names are at most ${maxName} characters (${over} over).` : "");
  };
  name.addEventListener("input", checkName);
  checkName();

  const preferred = () => (code.value.trim() === "" ? createBtn : joinBtn);

  const sync = () => {
    const main = preferred();
    createBtn.classList.toggle("button--primary", main === createBtn);
    joinBtn.classList.toggle("button--primary", main === joinBtn);
  };

  code.addEventListener("input", sync);
  sync();

  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing || event.keyCode === 229) return;
    const target = event.target;
    if (!(target instanceof HTMLInputElement)) return;
    event.preventDefault();
    const submitter = preferred();
    if (typeof form.requestSubmit === "function") {
      form.requestSubmit(submitter); // runs the built-in validation first
    } else {
      submitter.click();
    }
  });
}

const form = document.getElementById("lobby-form");
if (form) enhance(form);
