// Pure text rules of the browser client: no DOM, no window, no clock of
// their own (the time "now" is a parameter). Unit-tested by
// tests/client/text.test.mjs under `node --test`.

// ---------------------------------------------------------------- lines and names

// What the server keeps of a line (PROTOCOL.md, `send`): "\r\n" and "\r"
// become "\n", then white space is trimmed at both ends. A line is sent so.
export function lineOf(text) {
  return text.replace(/\r\n?/g, "\n").trim();
}

// Length in code points, as the server counts: an emoji is one character,
// where String.length (and maxlength) count two UTF-16 units.
export function codePoints(text) {
  return [...text].length;
}

// The length of a line as the server will count it.
export function lineLength(text) {
  return codePoints(lineOf(text));
}

// A name as the server keeps it: NFKC, trimmed, inner runs of white space
// folded to one space.
export function nameOf(value) {
  return value.normalize("NFKC").trim().split(/\s+/).join(" ");
}

// The length of a name as the server will count it.
export function nameLength(value) {
  return codePoints(nameOf(value));
}

// ---------------------------------------------------------------- links

// A URL ends at white space, quotes, brackets and bidi controls (which
// could make it read as another address).
const URL_RE = /\bhttps?:\/\/[^\s<>"'`\u200e\u200f\u202a-\u202e\u2066-\u2069]+/gi;
// Punctuation that ends a sentence rather than an address.
const TRAILING_PUNCTUATION = /[.,!?;:'"…]+$/;

const count = (text, char) => text.split(char).length - 1;

// A matched address without the sentence punctuation after it, nor a ")"
// that closes a parenthesis opened before it: "(see https://x/a_(b))".
function trimLink(candidate) {
  for (;;) {
    const trimmed = candidate.replace(TRAILING_PUNCTUATION, "");
    const unbalanced = trimmed.endsWith(")") && count(trimmed, ")") > count(trimmed, "(");
    const shorter = unbalanced ? trimmed.slice(0, -1) : trimmed;
    if (shorter === candidate) return candidate;
    candidate = shorter;
  }
}

// The href of an http(s) address, or null for anything else (URL_RE
// matches only http and https; the check holds should the pattern change).
function httpHref(candidate) {
  let url = null;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

// A line cut into its text and its http(s) links, in order: strings for
// text, {link, href} for a link (`link` as written, `href` where it leads).
export function linkParts(text) {
  const parts = [];
  let from = 0;
  for (const match of text.matchAll(URL_RE)) {
    const link = trimLink(match[0]);
    const href = httpHref(link);
    if (href === null) continue;
    if (match.index > from) parts.push(text.slice(from, match.index));
    parts.push({ link, href });
    from = match.index + link.length;
  }
  if (from < text.length) parts.push(text.slice(from));
  return parts;
}

// ---------------------------------------------------------------- mentions

const WORD_CHAR = /[\p{L}\p{N}_]/u;

// Whether `text` says "@name", in any case, with no letter, digit or "_"
// right before or after it ("mail@ada.example" and "@adam" do not).
export function mentions(text, name) {
  if (!name || typeof text !== "string") return false;
  const haystack = text.toLocaleLowerCase();
  const needle = `@${name.toLocaleLowerCase()}`;
  let at = haystack.indexOf(needle);
  while (at !== -1) {
    // Whole code points either side: an emoji is two UTF-16 units.
    const before = [...haystack.slice(Math.max(0, at - 2), at)].pop() || "";
    const next = [...haystack.slice(at + needle.length, at + needle.length + 2)][0] || "";
    if (!WORD_CHAR.test(before) && !WORD_CHAR.test(next)) return true;
    at = haystack.indexOf(needle, at + 1);
  }
  return false;
}

// The body of a mention notification: the line, cut after 200 characters.
export function notificationBody(text) {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

// ---------------------------------------------------------------- typing

// What the typing indicator says about these names.
export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  if (names.length > 3) return "Several people are typing…";
  return "";
}

// ---------------------------------------------------------------- times and days

// A message's `ts` as a Date, or null when it is not a time.
export function parseTs(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return null;
  return date;
}

// "15:20" (in the reader's locale and time zone).
export function clockTime(date, locales = []) {
  return date.toLocaleTimeString(locales, { hour: "2-digit", minute: "2-digit" });
}

// The full local date and time, for a tooltip.
export function fullTime(date, locales = []) {
  return date.toLocaleString(locales);
}

// Local calendar day of a date, as YYYY-MM-DD.
export function dayKey(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// The local midnight that begins the day of a dayKey.
export function dayOfKey(key) {
  const [year, month, day] = key.split("-").map(Number);
  return new Date(year, month - 1, day);
}

// "Today", "Yesterday", else the weekday and date (with the year when it
// is not this year's), as seen at `now`.
export function dayLabel(date, now = new Date(), locales = []) {
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(date) === dayKey(now)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  const options = { weekday: "long", day: "numeric", month: "long" };
  if (date.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return date.toLocaleDateString(locales, options);
}

// Milliseconds from `now` until a second after the next local midnight,
// when day labels are due to turn over.
export function untilNextDay(now) {
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  return midnight - now + 1000;
}

// ---------------------------------------------------------------- grouping lines

// Chat lines by one person closer than this form a group.
export const GROUP_WINDOW_MS = 5 * 60 * 1000;

// Where a message goes in the log, after `previous` (what groupLine
// returned as `shown` for the message before it; null for the first):
// `newDay` when a new local day begins with it (a day separator goes
// first), `continues` when it is a chat line that joins the group of the
// one before (same person, within GROUP_WINDOW_MS, same day), and `shown`
// to pass along with the next message.
export function groupLine(previous, msg) {
  const date = parseTs(msg.ts);
  const day = date ? dayKey(date) : null;
  const newDay = day !== null && (previous === null || previous.day !== day);
  const continues =
    msg.kind === "chat" &&
    !newDay &&
    previous !== null &&
    previous.kind === "chat" &&
    previous.name === msg.name &&
    date !== null &&
    previous.time !== null &&
    date.getTime() - previous.time < GROUP_WINDOW_MS;
  const shown = {
    kind: msg.kind,
    name: msg.name,
    time: date ? date.getTime() : null,
    day: day || (previous ? previous.day : null),
  };
  return { date, newDay, continues, shown };
}

// What the next message follows after a notice about missing messages:
// no group goes on across it.
export function afterGap(previous) {
  return previous && { ...previous, kind: "gap" };
}
