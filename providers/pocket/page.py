"""The pages Pocket's bridge shows: in the app (pocket.js asks for the customer's token and the
page posts it to us), outside it (how to open it in Pocket), the QR code, and plain notices.

Every word comes from `BridgeWords` (the bot's gettext); everything placed in HTML is
escaped, and what goes into the script is JSON with `<` escaped, so no text can end it.
"""

from __future__ import annotations

import json
from html import escape

import segno

from providers.base import Ack, BridgeWords

STYLE = (
    "body{font-family:system-ui,-apple-system,sans-serif;max-width:28em;margin:0 auto;"
    "padding:1.5em 1em;line-height:1.45;color:#1b1b1b}"
    "h1{font-size:1.3em}.box{padding:1em;border-radius:.6em;background:#f3f5f8}"
    ".bad{background:#fdecec}.button{display:block;text-align:center;padding:.85em;margin:1em 0;"
    "border-radius:.6em;background:#1565c0;color:#fff;text-decoration:none;font-size:1.05em;"
    "border:0;width:100%;box-sizing:border-box}.link{display:block;text-align:center;margin:1em 0}"
    "input{width:100%;box-sizing:border-box;padding:.5em;font-size:.9em}"
    "img.qr{display:block;width:100%;max-width:18em;margin:1em auto;image-rendering:pixelated}"
)
GET_TOKEN_WITHIN_MS = 10_000  # no answer from the app by then: the page is not inside Pocket

APP_SCRIPT = """(function () {
  var W = %(words)s;
  var QR = %(qr)s;
  var status = document.getElementById("status");
  function show(text, ok) {
    status.textContent = text;
    status.className = ok ? "box" : "box bad";
    status.hidden = false;
  }
  function outside() {
    if (QR) { location.replace(QR); return; }  // mode "both": outside Pocket, the QR code
    status.hidden = true;
    document.getElementById("outside").hidden = false;
  }
  function post(data) {
    fetch(location.href, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({accessToken: data.accessToken, refreshToken: data.refreshToken || ""})
    }).then(function (r) {
      return r.json().then(function (b) {
        if (b.follow) { location.href = b.follow; return; }
        show(b.text, b.ok === true);
      });
    }).catch(function () { show(W.unavailable, false); });
  }
  function start() {
    var P = window.Pocket;
    if (!window.PocketMobile || !P || typeof P.getToken !== "function") { outside(); return; }
    var done = false;
    var timer = setTimeout(function () { if (!done) { done = true; outside(); } }, %(within)d);
    P.getToken({}, function (params) {
      if (done) { return; }
      done = true;
      clearTimeout(timer);
      if (!params || params.error || !params.data || !params.data.accessToken) {
        show(W.refused, false);
        return;
      }
      post(params.data);
    });
  }
  document.getElementById("copy").addEventListener("click", function () {
    var field = document.getElementById("link");
    field.select();
    var copied = function () { document.getElementById("copy").textContent = W.copied; };
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(copied, function () {
        document.execCommand("copy");
        copied();
      });
    } else { document.execCommand("copy"); copied(); }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();"""


def _page(words: BridgeWords, body: str, *, status: int = 200, script: str = "") -> Ack:
    html = (
        f'<!doctype html><html lang="{escape(words.lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(words.title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(words.title)}</h1>{body}{script}</body></html>"
    )
    return Ack(status, "text/html; charset=utf-8", html.encode())


def _script_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def app_page(words: BridgeWords, *, script_url: str, page_url: str, qr_url: str | None) -> Ack:
    """The seed's flow: pocket.js before </body>, getToken on DOM ready, the tokens posted
    back here. Outside Pocket (no PocketMobile channel, or no answer) the page goes on to the
    QR page where that mode is on (mode "both"), else it says how to open it in Pocket."""
    script = APP_SCRIPT % {
        "words": _script_json({k: getattr(words, k) for k in ("refused", "unavailable", "copied")}),
        "within": GET_TOKEN_WITHIN_MS,
        "qr": _script_json(qr_url),
    }
    body = (
        f'<p id="status" class="box">{escape(words.opening)}</p>'
        f'<div id="outside" hidden><p class="box">{escape(words.outside)}</p>'
        f'<input id="link" readonly value="{escape(page_url)}">'
        f'<button id="copy" class="button" type="button">{escape(words.copy_link)}</button></div>'
    )
    scripts = f'<script src="{escape(script_url)}"></script><script>{script}</script>'
    return _page(words, body, script=scripts)


def qr_page(words: BridgeWords, *, qr: str, deeplink: str | None, check_url: str) -> Ack:
    """Pocket's v2 invoice: its QR code as an image (scanned with Pocket on another device) and
    a button to its deeplink (Pocket on this phone)."""
    try:
        src = segno.make(qr, error="m").png_data_uri(scale=8, border=4)
        image = f'<img class="qr" id="qr" alt="{escape(words.scan)}" src="{src}">'
    except segno.DataOverflowError:  # more than a QR code holds: the deeplink still works
        image = ""
    button = (
        f'<a class="button" id="open" href="{escape(deeplink)}">{escape(words.open_app)}</a>'
        if deeplink
        else ""
    )
    body = (
        f'<p class="box">{escape(words.scan)}</p>'
        f"{image}{button}"
        f'<a class="link" id="check" href="{escape(check_url)}">{escape(words.check)}</a>'
    )
    return _page(words, body)


def notice(words: BridgeWords, text: str, *, status: int = 200) -> Ack:
    css = "box" if status < 400 else "box bad"
    return _page(words, f'<p id="status" class="{css}">{escape(text)}</p>', status=status)


def posted(text: str, *, ok: bool, status: int = 200, follow: str | None = None) -> Ack:
    """The answer to the page's post: what to show, read by APP_SCRIPT, and where to go on
    (the QR page, when the order's invoice is a QR invoice)."""
    said: dict[str, object] = {"ok": ok, "text": text}
    if follow:
        said["follow"] = follow
    body = json.dumps(said, ensure_ascii=False).encode()
    return Ack(status, "application/json; charset=utf-8", body)
