// strongroom dashboard: small progressive enhancements; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // copy the one-time token to the clipboard
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent || "").then(
          () => { button.textContent = "Copied"; },
          () => { button.textContent = "Select and copy the token"; },
        );
      }
    });
  }
});
