// Unit tests of the client's pure text rules (chatapp/static/js/text.js).
// Run with `node --test tests/client/` (part of `./dev test`).
//
// Days are local: this file runs in a time zone with a daylight saving
// change and an offset from UTC (node --test runs each file in its own
// process, so this setting stays here).
process.env.TZ = "Europe/Paris";

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  afterGap,
  clockTime,
  codePoints,
  dayKey,
  dayLabel,
  dayOfKey,
  fullTime,
  GROUP_WINDOW_MS,
  groupLine,
  lineLength,
  lineOf,
  linkParts,
  mentions,
  nameLength,
  nameOf,
  notificationBody,
  parseTs,
  typingText,
  untilNextDay,
} from "../../chatapp/static/js/text.js";

const link = (text, href = text) => ({ link: text, href });

describe("lineOf: the line as the server keeps it", () => {
  test("\\r\\n and a lone \\r become \\n", () => {
    assert.equal(lineOf("one\r\ntwo\rthree\nfour"), "one\ntwo\nthree\nfour");
  });

  test("white space is trimmed at both ends, kept inside", () => {
    assert.equal(lineOf(" \t\n  two  words \n\t "), "two  words");
    assert.equal(lineOf("a\n\n  b"), "a\n\n  b");
  });

  test("a paste padded past the frame limit is trimmed to what was typed", () => {
    assert.equal(lineOf("padded" + " ".repeat(70_000) + "\r\n"), "padded");
  });

  test("nothing but white space is empty", () => {
    assert.equal(lineOf(" \r\n\t "), "");
  });
});

describe("code points, as the server counts", () => {
  test("an emoji is one character, though two UTF-16 units", () => {
    assert.equal("😀".length, 2);
    assert.equal(codePoints("😀"), 1);
    assert.equal(codePoints("😀".repeat(2000)), 2000);
  });

  test("a skin tone or a joined sequence counts each code point", () => {
    assert.equal(codePoints("👍🏽"), 2);
    assert.equal(codePoints("👩‍👧"), 3); // woman, zero width joiner, girl
  });

  test("a line counts after trimming and \\r\\n folding", () => {
    assert.equal(lineLength("word ".repeat(500)), 2499);
    assert.equal(lineLength("  a\r\nb  "), 3);
    assert.equal(lineLength("😀".repeat(2000) + "   "), 2000);
  });

  test("a name is NFKC, trimmed, inner white space folded to one space", () => {
    assert.equal(nameOf("  ada \t\n lovelace  "), "ada lovelace");
    assert.equal(nameOf("ｆｕｌｌ"), "full"); // full-width letters
    assert.equal(nameOf("ﬁne"), "fine"); // the ligature is two letters
    assert.equal(nameLength("  ada   " + "x".repeat(28) + "  "), 32);
    assert.equal(nameLength("ada " + "x".repeat(30)), 34);
    assert.equal(nameLength("😀".repeat(32)), 32);
    assert.equal(nameLength("ﬁ"), 2);
  });
});

