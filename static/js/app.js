// Toasts: the server sends an HX-Trigger "run-finished" event with {message}; show it briefly.
document.addEventListener("run-finished", (event) => {
  const detail = event.detail || {};
  const messages = Array.isArray(detail.messages) ? detail.messages : [detail.message || detail.value];
  const box = document.getElementById("toasts");
  if (!box) return;
  for (const text of messages) {
    if (!text) continue;
    const toast = document.createElement("div");
    toast.className = "toast";
    toast.setAttribute("role", "status");
    toast.textContent = text;
    box.appendChild(toast);
    setTimeout(() => toast.remove(), 8000);
  }
});

// Remaining time counts down between refreshes: elements carry data-remaining-ms. The words
// are training.display.duration's, so the first tick reads like the page the server sent.
function twoUnits(big, small, bigUnit, smallUnit, pad) {
  if (!big) return `${small} ${smallUnit}`;
  if (!small) return `${big} ${bigUnit}`;
  return `${big} ${bigUnit} ${pad ? String(small).padStart(2, "0") : small} ${smallUnit}`;
}
function formatRemaining(ms) {
  const s = Math.round(Math.max(0, ms) / 1000);
  if (s < 600) return twoUnits(Math.floor(s / 60), s % 60, "min", "s", true);
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 24 * 60) return twoUnits(Math.floor(minutes / 60), minutes % 60, "h", "min", true);
  const hours = Math.round(s / 3600);
  return twoUnits(Math.floor(hours / 24), hours % 24, "d", "h", false);
}
setInterval(() => {
  for (const el of document.querySelectorAll("[data-remaining-ms]")) {
    const left = Number(el.dataset.remainingMs) - 1000;
    el.dataset.remainingMs = String(Math.max(0, left));
    el.textContent = formatRemaining(left);
  }
}, 1000);

// Monitoring: a sample image opens large in the page's <dialog id="enlarge">; without
// JavaScript (or without the dialog) the link opens the image itself.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-enlarge]");
  const dialog = document.getElementById("enlarge");
  if (!link || !dialog || typeof dialog.showModal !== "function") return;
  if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  const img = dialog.querySelector("img");
  img.src = link.href;
  img.alt = link.dataset.caption || "";
  dialog.querySelector(".caption").textContent = link.dataset.caption || "";
  dialog.showModal();
});
// A click on the backdrop closes the enlarged image too.
document.addEventListener("click", (event) => {
  if (event.target.id === "enlarge") event.target.close();
});

// The launch form: a field's check runs beside the form's own requests (aborting it would log
// an error). One that answers after an estimate replaced the form would paint the old form's
// errors and quote over the new one: it is dropped. Pressing one of the form's buttons blurs
// the field, and its check may answer before the button is released: painting the panel then
// would remove the pressed button and lose the click. Such a check is held back; the click's
// own request repaints the whole form, and if no click follows the check is sent again.
// Each check answers for the whole form, as it was when the check was sent: one that answers
// after a later check was painted would put back that older form's errors, so it is dropped.
let buttonPressed = false;
let heldBackCheck = null;
let checksSent = 0;
let newestCheckPainted = 0;
document.addEventListener("pointerdown", (event) => {
  buttonPressed = Boolean(event.target.closest && event.target.closest("#launch-form button"));
});
document.addEventListener("pointerup", () => {
  // After the click that this release makes, if it makes one.
  setTimeout(() => {
    buttonPressed = false;
    if (heldBackCheck && heldBackCheck.isConnected) htmx.trigger(heldBackCheck, "change");
    heldBackCheck = null;
  }, 0);
});
document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (!elt.matches || !elt.closest("#launch-form")) return;
  if (!elt.matches("#launch-form [hx-post][hx-swap='none']")) {
    heldBackCheck = null; // the form's own request answers for every field
    return;
  }
  const sent = ++checksSent;
  elt.addEventListener(
    "htmx:beforeSwap",
    (swap) => {
      if (!elt.isConnected || sent < newestCheckPainted) swap.detail.shouldSwap = false;
      else if (buttonPressed) {
        swap.detail.shouldSwap = false;
        heldBackCheck = elt;
      } else newestCheckPainted = sent;
    },
    { once: true },
  );
});
