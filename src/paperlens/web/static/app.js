// paperlens page behaviour: pick or create a user (a cookie with their id) and record
// like / dislike / save through the JSON API. No framework, no build step.
"use strict";

const COOKIE = "paperlens_user";

function setUser(id) {
  document.cookie = `${COOKIE}=${encodeURIComponent(id)}; path=/; max-age=31536000; samesite=lax`;
  window.location.reload();
}

function currentUser() {
  const match = document.cookie.match(new RegExp(`(?:^|; )${COOKIE}=([0-9]+)`));
  return match ? match[1] : null;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) {
    const detail = await response.json().catch(() => ({}));
    throw new Error(detail.detail ? JSON.stringify(detail.detail) : response.statusText);
  }
  return response.json();
}

async function toggle(button) {
  const user = currentUser();
  if (!user) return;
  const box = button.closest(".actions");
  const paper = box.dataset.paper;
  const kind = button.dataset.kind;
  const on = button.classList.contains("on");
  try {
    if (on) {
      await api("DELETE", `/users/${user}/interactions/${encodeURIComponent(paper)}?kind=${kind}`);
    } else {
      await api("POST", `/users/${user}/interactions`, { paper_id: paper, kind });
    }
  } catch (error) {
    alert(`Could not save: ${error.message}`);
    return;
  }
  // Like and dislike exclude each other (the API replaces one with the other).
  document.querySelectorAll(`.actions[data-paper="${CSS.escape(paper)}"]`).forEach((group) => {
    group.querySelectorAll(".act").forEach((b) => {
      let state = b.classList.contains("on");
      if (b.dataset.kind === kind) state = !on;
      else if (!on && ["like", "dislike"].includes(kind) && ["like", "dislike"].includes(b.dataset.kind)) state = false;
      b.classList.toggle("on", state);
      b.setAttribute("aria-pressed", String(state));
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const userForm = document.getElementById("user-form");
  if (userForm) {
    userForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const user = await api("POST", "/users", { name: userForm.elements.name.value });
        setUser(user.id);
      } catch (error) {
        alert(`Could not create the user: ${error.message}`);
      }
    });
  }
  const switchButton = document.getElementById("switch-user");
  const switchForm = document.getElementById("switch-form");
  if (switchButton) switchButton.addEventListener("click", () => { switchForm.hidden = !switchForm.hidden; });
  if (switchForm) switchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (/^[0-9]+$/.test(switchForm.elements.id.value)) setUser(switchForm.elements.id.value);
  });
  document.body.addEventListener("click", (event) => {
    const button = event.target.closest(".actions .act");
    if (button && !button.disabled) toggle(button);
  });
});
