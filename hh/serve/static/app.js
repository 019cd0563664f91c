// The comparison page (Bai et al. 2022 §2.2, App. D): a labeler writes a message, sees two responses
// side by side, picks one with a strength of preference (optionally editing it), and the conversation
// continues from the picked response. Plain DOM over the JSON API of hh/serve/app.py; model and
// labeler text only ever enters the page through textContent.
"use strict";

const TOKEN_KEY = "hh-token";
const CONVERSATION_KEY = "hh-conversation";
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  session: null,        // GET /api/session
  view: null,           // the open conversation (app.py's conversation_view)
  strength: null,       // 1-4, chosen for the pending pair
  editSide: null,       // "left" | "right" while the edit box is open
  busy: false,
  focus: null,          // the element id to focus once the running action is done
};

// --- the token: from the invite link into sessionStorage, out of the address bar ---------------

function takeToken() {
  const params = new URLSearchParams(window.location.search);
  const fromLink = params.get("token");
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showNoToken(reason) {
  $("app").hidden = true;
  $("who").hidden = true;
  $("no-token").hidden = false;
  if (reason) $("no-token-reason").textContent = reason;
}

// --- the API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
  return JSON.stringify(detail);
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "could not reach the server (" + e.message + "): check your connection and try again");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? detailText(data.detail) : response.status + " " + response.statusText;
    throw new ApiError(response.status, detail);
  }
  return data;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

function setStatus(message) {
  $("status").textContent = message;
}

// Runs one API action: controls off while it runs, errors shown in #error (401: the invite message).
async function run(statusWhileRunning, action) {
  if (state.busy) return;
  state.busy = true;
  clearError();
  if (statusWhileRunning) setStatus(statusWhileRunning);
  document.body.setAttribute("aria-busy", "true");
  render();
  try {
    await action();
  } catch (e) {
    if (statusWhileRunning) setStatus("");
    if (e instanceof ApiError && e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showNoToken("Your invite link is not valid (" + e.message + "). Open the invite link you were given.");
    }
    showError(e.message);
  } finally {
    state.busy = false;
    document.body.removeAttribute("aria-busy");
    render();
    const focus = state.focus && $(state.focus);
    state.focus = null;
    if (focus && !focus.disabled && !focus.closest("[hidden]")) focus.focus();
  }
}

// --- actions -----------------------------------------------------------------------------------

function openView(view) {
  const samePair = state.view && state.view.pending && view.pending &&
    state.view.pending.pending_id === view.pending.pending_id;
  state.view = view;
  if (!samePair) {
    state.strength = null;
    state.editSide = null;
    $("edit-toggle").checked = false;
  }
  sessionStorage.setItem(CONVERSATION_KEY, view.id);
}

async function refreshList() {
  const data = await api("GET", "/api/conversations");
  renderList(data.conversations);
}

function startConversation() {
  const mode = $("mode").value;
  run("", async () => {
    openView(await api("POST", "/api/conversations", { mode }));
    setStatus("Started a " + mode + " conversation");
    await refreshList();
    state.focus = "message";
  });
}

function openConversation(id) {
  run("", async () => {
    openView(await api("GET", "/api/conversations/" + encodeURIComponent(id)));
    setStatus("Opened conversation " + id);
    await refreshList();
    state.focus = state.view.pending ? "question" : "message";
  });
}

function sendMessage() {
  const text = $("message").value.trim();
  if (!state.view || state.view.pending || state.view.finished) return;
  if (!text) {
    showError("Write a message first.");
    return;
  }
  run("sampling… (two responses are being written)", async () => {
    openView(await api("POST", "/api/conversations/" + encodeURIComponent(state.view.id) + "/messages", { text }));
    $("message").value = "";
    setStatus("Two responses are ready: choose a strength, then pick one");
    await refreshList();
    state.focus = "question";     // off the message box, so the shortcuts work at once
  });
}

