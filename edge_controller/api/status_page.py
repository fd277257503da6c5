"""A small status page per home: wallet, offers, trades, ledger height and USB charging
(ports, sessions, the pairing code of an unknown phone) at a glance.

The page itself is public and holds no data; its script reads the API with the token
given in the URL (`/?token=...`, as the demo prints it) or typed in once and kept in the
browser's local storage, and refreshes from the WebSocket.
"""

from __future__ import annotations

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
 #login{display:none} .muted{color:#7a8a96}
</style></head><body>
<div id="login"><p>Enter this home's API token:</p><input id="tok" size="50">
<button onclick="saveToken()">Open</button></div>
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
<section id="usb" style="display:none"><h2>USB charging</h2>
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
const params = new URLSearchParams(location.search);
if (params.get("token")) localStorage.setItem("ep2p-token", params.get("token"));
let token = localStorage.getItem("ep2p-token");
function saveToken(){localStorage.setItem("ep2p-token", document.getElementById("tok").value);
 location.reload();}
const money = m => (m/1000).toFixed(3);
const time = t => new Date(t).toLocaleTimeString();
const short = s => s ? s.slice(0, 10) + "…" : "";
let currency = "";
async function api(path){
 const r = await fetch("/api/v1/" + path, {headers: {Authorization: "Bearer " + token}});
 if (r.status === 401){document.getElementById("login").style.display="block";
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
  short(status.account) + (status.ledger.synced ? " · in sync" : " · catching up");
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
  + "/api/v1/ws?token=" + encodeURIComponent(token));
 ws.onmessage = e => { const m = JSON.parse(e.data); if (m.event !== "telemetry") soon(); };
 ws.onclose = () => setTimeout(connect, 3000);
}
if (!token){document.getElementById("login").style.display="block";
 document.getElementById("main").style.display="none";}
else {refresh(); refreshUsb(); connect(); setInterval(refresh, 15000);
 setInterval(refreshUsb, 5000);}
</script></body></html>
"""


async def status_page(request: web.Request) -> web.Response:
    """The status page (no data in it: its script asks the API with the home's token)."""
    return web.Response(text=PAGE, content_type="text/html")
