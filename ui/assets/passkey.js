// Warrant passkeys: the browser side of the WebAuthn ceremonies. Plain script, no
// framework, loaded from /assets (the pages' CSP allows no inline script).
//
// - #passkey-signin (button, data-csrf, data-next): sign in with a discoverable passkey.
// - #passkey-register (form, data-csrf; field #passkey-name): add a passkey to the account.
// - #setup-form (form, data-csrf, data-token; #setup-name, #setup-email): first admin.
// - button.approval-passkey (data-csrf, data-id, data-decision): decide a pending
//   approval of a critical call, confirmed with one of the person's passkeys.
// Errors go to #passkey-error; on success the page goes where the server says.
(function () {
  "use strict";

  function toBytes(b64url) {
    var b64 = String(b64url).replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function showError(message) {
    var box = document.getElementById("passkey-error");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    var box = document.getElementById("passkey-error");
    if (box) { box.textContent = ""; box.hidden = true; }
  }

  function supported() {
    return window.PublicKeyCredential && navigator.credentials &&
      typeof navigator.credentials.create === "function";
  }

  async function postJson(url, csrf, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    });
    var data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      throw new Error((data && data.error) || ("The server answered " + response.status + "."));
    }
    return data;
  }

  // The server's creation options (base64url strings) as the browser wants them.
  function creationOptions(options) {
    var pk = options.publicKey;
    pk.challenge = toBytes(pk.challenge);
    pk.user.id = toBytes(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = options.publicKey;
    pk.challenge = toBytes(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }

  function registrationJson(credential) {
    var response = credential.response;
    var extensions = credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
    var out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toB64url(response.attestationObject),
        clientDataJSON: toB64url(response.clientDataJSON)
      },
      extensions: {}
    };
    if (response.getTransports) out.response.transports = response.getTransports();
    if (extensions.credProps) out.extensions.credProps = extensions.credProps;
    return out;
  }

  function assertionJson(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toB64url(response.authenticatorData),
        clientDataJSON: toB64url(response.clientDataJSON),
        signature: toB64url(response.signature),
        userHandle: response.userHandle ? toB64url(response.userHandle) : null
      },
      extensions: {}
    };
  }

  // Words for the browser's own refusals.
  function explain(error) {
    if (error && error.name === "NotAllowedError") {
      return "The passkey prompt was closed or timed out. Try again.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This device already holds a passkey for this account.";
    }
    if (error && error.name === "SecurityError") {
      return "Passkeys work only on Warrant's own address. Open the page through its public URL.";
    }
    return (error && error.message) || "The passkey did not work. Try again.";
  }

  function busy(control, on) {
    if (control) control.disabled = on;
  }

  async function signIn(button) {
    clearError();
    busy(button, true);
    try {
      var csrf = button.dataset.csrf;
      var options = await postJson("/auth/passkey/login/start", csrf, {});
      var credential = await navigator.credentials.get(requestOptions(options));
      var done = await postJson("/auth/passkey/login/finish", csrf, {
        credential: assertionJson(credential),
        next: button.dataset.next || "/account"
      });
      window.location.assign(done.redirect || "/account");
    } catch (error) {
      showError(explain(error));
      busy(button, false);
    }
  }

  async function register(form) {
    clearError();
    var button = form.querySelector("button[type=submit]");
    busy(button, true);
    try {
      var csrf = form.dataset.csrf;
      var nameField = document.getElementById("passkey-name");
      var options = await postJson("/account/passkeys/register/start", csrf, {
        name: nameField ? nameField.value : ""
      });
      var credential = await navigator.credentials.create(creationOptions(options));
      var done = await postJson("/account/passkeys/register/finish", csrf, {
        credential: registrationJson(credential)
      });
      window.location.assign(done.redirect || "/account");
    } catch (error) {
      showError(explain(error));
      busy(button, false);
    }
  }

  async function setup(form) {
    clearError();
    var button = form.querySelector("button[type=submit]");
    busy(button, true);
    try {
      var csrf = form.dataset.csrf;
      var token = form.dataset.token;
      var options = await postJson("/setup/passkey/start", csrf, {
        token: token,
        name: document.getElementById("setup-name").value,
        email: document.getElementById("setup-email").value
      });
      var credential = await navigator.credentials.create(creationOptions(options));
      var done = await postJson("/setup/passkey/finish", csrf, {
        token: token,
        credential: registrationJson(credential)
      });
      window.location.assign(done.redirect || "/account");
    } catch (error) {
      showError(explain(error));
      busy(button, false);
    }
  }

  async function confirmApproval(button) {
    clearError();
    busy(button, true);
    try {
      var csrf = button.dataset.csrf;
      var base = "/approvals/" + encodeURIComponent(button.dataset.id) + "/passkey/";
      var options = await postJson(base + "start", csrf, {});
      var credential = await navigator.credentials.get(requestOptions(options));
      var done = await postJson(base + "finish", csrf, {
        credential: assertionJson(credential),
        decision: button.dataset.decision
      });
      window.location.assign(done.redirect || "/approvals");
    } catch (error) {
      showError(explain(error));
      busy(button, false);
    }
  }

  function ready() {
    var approvalButtons = document.querySelectorAll("button.approval-passkey");
    var signInButton = document.getElementById("passkey-signin");
    var registerForm = document.getElementById("passkey-register");
    var setupForm = document.getElementById("setup-form");
    if (!supported()) {
      if (signInButton || registerForm || setupForm || approvalButtons.length) {
        showError("This browser does not support passkeys.");
      }
      return;
    }
    if (signInButton) {
      signInButton.addEventListener("click", function () { signIn(signInButton); });
    }
    if (registerForm) {
      registerForm.addEventListener("submit", function (event) {
        event.preventDefault();
        register(registerForm);
      });
    }
    approvalButtons.forEach(function (button) {
      button.addEventListener("click", function () { confirmApproval(button); });
    });
    if (setupForm) {
      setupForm.addEventListener("submit", function (event) {
        event.preventDefault();
        if (setupForm.reportValidity && !setupForm.reportValidity()) return;
        setup(setupForm);
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