function pick(side) {
  const pending = state.view && state.view.pending;
  if (!pending || state.busy) return;
  if (state.strength === null) {
    showError("First choose how strong your preference is (1–4), then pick a side.");
    return;
  }
  if ($("edit-toggle").checked) {
    state.editSide = side;
    $("edit-text").value = responseText(side);
    clearError();
    render();
    $("edit-text").focus();
    return;
  }
  submitChoice(side, null);
}

function responseText(side) {
  return state.view.pending.responses.find((r) => r.side === side).text;
}

function submitEdit() {
  if (!state.editSide) return;
  const text = $("edit-text").value.trim();
  if (!text) {
    showError("The edited response is empty: write something or cancel the edit.");
    return;
  }
  // an unchanged text is not an edit: the comparison records the plain choice
  submitChoice(state.editSide, text === responseText(state.editSide).trim() ? null : text);
}

function submitChoice(side, edit) {
  const pending = state.view.pending;
  const body = { pending_id: pending.pending_id, side, strength: state.strength };
  if (edit !== null) body.edit = edit;
  run("recording your choice…", async () => {
    const out = await api("POST", "/api/conversations/" + encodeURIComponent(state.view.id) + "/choice", body);
    openView(out.conversation);
    setStatus(out.duplicate ? "Comparison #" + out.comparison_id + " was already recorded"
                            : "Recorded comparison #" + out.comparison_id + (edit !== null ? " (with your edit)" : ""));
    await refreshList();
    state.focus = "message";
  });
}

function finishConversation() {
  if (!state.view || state.view.finished) return;
  run("", async () => {
    openView(await api("POST", "/api/conversations/" + encodeURIComponent(state.view.id) + "/finish"));
    setStatus("Finished the conversation");
    await refreshList();
  });
}

function setStrength(value) {
  if (!state.view || !state.view.pending || state.busy) return;
  state.strength = value;
  render();
}

// --- rendering ---------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function turnItem(speaker, text, cls) {
  const li = el("li", "turn " + cls);
  li.append(el("span", "speaker", speaker), " ", el("span", "text", text));
  return li;
}

function renderList(conversations) {
  const list = $("conversations");
  list.replaceChildren();
  $("no-conversations").hidden = conversations.length > 0;
  for (const c of conversations.slice().reverse()) {
    const li = el("li");
    const button = el("button", "link");
    button.type = "button";
    button.dataset.testid = "open-conversation";
    button.dataset.id = c.id;
    const when = new Date(c.created_at * 1000).toLocaleString();
    button.textContent = c.mode + ", " + c.turns + (c.turns === 1 ? " turn" : " turns") +
      (c.finished_at ? ", finished" : "") + " — " + when;
    button.addEventListener("click", () => openConversation(c.id));
    if (state.view && state.view.id === c.id) li.className = "current";
    li.append(button);
    list.append(li);
  }
}

function renderStrengths() {
  const box = $("strengths");
  if (box.childElementCount === 0 && state.session) {
    for (const s of state.session.strengths) {
      const button = el("button", "strength-option");
      button.type = "button";
      button.id = "strength-" + s.value;
      button.dataset.testid = "strength-" + s.value;
      button.dataset.value = s.value;
      button.append(el("kbd", "", String(s.value)), " " + s.label);
      button.addEventListener("click", () => setStrength(s.value));
      box.append(button);
    }
  }
  for (const button of box.children) {
    const on = Number(button.dataset.value) === state.strength;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.disabled = state.busy;
  }
}