describe("linkParts: http(s) links in a line", () => {
  test("text between links stays text; a link stops before trailing punctuation and <", () => {
    assert.deepEqual(linkParts("docs at https://example.com/a?b=1&c=<2>. and http://example.org/x (see)"), [
      "docs at ",
      link("https://example.com/a?b=1&c="),
      "<2>. and ",
      link("http://example.org/x"),
      " (see)",
    ]);
  });

  test("sentence punctuation after an address is not part of it", () => {
    for (const tail of [".", ",", "!", "?", ";", ":", "…", "?!", "...", ".…"]) {
      assert.deepEqual(linkParts(`see https://a.example/x${tail}`), ["see ", link("https://a.example/x"), tail]);
    }
    assert.deepEqual(linkParts("read https://a.example/guide… then"), [
      "read ",
      link("https://a.example/guide"),
      "… then",
    ]);
  });

  test("a balanced ) stays in the link, an unbalanced one does not", () => {
    assert.deepEqual(linkParts("see https://en.wikipedia.org/wiki/Mercury_(planet))."), [
      "see ",
      link("https://en.wikipedia.org/wiki/Mercury_(planet)"),
      ").",
    ]);
    assert.deepEqual(linkParts("(see https://x.example/a_(b))"), ["(see ", link("https://x.example/a_(b)"), ")"]);
    assert.deepEqual(linkParts("(https://x.example/a)"), ["(", link("https://x.example/a"), ")"]);
    // Punctuation and parentheses in turn: ")." then ")" then "."
    assert.deepEqual(linkParts("(https://x.example/a.)."), ["(", link("https://x.example/a"), ".)."]);
  });

  test("a link ends at bidi controls, quotes, brackets and white space", () => {
    assert.deepEqual(linkParts("login here: \u202ehttps://evil.example/\u202e?moc.elgoog//:sptth"), [
      "login here: \u202e",
      link("https://evil.example/"),
      "\u202e?moc.elgoog//:sptth",
    ]);
    for (const stop of [
      "\u200e",
      "\u200f",
      "\u202a",
      "\u202d",
      "\u2066",
      "\u2069",
      '"',
      "'",
      "`",
      "<",
      ">",
      " ",
      "\n",
    ]) {
      assert.deepEqual(
        linkParts(`https://a.example/p${stop}q`),
        [link("https://a.example/p"), `${stop}q`],
        JSON.stringify(stop),
      );
    }
  });

  test("only http and https become links, and only at a word boundary", () => {
    const text = "javascript:alert(1) data:text/html,hi ftp://example.com/f";
    assert.deepEqual(linkParts(text), [text]);
    assert.deepEqual(linkParts("xhttps://a.example/"), ["xhttps://a.example/"]);
    assert.deepEqual(linkParts("http://."), ["http://."]); // no address left once trimmed
  });

  test("the scheme is matched in any case; href is the parsed address", () => {
    assert.deepEqual(linkParts("HTTPS://A.Example/Path"), [link("HTTPS://A.Example/Path", "https://a.example/Path")]);
    assert.deepEqual(linkParts("http://a.example"), [link("http://a.example", "http://a.example/")]);
  });

  test("a line without links is one text part; an empty line has none", () => {
    assert.deepEqual(linkParts("<script>window.__pwned = 1</script>"), ["<script>window.__pwned = 1</script>"]);
    assert.deepEqual(linkParts(""), []);
  });
});

describe("mentions: @name with no word character either side", () => {
  test("in any case, followed by punctuation or the end", () => {
    assert.equal(mentions("hey @ADA, look", "ada"), true);
    assert.equal(mentions("@ada", "ada"), true);
    assert.equal(mentions("(@ada)", "ada"), true);
    assert.equal(mentions("thanks @Ada!", "ADA"), true);
  });

  test("not inside an address, nor as the start of a longer name", () => {
    assert.equal(mentions("no mention of adam or @adam here, nor of mail@ada.example", "ada"), false);
    assert.equal(mentions("@ada_b", "ada"), false);
    assert.equal(mentions("@ada1", "ada"), false);
    assert.equal(mentions("é@ada", "ada"), false); // a letter before it
    assert.equal(mentions("٣@ada", "ada"), false); // a digit of another script
  });

  test("a later occurrence counts when the first does not", () => {
    assert.equal(mentions("mail@ada.example, cc @ada", "ada"), true);
  });

  test("whole code points either side: an emoji is no word character, 𝐚 and 𝟏 are", () => {
    assert.equal(mentions("😀@ada", "ada"), true);
    assert.equal(mentions("@ada😀", "ada"), true);
    assert.equal(mentions("𝐚@ada", "ada"), false); // U+1D41A, a letter outside the BMP
    assert.equal(mentions("@ada𝟏", "ada"), false); // U+1D7CF, a digit
  });

  test("names with a space, and nothing for no name or no text", () => {
    assert.equal(mentions("hi @Ada Lovelace.", "ada lovelace"), true);
    assert.equal(mentions("@ada", ""), false);
    assert.equal(mentions(undefined, "ada"), false);
    assert.equal(mentions("ada", "ada"), false);
  });
});

