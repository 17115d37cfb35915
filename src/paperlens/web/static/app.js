// paperlens page behaviour: like / dislike / save post their form with fetch, so the page keeps
// its place. Every other form (sign in, sign out, collections) is a plain post and a redirect.
// No framework, no build step; without JavaScript the buttons post and come back.
"use strict";

function showMarks(paper, kinds) {
  document.querySelectorAll(`.actions[data-paper="${CSS.escape(paper)}"] .act`).forEach((button) => {
    const on = kinds.includes(button.dataset.kind);
    button.classList.toggle("on", on);
    button.setAttribute("aria-pressed", String(on));
  });
}

async function mark(form, button) {
  const body = new URLSearchParams(new FormData(form));
  body.set(button.name, button.value);
  const response = await fetch(form.action, { method: "POST", body, headers: { Accept: "application/json" } });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    alert(`Could not save: ${answer.detail || response.statusText}`);
    return;
  }
  // The server says which marks the paper now has (like and dislike replace each other).
  showMarks(form.dataset.paper, answer.kinds);
}

document.addEventListener("DOMContentLoaded", () => {
  document.body.addEventListener("submit", (event) => {
    const form = event.target.closest("form.actions");
    const button = event.submitter;
    if (!form || !button || button.disabled) return;
    event.preventDefault();
    mark(form, button);
  });
});
