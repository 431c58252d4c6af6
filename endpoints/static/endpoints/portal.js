// Copy buttons: <button data-copy="#selector"> copies the text (or value) of the element it names.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API refused (plain http, old browser): select the text for Ctrl+C instead.
    if (source.select) source.select();
    else window.getSelection().selectAllChildren(source);
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// The endpoint page shows a deployment in progress; once it finishes, reload so the live version,
// the URL, the history and the Deploy button all show the new state.
document.addEventListener("htmx:afterSettle", () => {
  const finished = document.querySelector("[data-reload-when-finished] .steps-panel:not([hx-trigger])");
  if (finished) setTimeout(() => window.location.reload(), 1500);
});

// A form that changes what serves asks first, saying what changes: <form data-confirm="...">.
// "{version}" in the question is the version chosen in the form; with a traffic share below 100,
// data-confirm-canary is asked instead, its "{share}" the share. (htmx forms use hx-confirm.)
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (!form) return;
  const version = form.querySelector("select[name=model_version]");
  const share = form.querySelector("[name=traffic_percent]");
  let question = form.dataset.confirm;
  if (share && share.value && Number(share.value) < 100 && form.dataset.confirmCanary) {
    question = form.dataset.confirmCanary.replaceAll("{share}", share.value);
  }
  if (version && version.selectedOptions.length) {
    question = question.replaceAll("{version}", version.selectedOptions[0].textContent.split(" · ")[0]);
  }
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // Answered here: the server asks again on a page only when no dialog could (no JavaScript).
  let answered = form.querySelector("input[name=confirmed]");
  if (!answered) {
    answered = Object.assign(document.createElement("input"), { type: "hidden", name: "confirmed" });
    form.append(answered);
  }
  answered.value = "1";
});

// A table too wide for the window scrolls sideways (see portal.css); it then takes the keyboard's
// focus too, so it can be scrolled with the arrow keys.
function focusableScrollingTables() {
  for (const table of document.querySelectorAll("table.table")) {
    if (table.scrollWidth > table.clientWidth + 1) table.tabIndex = 0;
    else table.removeAttribute("tabindex");
  }
}
document.addEventListener("DOMContentLoaded", focusableScrollingTables);
document.addEventListener("htmx:afterSettle", focusableScrollingTables);
window.addEventListener("resize", focusableScrollingTables);