describe("what the page says", () => {
  test("notificationBody cuts after 200 characters", () => {
    assert.equal(notificationBody("x".repeat(200)), "x".repeat(200));
    assert.equal(notificationBody("x".repeat(201)), "x".repeat(200) + "…");
  });

  test("typingText names up to three people", () => {
    assert.equal(typingText([]), "");
    assert.equal(typingText(["bob"]), "bob is typing…");
    assert.equal(typingText(["bob", "cy"]), "bob and cy are typing…");
    assert.equal(typingText(["bob", "cy", "di"]), "bob, cy and di are typing…");
    assert.equal(typingText(["bob", "cy", "di", "ed"]), "Several people are typing…");
  });
});

describe("times and days, in the local time zone", () => {
  test("parseTs reads the server's timestamps and refuses the rest", () => {
    assert.equal(parseTs("2026-11-24T15:20:00.123Z").getTime(), Date.UTC(2026, 10, 24, 15, 20, 0, 123));
    assert.equal(parseTs("not a time"), null);
    assert.equal(parseTs(undefined), null);
  });

  test("clockTime gives hours and minutes of local time", () => {
    const date = parseTs("2026-11-24T15:20:00.123Z");
    assert.equal(clockTime(date, "en-GB"), "16:20"); // Paris is UTC+1 in November
    assert.match(fullTime(date, "en-GB"), /^24\/11\/2026,? 16:20:00$/);
  });

  test("dayKey is the local calendar day", () => {
    assert.equal(dayKey(parseTs("2026-11-24T22:59:59Z")), "2026-11-24");
    assert.equal(dayKey(parseTs("2026-11-24T23:00:00Z")), "2026-11-25"); // midnight in Paris
    assert.equal(dayKey(new Date(2026, 0, 5)), "2026-01-05");
    assert.equal(dayKey(dayOfKey("2026-03-29")), "2026-03-29");
    assert.equal(dayOfKey("2026-03-29").getHours(), 0);
  });

  // The weekday and date, as the reader's browser writes them.
  const onDay = (date, locales) => date.toLocaleDateString(locales, { weekday: "long", day: "numeric", month: "long" });

  test("dayLabel turns Today into Yesterday at local midnight", () => {
    const line = new Date(2026, 10, 24, 23, 59, 30);
    assert.equal(dayLabel(line, new Date(2026, 10, 24, 23, 59, 59)), "Today");
    assert.equal(dayLabel(line, new Date(2026, 10, 25, 0, 0, 1)), "Yesterday");
    assert.equal(dayLabel(line, new Date(2026, 10, 25, 23, 59, 59)), "Yesterday");
    assert.equal(dayLabel(line, new Date(2026, 10, 26, 0, 0, 1), "en-GB"), onDay(line, "en-GB"));
  });

  test("Yesterday across a month and a year; older days name the year when it is not this one", () => {
    assert.equal(dayLabel(new Date(2026, 11, 31, 22), new Date(2027, 0, 1, 0, 0, 10)), "Yesterday");
    assert.equal(dayLabel(new Date(2026, 1, 28, 12), new Date(2026, 2, 1, 9)), "Yesterday");
    // (ICU's punctuation varies with its version: the parts, not the commas.)
    const older = dayLabel(new Date(2026, 11, 30, 12), new Date(2027, 0, 1, 9), "en-GB");
    assert.match(older, /^Wednesday,? 30 December,? 2026$/);
    const thisYear = dayLabel(new Date(2026, 0, 30, 12), new Date(2026, 11, 31, 9), "en-GB");
    assert.match(thisYear, /^Friday,? 30 January$/);
    assert.equal(dayLabel(new Date(2027, 0, 1, 0), new Date(2027, 0, 1, 9)), "Today");
  });

  test("untilNextDay is a second past the next local midnight, daylight saving included", () => {
    const hour = 3600 * 1000;
    assert.equal(untilNextDay(new Date(2026, 10, 24, 23, 59, 30)), 31_000);
    assert.equal(untilNextDay(new Date(2026, 10, 24, 12, 0, 0)), 12 * hour + 1000);
    // 25 October 2026 has 25 hours in Paris; 29 March 2026 has 23.
    assert.equal(untilNextDay(new Date(2026, 9, 25, 0, 30)), 24.5 * hour + 1000);
    assert.equal(untilNextDay(new Date(2026, 2, 29, 0, 30)), 22.5 * hour + 1000);
  });
});