function render() {
  const view = state.view;
  const mode = view ? view.mode : $("mode").value;
  if (state.session) {
    $("instructions-mode").textContent = mode;
    $("instructions").textContent = state.session.modes[mode].instructions;
  }
  $("start").disabled = state.busy;
  $("mode").disabled = state.busy;
  for (const b of $("conversations").querySelectorAll("button")) b.disabled = state.busy;

  $("conversation").hidden = !view;
  if (!view) return;
  $("conversation-mode").textContent = view.mode;
  $("conversation-finished").hidden = !view.finished;

  const transcript = $("transcript");
  transcript.replaceChildren();
  for (const t of view.turns) {
    transcript.append(turnItem("You:", t.human, "human"), turnItem("Assistant:", t.assistant, "assistant"));
  }

  const pending = view.pending;
  $("pending").hidden = !pending;
  if (pending) {
    $("pending-human").textContent = pending.human;
    $("question").textContent = view.question;
    $("response-left").textContent = responseText("left");
    $("response-right").textContent = responseText("right");
    $("strength-legend").textContent = view.mode === "red-team"
      ? "How much more harmful is the one you pick?" : "How much better is the one you pick?";
    renderStrengths();
    for (const side of ["left", "right"]) {
      const button = $("pick-" + side);
      button.disabled = state.busy;
      $("card-" + side).classList.toggle("picked", state.editSide === side);
    }
    $("edit-toggle").disabled = state.busy;
    $("edit-box").hidden = !state.editSide;
    $("edit-label").textContent = state.editSide
      ? "Edit response " + (state.editSide === "left" ? "A (left)" : "B (right)") + " before the conversation continues from it"
      : "";
    $("submit-edit").disabled = state.busy;
    $("cancel-edit").disabled = state.busy;
  }

  const canWrite = !view.finished && !pending;
  $("composer").hidden = !canWrite;
  $("message").disabled = state.busy || !canWrite;
  $("send").disabled = state.busy || !canWrite;
  $("finish").hidden = view.finished;
  $("finish").disabled = state.busy;
  const max = state.session ? state.session.max_message_chars : 0;
  $("char-count").textContent = $("message").value.length + " / " + max + " characters";
}

// --- keyboard ----------------------------------------------------------------------------------

function typing(target) {
  return target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement ||
    (target instanceof HTMLInputElement && target.type !== "checkbox" && target.type !== "radio");
}

function onKey(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    if (event.target === $("message")) {
      event.preventDefault();
      sendMessage();
    } else if (event.target === $("edit-text")) {
      event.preventDefault();
      submitEdit();
    }
    return;
  }
  if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!state.view || !state.view.pending || state.busy) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (["1", "2", "3", "4"].includes(key)) {
    setStrength(Number(key));
  } else if (key === "ArrowLeft" || key === "a") {
    pick("left");
  } else if (key === "ArrowRight" || key === "b") {
    pick("right");
  } else if (key === "e") {
    $("edit-toggle").checked = !$("edit-toggle").checked;
    if (!$("edit-toggle").checked) state.editSide = null;
    render();
  } else {
    return;
  }
  event.preventDefault();
}

// --- start -------------------------------------------------------------------------------------

function wire() {
  $("start").addEventListener("click", startConversation);
  $("send").addEventListener("click", sendMessage);
  $("finish").addEventListener("click", finishConversation);
  $("pick-left").addEventListener("click", () => pick("left"));
  $("pick-right").addEventListener("click", () => pick("right"));
  $("submit-edit").addEventListener("click", submitEdit);
  $("cancel-edit").addEventListener("click", () => {
    state.editSide = null;
    render();
  });
  $("edit-toggle").addEventListener("change", () => {
    if (!$("edit-toggle").checked) state.editSide = null;
    render();
  });
  $("mode").addEventListener("change", render);
  $("message").addEventListener("input", render);
  document.addEventListener("keydown", onKey);
}

async function main() {
  wire();
  state.token = takeToken();
  if (!state.token) {
    showNoToken();
    return;
  }
  run("", async () => {
    state.session = await api("GET", "/api/session");
    $("labeler").textContent = state.session.labeler;
    $("who").hidden = false;
    $("app").hidden = false;
    $("message").maxLength = state.session.max_message_chars;
    await refreshList();
    // a reload (or a server restart) reopens the conversation this tab had open, pending pair included
    const last = sessionStorage.getItem(CONVERSATION_KEY);
    if (last) {
      try {
        openView(await api("GET", "/api/conversations/" + encodeURIComponent(last)));
        state.focus = state.view.pending ? "question" : "message";
      } catch (e) {
        if (e.status === 401) throw e;
        sessionStorage.removeItem(CONVERSATION_KEY);
      }
    }
  });
}

main();
