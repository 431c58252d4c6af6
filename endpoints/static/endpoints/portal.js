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
