// Small page behaviours; no inline scripts (the CSP forbids them).
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  const text = (source.value !== undefined ? source.value : source.textContent).trim();
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (error) {
    // Clipboard access needs a secure context; fall back to a selection.
    if (source.select) source.select();
    button.textContent = "Press Ctrl+C";
  }
});

// An SSH endpoint shows either the password or the key fields.
function showCredentialFields(form) {
  const checked = form.querySelector("input[name=credentials_type]:checked");
  if (!checked) return;
  const keyPair = checked.value === "KEY_PAIR";
  for (const name of ["private_key", "private_key_file", "passphrase", "generate_key_pair", "public_key"]) {
    const field = form.querySelector(`[data-field=${name}]`);
    if (field) field.hidden = !keyPair;
  }
  const password = form.querySelector("[data-field=password]");
  if (password) password.hidden = keyPair;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.endpoint-form[data-protocol=SSH]")) {
    showCredentialFields(form);
    form.addEventListener("change", () => showCredentialFields(form));
  }
});
