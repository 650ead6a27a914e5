// The terminal page: xterm.js on one side, the session's WebSocket on the other.
// Binary frames carry terminal bytes both ways; text frames carry JSON control
// messages (resize from here; status and host key from the server).
import { Terminal } from "../vendor/xterm/lib/xterm.mjs";
import { FitAddon } from "../vendor/xterm-addon-fit/lib/addon-fit.mjs";

const container = document.getElementById("terminal");
const statusLine = document.getElementById("status");
const hostKeyLine = document.getElementById("host-key");
const reconnectForm = document.getElementById("reconnect-form");
const baseTitle = document.title;
const encoder = new TextEncoder();
const FONT_KEY = "terminal-font-size";

const terminal = new Terminal({
  cursorBlink: true,
  scrollback: Number(container.dataset.scrollback),
  fontSize: Number(localStorage.getItem(FONT_KEY)) || 15,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  macOptionIsMeta: true,
  rightClickSelectsWord: true,
});
const fit = new FitAddon();
terminal.loadAddon(fit);
terminal.open(container);
fit.fit();
terminal.focus();

const STATES = {
  connecting: "connecting to device…",
  "device-connected": "device connected",
  authenticating: "authenticating",
  connected: "connected",
};

function showStatus(state, message) {
  const text = state === "disconnected" ? `disconnected: ${message}` : message || STATES[state] || state;
  statusLine.textContent = text;
  statusLine.className = `status ${state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "pending"}`;
  document.title = `[${state === "disconnected" ? "disconnected" : STATES[state] || state}] ${baseTitle}`;
  if (state === "disconnected" && reconnectForm) reconnectForm.hidden = false;
}

const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const query = new URLSearchParams({
  launch: params.get("launch") || "",
  cols: terminal.cols,
  rows: terminal.rows,
});
const socket = new WebSocket(`${scheme}://${location.host}/ws/sessions/${container.dataset.operation}/?${query}`);
socket.binaryType = "arraybuffer";
let ended = false;

socket.addEventListener("open", () => {
  // The launch token is single use: keep it out of the address bar and history.
  history.replaceState(null, "", location.pathname);
});

socket.addEventListener("message", (event) => {
  if (typeof event.data !== "string") {
    terminal.write(new Uint8Array(event.data));
    return;
  }
  const message = JSON.parse(event.data);
  if (message.type === "status") {
    if (message.state === "disconnected") ended = true;
    showStatus(message.state, message.message);
  } else if (message.type === "host-key") {
    hostKeyLine.hidden = false;
    hostKeyLine.textContent = message.verified
      ? `host key ${message.fingerprint} (verified)`
      : `unverified host key ${message.fingerprint}${message.saved ? " (saved)" : ""}`;
  }
});

socket.addEventListener("close", () => {
  if (!ended) showStatus("disconnected", "the connection to the server was lost");
  terminal.options.cursorBlink = false;
});

function send(data) {
  if (socket.readyState === WebSocket.OPEN) socket.send(data);
}

terminal.onData((data) => send(encoder.encode(data)));
// Mouse reports in the legacy encoding are bytes, not UTF-8 text.
terminal.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
terminal.onResize(({ cols, rows }) => send(JSON.stringify({ type: "resize", cols, rows })));
new ResizeObserver(() => fit.fit()).observe(container);

async function copySelection() {
  if (terminal.hasSelection()) await navigator.clipboard.writeText(terminal.getSelection());
}

async function paste() {
  // term.paste() wraps the text in bracketed-paste markers when the program asked for them.
  terminal.paste(await navigator.clipboard.readText());
  terminal.focus();
}

terminal.attachCustomKeyEventHandler((event) => {
  if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
  if (event.code === "KeyC") {
    copySelection();
    return false;
  }
  if (event.code === "KeyV") {
    paste();
    event.preventDefault();
    return false;
  }
  return true;
});
terminal.onSelectionChange(() => {
  if (terminal.hasSelection()) copySelection().catch(() => {});
});

document.getElementById("copy").addEventListener("click", () => copySelection());
document.getElementById("paste").addEventListener("click", () => paste());
for (const [id, step] of [["font-smaller", -1], ["font-larger", 1]]) {
  document.getElementById(id).addEventListener("click", () => {
    const size = Math.min(32, Math.max(8, terminal.options.fontSize + step));
    terminal.options.fontSize = size;
    localStorage.setItem(FONT_KEY, String(size));
    fit.fit();
    terminal.focus();
  });
}
