// The playground: show the row's inputs or the batch's rows, as the "Send" choice says. Without
// this script both show, and the choice still decides what is sent.
(() => {
  function sync(panel) {
    const chosen = panel.querySelector("input[name=shape]:checked");
    if (!chosen) return;
    panel.querySelectorAll("[data-shape]").forEach((part) => {
      part.toggleAttribute("data-hidden", part.dataset.shape !== chosen.value);
    });
  }
  document.addEventListener("change", (event) => {
    if (event.target.matches(".playground input[name=shape]")) sync(event.target.closest(".playground"));
  });
  const all = () => document.querySelectorAll(".playground").forEach(sync);
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSettle", all);
  all();
})();
