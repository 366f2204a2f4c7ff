// Browser notifications when one of my runs ends, for a tab left in the background.
//
// Opt-in: permission is asked only from a click on the #notify-toggle button, and the choice
// is remembered in localStorage. The server's "run-finished" event lists my finished runs
// ({id, url, model, outcome, duration}); every open tab receives it, so each run is claimed
// once, under a Web Lock shared by the tabs, before a notification is shown.

const NOTIFY_CHOICE = "notify-when-my-runs-end";
const NOTIFIED = "notified-runs";
const KEEP_CLAIMS_MS = 7 * 24 * 3600 * 1000;

function notificationsSupported() {
  return "Notification" in window;
}

function notificationsOn() {
  return (
    notificationsSupported() &&
    Notification.permission === "granted" &&
    localStorage.getItem(NOTIFY_CHOICE) === "on"
  );
}

// --- The opt-in control ------------------------------------------------------------------

function showToggle(button) {
  if (!notificationsSupported()) return;
  button.hidden = false;
  if (Notification.permission === "denied") {
    button.textContent = "Notifications are blocked for this site in your browser";
    button.disabled = true;
  } else if (notificationsOn()) {
    button.textContent = "Notifying you when your runs end · turn off";
    button.setAttribute("aria-pressed", "true");
  } else {
    button.textContent = "Notify me when my runs end";
    button.setAttribute("aria-pressed", "false");
  }
}

async function toggle(button) {
  if (notificationsOn()) {
    localStorage.setItem(NOTIFY_CHOICE, "off");
  } else {
    const permission = await Notification.requestPermission();
    localStorage.setItem(NOTIFY_CHOICE, permission === "granted" ? "on" : "off");
  }
  showToggle(button);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("#notify-toggle");
  if (button) toggle(button);
});

function setUpToggles() {
  for (const button of document.querySelectorAll("#notify-toggle")) showToggle(button);
}
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", setUpToggles);
} else {
  setUpToggles();
}
// Another tab turned them on or off: say so here too.
window.addEventListener("storage", (event) => {
  if (event.key === NOTIFY_CHOICE) setUpToggles();
});

// --- Once per run, across tabs ------------------------------------------------------------

function withClaims(work) {
  // The lock makes read-check-write one step for all the tabs of this site.
  if (navigator.locks) return navigator.locks.request(NOTIFIED, work);
  return Promise.resolve().then(work);
}

function claim(runId) {
  return withClaims(() => {
    const now = Date.now();
    let claims = {};
    try {
      claims = JSON.parse(localStorage.getItem(NOTIFIED) || "{}") || {};
    } catch {
      claims = {};
    }
    if (claims[runId]) return false;
    for (const [id, at] of Object.entries(claims)) {
      if (now - at > KEEP_CLAIMS_MS) delete claims[id];
    }
    claims[runId] = now;
    localStorage.setItem(NOTIFIED, JSON.stringify(claims));
    return true;
  });
}

function notify(run) {
  const notification = new Notification(`${run.model}: ${run.outcome}`, {
    body: run.duration && run.duration !== "—" ? `Took ${run.duration}. Click to open the run.` : "Click to open the run.",
    tag: `run-${run.id}`,
  });
  notification.addEventListener("click", () => {
    window.focus();
    window.location.assign(run.url);
    notification.close();
  });
}

document.addEventListener("run-finished", async (event) => {
  const runs = (event.detail && event.detail.runs) || [];
  if (!notificationsOn()) return;
  for (const run of runs) {
    if (await claim(String(run.id))) notify(run);
  }
});
