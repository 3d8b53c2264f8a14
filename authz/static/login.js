// Poll this browser's card transaction; reload the login page once the card has answered.
// The page works without this script: its "continue" button does the same by hand.
(function () {
  "use strict";
  var section = document.getElementById("card-login");
  var status = document.getElementById("status");
  if (!section || !status) { return; }
  var url = section.getAttribute("data-status-url");
  var messages = {  // translated on the page (data-rejected, data-expired)
    rejected: status.getAttribute("data-rejected"),
    expired: status.getAttribute("data-expired")
  };
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { setTimeout(poll, 3000); return; }
        if (body.status === "accepted") { window.location.reload(); return; }
        if (messages[body.status]) { status.textContent = messages[body.status]; return; }
        setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 2000);
})();
