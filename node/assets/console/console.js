// The credfed console's script: logs a department in by signing the node's challenge
// and signs records, with the department's key held in this browser only (WebCrypto
// Ed25519, imported non-extractable, kept in IndexedDB until logout). No build step,
// no dependencies (docs/console.md).
"use strict";
(function () {
  // PKCS#8 wrapping of a 32-byte Ed25519 seed (RFC 8410): WebCrypto imports private
  // keys only in this form.
  var PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
    0x70, 0x04, 0x22, 0x04, 0x20];

  function hexToBytes(h) {
    var out = new Uint8Array(h.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  }
  function bytesToHex(b) {
    return Array.prototype.map.call(new Uint8Array(b), function (x) {
      return ("0" + x.toString(16)).slice(-2);
    }).join("");
  }
  // The script signs only messages under one of the two tags it expects:
  // "credfed\0" || u8 len || name (docs/protocol.md, signatures).
  function hasTag(msg, name) {
    var pre = new TextEncoder().encode("credfed\0");
    var n = new TextEncoder().encode(name);
    if (msg.length < pre.length + 1 + n.length) return false;
    for (var i = 0; i < pre.length; i++) if (msg[i] !== pre[i]) return false;
    if (msg[pre.length] !== n.length) return false;
    for (var j = 0; j < n.length; j++) if (msg[pre.length + 1 + j] !== n[j]) return false;
    return true;
  }
  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute("content") : "";
  }
  function FieldError(field, message) { this.field = field; this.message = message; }

  function openDb() {
    return new Promise(function (resolve, reject) {
      var r = indexedDB.open("credfed-console", 1);
      r.onupgradeneeded = function () { r.result.createObjectStore("keys"); };
      r.onsuccess = function () { resolve(r.result); };
      r.onerror = function () { reject(r.error); };
    });
  }
  function withStore(mode, f) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction("keys", mode);
        var req = f(tx.objectStore("keys"));
        tx.oncomplete = function () { resolve(req && req.result); };
        tx.onerror = function () { reject(tx.error); };
      });
    });
  }
  function putKey(dept, key) { return withStore("readwrite", function (s) { return s.put(key, dept); }); }
  function getKey(dept) { return withStore("readonly", function (s) { return s.get(dept); }); }
  function clearKeys() { return withStore("readwrite", function (s) { return s.clear(); }); }

  function importKey(text) {
    var t = text.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(t)) {
      return Promise.reject(new FieldError("key",
        "key: expected a department signing key file (64 hex characters)"));
    }
    var der = new Uint8Array(48);
    der.set(PKCS8_PREFIX);
    der.set(hexToBytes(t), 16);
    return crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for], .form-error, .form-ok").forEach(function (e) {
      e.textContent = "";
    });
  }
  function showError(form, err) {
    var field = err && err.field;
    var message = (err && err.message) || String(err);
    var slot = null;
    if (field) {
      // The API names fields by their path in the request ("body.subject.uscc"); the
      // forms' fields are named by their path in the body ("subject.organisation.uscc").
      var f = String(field).replace(/^body\./, "");
      var candidates = [field, f, f.split(".").pop()];
      for (var i = 0; i < candidates.length && !slot; i++) {
        slot = form.querySelector('[data-error-for="' + CSS.escape(candidates[i]) + '"]');
      }
    }
    if (!slot) slot = form.querySelector(".form-error");
    if (slot) slot.textContent = message;
  }
  function post(url, body, json) {
    var headers = { "X-CSRF-Token": meta("csrf") };
    headers["Content-Type"] = json ? "application/json" : "application/x-www-form-urlencoded";
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: body })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) throw new FieldError(j.field, j.message || ("the node answered " + r.status));
          return j;
        });
      });
  }
  function sign(key, messageHex, tagName) {
    var msg = hexToBytes(messageHex);
    if (!hasTag(msg, tagName)) {
      return Promise.reject(new FieldError(null,
        "refused to sign: the node asked for a signature that is not a " + tagName));
    }
    return crypto.subtle.sign({ name: "Ed25519" }, key, msg).then(bytesToHex);
  }

  function setUpLogin(form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var dept = form.elements.department.value.trim();
      var file = form.elements.key.files[0];
      if (!file) { showError(form, new FieldError("key", "key: choose your key file")); return; }
      var key;
      file.text().then(importKey).then(function (k) {
        key = k;
        return post("/console/login/challenge", new URLSearchParams({ department: dept }));
      }).then(function (c) {
        return sign(key, c.message, "console-login-sig").then(function (sig) {
          return post("/console/login", new URLSearchParams({
            department: dept, challenge: c.challenge, signature: sig }));
        });
      }).then(function (done) {
        return putKey(dept, key).then(function () { window.location.assign(done.next || "/console/"); });
      }).catch(function (e) { showError(form, e); });
    });
  }

  function setUpSigning(form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var dept = meta("department");
      var prepared;
      post(form.getAttribute("action"), new URLSearchParams(new FormData(form))).then(function (p) {
        prepared = p;
        return getKey(dept);
      }).then(function (key) {
        if (!key) throw new FieldError(null, "the signing key is not in this browser any more: log out and in again");
        return sign(key, prepared.message, "body-sig");
      }).then(function (sig) {
        return post("/console/sign/submit", JSON.stringify({ body: prepared.body, signature: sig }), true);
      }).then(function (receipt) {
        var ok = form.querySelector(".form-ok");
        if (ok) ok.textContent = "✓ " + receipt.region + "#" + receipt.seq + " " + String(receipt.hash).slice(0, 16);
      }).catch(function (e) { showError(form, e); });
    });
  }

  function setUpVerify(form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var file = form.elements.file.files[0];
      if (!file) { showError(form, new FieldError("file", "file: choose an evidence file")); return; }
      file.arrayBuffer().then(function (bytes) {
        return fetch(form.getAttribute("action"), {
          method: "POST", credentials: "same-origin",
          headers: { "X-CSRF-Token": meta("csrf"), "Content-Type": "application/octet-stream" },
          body: bytes
        }).then(function (r) {
          return r.json().then(function (j) {
            if (!r.ok) throw new FieldError(j.field, j.message || ("the node answered " + r.status));
            return j;
          });
        });
      }).then(function (v) {
        var out = document.getElementById("verdict");
        out.hidden = false;
        out.querySelector(".verdict").className = "verdict " + (v.status === "verified" ? "good" : "bad");
        out.querySelector(".status").textContent = v.headline;
        var ul = out.querySelector(".lines");
        ul.textContent = "";
        v.lines.concat(v.failures).forEach(function (line) {
          var li = document.createElement("li");
          li.textContent = line;
          ul.appendChild(li);
        });
      }).catch(function (e) { showError(form, e); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var verify = document.getElementById("verify");
    if (verify) setUpVerify(verify);
    var login = document.getElementById("login");
    if (login) setUpLogin(login);
    document.querySelectorAll("form[data-sign]").forEach(setUpSigning);
    var logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("submit", function (ev) {
        ev.preventDefault();
        clearKeys().catch(function () {}).then(function () { logout.submit(); });
      });
    }
  });
})();
