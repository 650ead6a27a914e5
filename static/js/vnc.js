// The VNC page: noVNC on the session's WebSocket. The server has already
// done the real VNC server's handshake (and holds its password); to noVNC it
// offers a server that needs no authentication. Text frames on the socket are
// the server's status messages: noVNC ignores them, this page shows them.
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";

const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");
const reconnectForm = document.getElementById("reconnect-form");
const clipboardText = document.getElementById("clipboard-text");
const baseTitle = document.title;

function showStatus(state, text) {
  statusLine.textContent = state === "disconnected" ? `disconnected: ${text}` : text;
  statusLine.className = `status ${state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "pending"}`;
  document.title = `[${state === "disconnected" ? "disconnected" : text}] ${baseTitle}`;
  if (state === "disconnected" && reconnectForm) reconnectForm.hidden = false;
}

const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const query = new URLSearchParams({ launch: params.get("launch") || "" });
const socket = new WebSocket(`${scheme}://${location.host}/ws/sessions/${screen.dataset.operation}/?${query}`);
socket.binaryType = "arraybuffer";
let reason = "";

socket.addEventListener("open", () => history.replaceState(null, "", location.pathname));
socket.addEventListener("message", (event) => {
  if (typeof event.data !== "string") return;
  const message = JSON.parse(event.data);
  if (message.type !== "status") return;
  if (message.state === "disconnected") {
    reason = message.message;
    showStatus("disconnected", reason);
  } else if (message.state === "handshake") {
    showStatus("pending", message.message || "starting VNC handshake");
  } else if (message.state !== "connected") {
    showStatus("pending", message.message || message.state);
  }
});

const rfb = new RFB(screen, socket, {});
rfb.scaleViewport = true;
rfb.qualityLevel = 6;
rfb.compressionLevel = 2;
rfb.addEventListener("connect", () => {
  showStatus("connected", "connected");
  rfb.focus();
});
rfb.addEventListener("disconnect", () => showStatus("disconnected", reason || "the connection was closed"));
rfb.addEventListener("clipboard", (event) => {
  clipboardText.value = event.detail.text;
});
rfb.addEventListener("desktopname", (event) => {
  document.title = `${event.detail.name} · ${baseTitle}`;
});

document.getElementById("scaling").addEventListener("change", (event) => {
  rfb.scaleViewport = event.target.value === "fit";
  rfb.resizeSession = event.target.value === "remote";
});
document.getElementById("view-only").addEventListener("change", (event) => {
  rfb.viewOnly = event.target.checked;
});
document.getElementById("quality").addEventListener("change", (event) => {
  rfb.qualityLevel = Number(event.target.value);
});
document.getElementById("compression").addEventListener("change", (event) => {
  rfb.compressionLevel = Number(event.target.value);
});

function chord(keys) {
  for (const [keysym, code] of keys) rfb.sendKey(keysym, code, true);
  for (const [keysym, code] of [...keys].reverse()) rfb.sendKey(keysym, code, false);
}

const SPECIAL_KEYS = {
  esc: [[KeyTable.XK_Escape, "Escape"]],
  tab: [[KeyTable.XK_Tab, "Tab"]],
  super: [[KeyTable.XK_Super_L, "MetaLeft"]],
  f11: [[KeyTable.XK_F11, "F11"]],
  "alt-tab": [[KeyTable.XK_Alt_L, "AltLeft"], [KeyTable.XK_Tab, "Tab"]],
  "alt-f4": [[KeyTable.XK_Alt_L, "AltLeft"], [KeyTable.XK_F4, "F4"]],
};

document.getElementById("special-key").addEventListener("change", (event) => {
  const key = event.target.value;
  event.target.value = "";
  if (key === "ctrl-alt-del") rfb.sendCtrlAltDel();
  else if (SPECIAL_KEYS[key]) chord(SPECIAL_KEYS[key]);
  rfb.focus();
});

const panel = document.getElementById("clipboard-panel");
document.getElementById("clipboard-toggle").addEventListener("click", (event) => {
  panel.hidden = !panel.hidden;
  event.target.setAttribute("aria-expanded", String(!panel.hidden));
});
document.getElementById("clipboard-send").addEventListener("click", () => {
  rfb.clipboardPasteFrom(clipboardText.value);
  rfb.focus();
});
document.getElementById("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen();
});
