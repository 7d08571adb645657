/* "View logs" on a job's page opens the log view in a popup window; without
   JavaScript the link opens it in a new tab. */
(function () {
  "use strict";
  document.querySelectorAll("a[data-cm-popup]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var url = link.href + (link.href.indexOf("?") === -1 ? "?" : "&") + "_popup=1";
      var popup = window.open(url, link.target, "width=960,height=720,resizable=yes,scrollbars=yes");
      if (popup) { popup.focus(); } else { window.location.href = link.href; }
    });
  });
})();
