// The model page's upload: drop files (or choose them), see one progress bar per file and one
// for the batch, then each file's way to Scenario. Without this script the same form posts
// the files and the page reports what went in and what did not.
(function () {
  "use strict";

  var POLL_MS = 1000;

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function row(file) {
    var item = document.createElement("li");
    item.className = "upload-file";
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Progress of " + file.name);
    var state = document.createElement("span");
    state.className = "upload-state";
    state.textContent = "Waiting";
    item.append(name, bar, state);
    return { item: item, bar: bar, state: state, size: file.size || 1, name: file.name };
  }

  function setRow(entry, percent, text, kind) {
    entry.bar.value = percent;
    entry.state.textContent = text;
    entry.item.classList.remove("sending", "refused", "done", "failed");
    if (kind) entry.item.classList.add(kind);
  }

  function start(form, files) {
    if (!files.length) return;
    var panel = document.getElementById("upload-progress");
    var list = document.getElementById("upload-file-list");
    var batchBar = document.getElementById("batch-progress");
    var batchState = document.getElementById("batch-state");
    panel.hidden = false;
    list.textContent = "";
    var report = document.getElementById("batch-report");
    if (report) report.remove();

    var entries = Array.prototype.map.call(files, row);
    entries.forEach(function (e) { list.append(e.item); });
    var total = entries.reduce(function (sum, e) { return sum + e.size; }, 0);

    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    Array.prototype.forEach.call(files, function (f) { data.append("files", f, f.name); });

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    // Parts of a multipart body go in order: bytes sent so far tell how far each file is.
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      var sent = event.loaded / event.total * total;
      var before = 0;
      entries.forEach(function (e) {
        var share = Math.max(0, Math.min(1, (sent - before) / e.size));
        before += e.size;
        setRow(e, Math.round(share * 50), share < 1 ? "Uploading " + Math.round(share * 100) + " %" : "Checking", "sending");
      });
      batchBar.value = Math.round(event.loaded / event.total * 50);
      batchState.textContent = "Uploading";
    });
    xhr.addEventListener("load", function () {
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (xhr.status !== 200 || !answer || !answer.accepted) {
        batchState.textContent = (answer && answer.error) || "The upload was refused (" + xhr.status + ").";
        entries.forEach(function (e) { setRow(e, 0, "Not sent", "failed"); });
        return;
      }
      reportAnswer(entries, answer, batchBar, batchState);
    });
    xhr.addEventListener("error", function () {
      batchState.textContent = "The connection was lost: nothing was added. Try again.";
      entries.forEach(function (e) { setRow(e, 0, "Not sent", "failed"); });
    });
    xhr.send(data);
  }

  function reportAnswer(entries, answer, batchBar, batchState) {
    var byName = {};
    entries.forEach(function (e) { (byName[e.name] = byName[e.name] || []).push(e); });
    var tracked = {};
    answer.refused.forEach(function (r) {
      var e = (byName[r.name] || []).shift();
      if (e) setRow(e, 0, "Refused: " + r.reason, "refused");
    });
    answer.accepted.forEach(function (a) {
      var e = (byName[a.name] || []).shift();
      if (e) { tracked[a.id] = e; setRow(e, 60, "Waiting to be sent to Scenario", "sending"); }
    });
    batchState.textContent = answer.accepted.length + " added, " + answer.refused.length + " refused";
    if (!answer.accepted.length) { batchBar.value = 100; return; }
    follow(answer.status_url, tracked, answer.accepted.length, batchBar, batchState, answer.refused.length);
  }

  var PERCENT = { queued: 60, uploaded: 80, attached: 100, failed: 100 };

  function follow(url, tracked, count, batchBar, batchState, refused) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (status) {
        var done = 0;
        status.images.forEach(function (image) {
          var e = tracked[image.id];
          if (!e) return;
          var finished = image.state === "attached" || image.state === "failed";
          if (finished) done += 1;
          var kind = image.state === "attached" ? "done" : image.state === "failed" ? "failed" : "sending";
          var text = image.state === "failed" ? "Not sent: " + image.error : image.label;
          setRow(e, PERCENT[image.state] || 60, text, kind);
        });
        batchBar.value = 50 + Math.round(done / count * 50);
        batchState.textContent = done + " of " + count + " on Scenario" + (refused ? ", " + refused + " refused" : "");
        document.body.dispatchEvent(new CustomEvent("dataset-changed"));
        if (status.pending) setTimeout(function () { follow(url, tracked, count, batchBar, batchState, refused); }, POLL_MS);
      })
      .catch(function () {
        setTimeout(function () { follow(url, tracked, count, batchBar, batchState, refused); }, POLL_MS * 3);
      });
  }

  ready(function () {
    var form = document.querySelector("form[data-dataset-upload]");
    if (!form) return;
    var input = form.querySelector("input[type=file]");
    form.classList.add("js-dropzone");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      start(form, input.files);
      form.reset();
    });
    input.addEventListener("change", function () {
      if (input.files.length) { start(form, input.files); form.reset(); }
    });
    ["dragenter", "dragover"].forEach(function (name) {
      form.addEventListener(name, function (event) { event.preventDefault(); form.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      form.addEventListener(name, function () { form.classList.remove("dragging"); });
    });
    form.addEventListener("drop", function (event) {
      event.preventDefault();
      start(form, event.dataTransfer.files);
    });
  });
})();