describe("groupLine: consecutive lines by one person form a group", () => {
  const at = (minutes) => new Date(Date.UTC(2026, 10, 24, 10, 0) + minutes * 60_000).toISOString();
  const chat = (name, minutes, id = 1) => ({ id, kind: "chat", name, text: "hi", ts: at(minutes) });

  // Place messages in turn; return [newDay, continues] for each.
  function place(messages, previous = null) {
    return messages.map((msg) => {
      const { newDay, continues, shown } = groupLine(previous, msg);
      previous = shown;
      return [newDay, continues];
    });
  }

  test("the first message of a day opens it; the next lines by the same person continue", () => {
    assert.deepEqual(place([chat("ada", 0), chat("ada", 1), chat("ada", 2), chat("bob", 2), chat("ada", 3)]), [
      [true, false],
      [false, true],
      [false, true],
      [false, false],
      [false, false],
    ]);
  });

  test("a line GROUP_WINDOW_MS or more after the last one starts a new group", () => {
    const window = GROUP_WINDOW_MS / 60_000;
    assert.deepEqual(place([chat("ada", 0), chat("ada", window - 0.01), chat("ada", 2 * window)]), [
      [true, false],
      [false, true],
      [false, false],
    ]);
  });

  test("a notice between two lines breaks the group; notices never continue one", () => {
    const join = { id: 2, kind: "join", name: "ada", text: "", ts: at(1) };
    assert.deepEqual(place([chat("ada", 0), join, chat("ada", 2)]), [
      [true, false],
      [false, false],
      [false, false],
    ]);
  });

  test("a new local day starts with a separator and a new group", () => {
    // 22:59 and 23:01 UTC are 23:59 and 00:01 in Paris.
    const late = { id: 1, kind: "chat", name: "ada", text: "", ts: "2026-11-24T22:59:00Z" };
    const early = { id: 2, kind: "chat", name: "ada", text: "", ts: "2026-11-24T23:01:00Z" };
    assert.deepEqual(place([late, early]), [
      [true, false],
      [true, false],
    ]);
  });

  test("no group goes on across a gap notice", () => {
    const first = groupLine(null, chat("ada", 0)).shown;
    assert.equal(groupLine(first, chat("ada", 1)).continues, true);
    assert.equal(groupLine(afterGap(first), chat("ada", 1)).continues, false);
    assert.equal(groupLine(afterGap(first), chat("ada", 1)).newDay, false);
    assert.equal(afterGap(null), null);
  });

  test("a message without a valid time keeps the day and never groups", () => {
    const first = groupLine(null, chat("ada", 0)).shown;
    const timeless = { id: 2, kind: "chat", name: "ada", text: "", ts: "garbled" };
    const placed = groupLine(first, timeless);
    assert.deepEqual([placed.newDay, placed.continues, placed.date], [false, false, null]);
    assert.equal(placed.shown.day, first.day);
    assert.equal(groupLine(placed.shown, chat("ada", 1)).continues, false);
    assert.equal(groupLine(null, timeless).newDay, false);
  });
});
