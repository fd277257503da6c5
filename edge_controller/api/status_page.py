"""A small status page per home: wallet, offers, trades, ledger height and USB charging
(ports, sessions, the pairing code of an unknown phone) at a glance.

The page itself is public and holds no data; its script asks for the token, keeps it for
the browser tab only (session storage: never in a URL, gone when the tab closes), sends it
in the `Authorization` header and as the WebSocket's first message, and refreshes from the
WebSocket. Its script and style are inline and allowed by their hashes in the page's
Content-Security-Policy: nothing else runs, loads or frames it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from aiohttp import web

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Energy P2P</title>
<style>
 body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2b36;background:#f6f8fa}
 h1{font-size:1.3rem;margin:0 0 .2rem} .sub{color:#5b6b78;margin-bottom:1rem}
 .cards{display:flex;gap:1rem;flex-wrap:wrap}
 .card{background:#fff;border-radius:10px;padding:1rem 1.2rem;box-shadow:0 1px 3px #0002;
       min-width:10rem} .big{font-size:1.6rem;font-weight:600}
 table{border-collapse:collapse;width:100%;background:#fff;margin-top:.5rem;
       box-shadow:0 1px 3px #0002;border-radius:10px;overflow:hidden}
 th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #eef1f4;font-size:.9rem}
 th{background:#eef3f7} h2{font-size:1.05rem;margin-top:1.4rem}
 #login{display:none} .muted{color:#7a8a96} .hidden{display:none}
</style></head><body>
<form id="login"><p><label for="tok">Enter this home's API token (kept for this tab only):
</label></p><input id="tok" type="password" size="50" autocomplete="off">
<button type="submit">Open</button></form>
<main id="main">
<h1 id="name">Energy P2P</h1><div class="sub" id="sub">connecting…</div>
<div class="cards">
 <div class="card"><div class="muted">Balance</div><div class="big" id="balance">&ndash;</div></div>
 <div class="card"><div class="muted">In escrow</div><div class="big" id="escrow">
  &ndash;</div></div>
 <div class="card"><div class="muted">Energy sold / bought</div>
  <div class="big" id="energy">&ndash;</div></div>
 <div class="card"><div class="muted">Ledger height</div><div class="big" id="height">&ndash;</div>
 </div>
 <div class="card"><div class="muted">Peers online</div><div class="big" id="peers">
  &ndash;</div></div>
</div>
<h2>Open offers</h2><table><thead><tr><th>Seller</th><th>Resource</th><th>Quantity</th>
<th>Price /kWh</th><th>Window</th><th>Status</th></tr></thead><tbody id="offers"></tbody></table>
<section id="usb" class="hidden"><h2>USB charging</h2>
<div class="muted" id="usb-hub"></div>
<table><thead><tr><th>Port</th><th>Phone</th><th>Pairing code</th><th>Power</th>
<th>Session</th><th>Delivered / bought</th></tr></thead><tbody id="usb-ports"></tbody></table>
<table><thead><tr><th>Started</th><th>Port</th><th>Phone</th><th>Delivered</th><th>Paid</th>
<th>Refunded</th><th>Ended</th></tr></thead><tbody id="usb-sessions"></tbody></table>
</section>
<h2>Trades</h2><table><thead><tr><th>Role</th><th>Energy</th><th>Price /kWh</th><th>Cost</th>
<th>Window</th><th>Status</th></tr></thead><tbody id="trades"></tbody></table>
</main>
<script>
// Earlier pages kept the token for good and took it from the URL: forget both.
localStorage.removeItem("ep2p-token");
if (location.search) history.replaceState(null, "", location.pathname);
let token = sessionStorage.getItem("ep2p-token");
document.getElementById("login").addEventListener("submit", e => {e.preventDefault();
 sessionStorage.setItem("ep2p-token", document.getElementById("tok").value); location.reload();});
const money = m => (m/1000).toFixed(3);
const time = t => new Date(t).toLocaleTimeString();
const short = s => s ? s.slice(0, 10) + "…" : "";
let currency = "";
async function api(path){
 const r = await fetch("/api/v1/" + path, {headers: {Authorization: "Bearer " + token}});
 if (r.status === 401){sessionStorage.removeItem("ep2p-token");
  document.getElementById("login").style.display="block";
  document.getElementById("main").style.display="none"; throw new Error("unauthorized");}
 return r.json();
}
function row(cells){const tr=document.createElement("tr");
 for (const c of cells){const td=document.createElement("td"); td.textContent=c;
 tr.appendChild(td);} return tr;}
async function refresh(){
 const [status, wallet, offers, trades] = await Promise.all(
  [api("status"), api("wallet"), api("offers"), api("trades")]);
 currency = status.community.currency;
 document.getElementById("name").textContent = status.name;
 document.getElementById("sub").textContent = status.community.name + " · " +
  short(status.account) + (status.ledger.synced === null ? " · sync unknown" :
  status.ledger.synced ? " · in sync" : " · catching up") +
  (status.storage.ok ? "" : " · storage: " + status.storage.error.message);
 document.getElementById("balance").textContent = money(wallet.balance) + " " + currency;
 document.getElementById("escrow").textContent = money(wallet.escrow) + " " + currency;
 document.getElementById("energy").textContent =
  (wallet.energy_sold_wh/1000).toFixed(2) + " / " + (wallet.energy_bought_wh/1000).toFixed(2)
  + " kWh";
 document.getElementById("height").textContent = status.ledger.height;
 document.getElementById("peers").textContent = status.peers.length;
 const o = document.getElementById("offers"); o.replaceChildren();
 for (const x of offers.offers) o.appendChild(row([short(x.seller), x.resource,
  x.remaining + " " + x.unit, money(x.price), time(x.start) + "\u2013" + time(x.end), x.status]));
 const t = document.getElementById("trades"); t.replaceChildren();
 for (const x of trades.trades.slice(0, 30)) t.appendChild(row([x.role, x.energy_wh + " Wh",
  money(x.price), money(x.cost), time(x.start) + "\u2013" + time(x.end), x.status]));
}
async function refreshUsb(){
 const r = await fetch("/api/v1/usb", {headers: {Authorization: "Bearer " + token}});
 if (!r.ok) return;  // no usb: section in this home's edge.yaml
 const usb = await r.json();
 document.getElementById("usb").style.display = "block";
 const problems = [usb.hub.error, usb.meter.error].filter(e => e).map(e => e.message);
 document.getElementById("usb-hub").textContent = usb.hub.description + " · " +
  usb.meter.description + (problems.length ? " · " + problems.join("; ") : "");
 const wh = m => (m/1000).toFixed(2) + " Wh";
 const p = document.getElementById("usb-ports"); p.replaceChildren();
 for (const x of usb.ports){ const a = x.attached, s = x.session;
  p.appendChild(row([x.port + (x.enabled ? "" : " (disabled)"),
   a ? (a.identity.product || a.identity.key) : "\u2013",
   a && a.pairing_code ? a.pairing_code : "",
   x.powered ? (x.power_mw/1000).toFixed(1) + " W" : "off",
   s ? s.state : (x.error ? x.error.message : ""),
   s ? wh(s.delivered_mwh) + " / " + wh(s.bought_mwh) : ""])); }
 const t = document.getElementById("usb-sessions"); t.replaceChildren();
 for (const x of usb.sessions.slice(0, 10)) t.appendChild(row([time(x.started), x.port,
  x.phone, wh(x.delivered_mwh), x.paid === null ? "" : money(x.paid),
  x.refunded === null ? "" : money(x.refunded), x.ended ? x.reason : x.state]));
}
let pending = null;
function soon(){ if (!pending) pending = setTimeout(() => {pending = null; refresh();
 refreshUsb();}, 300); }
function connect(){
 const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host
  + "/api/v1/ws");
 ws.onopen = () => ws.send(JSON.stringify({token: token}));
 ws.onmessage = e => { const m = JSON.parse(e.data); if (m.event !== "telemetry") soon(); };
 ws.onclose = () => setTimeout(connect, 3000);
}
if (!token){document.getElementById("login").style.display="block";
 document.getElementById("main").style.display="none";}
else {refresh(); refreshUsb(); connect(); setInterval(refresh, 15000);
 setInterval(refreshUsb, 5000);}
</script></body></html>
"""


def _inline_hash(tag: str) -> str:
    """The CSP source allowing the one inline `<tag>` of the page by its SHA-256."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", PAGE, re.DOTALL)
    assert match is not None, tag
    digest = hashlib.sha256(match.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_inline_hash('script')}; "
    f"style-src {_inline_hash('style')}; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


async def status_page(request: web.Request) -> web.Response:
    """The status page (no data in it: its script asks the API with the home's token)."""
    # The WebSocket on this same host: 'self' covers it in current browsers, older ones
    # need its ws:/wss: origin named.
    headers = dict(SECURITY_HEADERS)
    if _HOST.fullmatch(request.host):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "connect-src 'self'", f"connect-src 'self' ws://{request.host} wss://{request.host}"
        )
    return web.Response(text=PAGE, content_type="text/html", headers=headers)
