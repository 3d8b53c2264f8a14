// Poll this browser's card transaction; reload the login page once the card has answered.
(function () {
  "use strict";
  var section = document.getElementById("card-login");
  var status = document.getElementById("status");
  if (!section || !status) { return; }
  var url = section.getAttribute("data-status-url");
  var messages = {
    rejected: "カードの応答を受け付けられませんでした。ページを再読み込みしてやり直してください。 / The card response was refused. Reload the page to start again.",
    expired: "有効期限が切れました。ページを再読み込みしてください。 / This login expired. Reload the page."
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
