// The endpoint page's log panel (endpoints/_logs.html): load the newest entries, then follow the log
// by polling its JSON feed with the cursor of the last page, while the panel is open and the tab is
// visible. The list is not a live region: the status line below it says what changed, at most
// once every ANNOUNCE_MS, so screen readers are not read every line.
(() => {
  const form = document.querySelector("[data-log-panel]");
  if (!form) return;
  const list = document.querySelector("[data-log-lines]");
  const status = document.querySelector("[data-log-status]");
  const follow = form.querySelector("[data-log-follow]");
  const url = form.dataset.logUrl;
  let interval = 3000; // the feed says how often its runtime may be asked (poll_seconds)
  const ANNOUNCE_MS = 30000;
  const MAX_LINES = 1000;
  let cursor = "";
  let revision = null; // whose log is shown: a deploy while the page is open starts the new one's
  let following = true;
  let timer = null;
  let generation = 0; // a reload (new filter) makes answers to earlier requests stale
  let unannounced = 0;
  let lastAnnounced = 0;

  function say(text) {
    if (status.textContent !== text) status.textContent = text;
  }

  function entryItem(entry) {
    const item = document.createElement("li");
    item.className = `log-entry log-${String(entry.level).toLowerCase()}`;
    const time = document.createElement("time");
    time.dateTime = entry.time;
    time.textContent = entry.shown_time;
    const level = document.createElement("span");
    level.className = "log-level";
    level.textContent = entry.level;
    const message = document.createElement("span");
    message.className = "log-message";
    message.textContent = entry.message;
    item.append(time, " ", level, " ", message);
    return item;
  }

  function empty(text) {
    const item = document.createElement("li");
    item.className = "log-empty muted";
    item.textContent = text;
    list.replaceChildren(item);
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = null;
    if (following && !document.hidden) timer = setTimeout(() => load(false), delay);
  }

  async function load(fresh) {
    const mine = fresh ? ++generation : generation;
    const params = new URLSearchParams(new FormData(form));
    params.set("format", "json");
    if (!fresh && cursor) params.set("after", cursor);
    let data;
    let ok = false;
    try {
      const response = await fetch(`${url}?${params}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      data = await response.json();
      ok = response.ok;
    } catch {
      data = { error: "The log could not be read; trying again." };
    }
    if (mine !== generation) return;
    if (data.poll_seconds) interval = data.poll_seconds * 1000;
    if (!ok) {
      say(data.error || "The log could not be read; trying again.");
      schedule(interval * 2);
      return;
    }
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    if (fresh) {
      list.replaceChildren();
      cursor = "";
      unannounced = 0;
    } else if (data.entries.length) {
      list.querySelector(".log-empty")?.remove();
    }
    if (!fresh && revision && data.revision && data.revision !== revision) {
      const divider = document.createElement("li");
      divider.className = "log-entry log-divider";
      divider.textContent = `${data.revision} serves now: its log follows.`;
      list.append(divider);
      say(`${data.revision} serves now; following its log.`);
    }
    revision = data.revision;
    list.append(...data.entries.map(entryItem));
    while (list.children.length > MAX_LINES) list.firstElementChild.remove();
    if (fresh || atEnd) list.scrollTop = list.scrollHeight;
    cursor = data.cursor;
    if (fresh) {
      if (!data.entries.length) empty(data.revision ? "No entry matches yet." : "Nothing is live: there is no log to read.");
      const shown = data.entries.length;
      say(`${shown} entr${shown === 1 ? "y" : "ies"} shown${data.more ? " (older ones left out)" : ""}; ${following ? "following the log" : "paused"}.`);
      lastAnnounced = Date.now();
    } else if (data.entries.length) {
      unannounced += data.entries.length;
      if (Date.now() - lastAnnounced >= ANNOUNCE_MS) {
        say(`${unannounced} new entr${unannounced === 1 ? "y" : "ies"}.`);
        unannounced = 0;
        lastAnnounced = Date.now();
      }
    }
    schedule(data.more && !fresh ? 0 : interval);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  form.querySelector("select").addEventListener("change", () => load(true));
  let typing = null;
  form.querySelector("input[type=search]").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(true), 400);
  });
  follow.hidden = false;
  follow.addEventListener("click", () => {
    following = !following;
    follow.setAttribute("aria-pressed", String(following));
    say(following ? "Following the log." : "Paused: new entries are not loaded.");
    if (following) load(false);
    else schedule(0);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && following) load(false);
  });
  load(true);
})();
