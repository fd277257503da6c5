/*
 * Energy P2P card for Home Assistant dashboards (type: custom:energy-p2p-card).
 *
 * A dependency-free custom element: the integration serves this file and loads it on
 * every page, so no build step and no separate install. Its data comes from the
 * integration's `energy_p2p/subscribe` WebSocket command, in the edge controller's API
 * units: money in milli-units of the community currency, prices in milli-units per kWh,
 * energy in Wh (USB: mWh), times in UTC milliseconds.
 *
 * Options:
 *   entry_id:   one home's config entry id (default: every Energy P2P home)
 *   home:       one home by its name in Home Assistant or its node id, where the entry id
 *               is not known (a dashboard written for the demo's homes, say)
 *   show:       sections to show, any of wallet, offers, trades, usb, market (default: all)
 *   usb_buy_wh: energy the USB Buy button buys, in Wh (default 5)
 *   title:      the card's title (default: the home's name, or "Energy P2P")
 */

const CARD_TYPE = "energy-p2p-card";
const CARD_VERSION = "0.1.0";
const DOMAIN = "energy_p2p";
const SECTIONS = ["wallet", "offers", "trades", "usb", "market"];
const OPTIONS = ["type", "entry_id", "home", "show", "usb_buy_wh", "title"];
const DEFAULT_USB_BUY_WH = 5;
const MAX_USB_BUY_WH = 100000;
// Session states during which the port is busy charging (the edge refuses a second one).
const LIVE_SESSION_STATES = new Set(["starting", "charging", "stopping"]);

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

/** A person-readable text for an error from Home Assistant's WebSocket or a thrown Error. */
function errorText(error) {
  if (error && typeof error === "object") {
    return error.message || error.code || JSON.stringify(error);
  }
  return String(error);
}

/** "ep5c0fdc…a0ea79": enough of an account id to tell homes apart. */
function shortId(id) {
  const text = String(id ?? "");
  return text.length > 16 ? `${text.slice(0, 8)}…${text.slice(-6)}` : text;
}

/** The name of the party in `item[field]`: the edge controller's `<field>_name`, else its
 * account id's short form. */
function partyName(item, field) {
  const name = item?.[`${field}_name`];
  return typeof name === "string" && name.trim() ? name : shortId(item?.[field]);
}

/** "name" for a party the community named, "mono" for one shown by its account's short form. */
function partyClass(item, field) {
  const name = item?.[`${field}_name`];
  return typeof name === "string" && name.trim() ? "name" : "mono";
}

/** The homes a private offer is addressed to (`private_to`, or `to`), by name; [] if public. */
function privateTo(offer) {
  const accounts = offer.private_to ?? offer.to ?? [];
  const names = offer.to_names ?? offer.private_to_names ?? [];
  return accounts.map((account, i) => ({
    account,
    name: typeof names[i] === "string" && names[i] ? names[i] : shortId(account),
  }));
}

const STYLE = `
  :host { display: block; max-width: 100%; }
  ha-card { overflow-wrap: anywhere; }
  ha-card:not(:defined) {
    display: block;
    background: var(--ha-card-background, var(--card-background-color, #fff));
    color: var(--primary-text-color, #212121);
    border: 1px solid var(--divider-color, #e0e0e0);
    border-radius: var(--ha-card-border-radius, 12px);
  }
  .card-header .name { flex: 1; }
  .card-header {
    display: flex; align-items: center; gap: 8px;
    padding: 16px 16px 0;
    font-size: var(--ha-card-header-font-size, 20px);
    color: var(--ha-card-header-color, var(--primary-text-color, #212121));
  }
  .card-content { padding: 8px 16px 16px; }
  .home + .home { border-top: 1px solid var(--divider-color, #e0e0e0); margin-top: 12px; }
  .home-header { display: flex; align-items: center; gap: 8px; margin: 8px 0; }
  .home-name { font-weight: 500; flex: 1; color: var(--primary-text-color, #212121); }
  h3 {
    font-size: 14px; font-weight: 500; margin: 14px 0 6px;
    color: var(--secondary-text-color, #727272); text-transform: uppercase; letter-spacing: .04em;
  }
  .chip {
    display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
    border: 1px solid var(--divider-color, #e0e0e0); color: var(--secondary-text-color, #727272);
    white-space: nowrap;
  }
  .chip.online { color: var(--success-color, #43a047); border-color: currentColor; }
  .chip.offline, .chip.cut-off { color: var(--error-color, #db4437); border-color: currentColor; }
  .offline-note, .empty, .loading, .hint { color: var(--secondary-text-color, #727272); font-size: 13px; }
  .offline-note { color: var(--warning-color, #ffa600); margin-bottom: 6px; }
  .wallet { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-end; }
  .wallet .value { white-space: nowrap; }
  .figure { display: flex; flex-direction: column; }
  .figure .label { font-size: 12px; color: var(--secondary-text-color, #727272); }
  .figure .value { font-size: 16px; color: var(--primary-text-color, #212121); }
  .wallet .balance { font-size: 20px; font-weight: 500; color: var(--primary-color, #03a9f4); }
  .row {
    /* minmax(0, 1fr): the text column shrinks (and wraps) instead of pushing the chip and
       the action past the card's edge. */
    display: grid; grid-template-columns: minmax(0, 1fr) auto auto; align-items: center;
    gap: 4px 10px; padding: 6px 0; border-top: 1px solid var(--divider-color, #e0e0e0);
  }
  .row.trade { grid-template-columns: minmax(0, 1fr) auto; }
  .row-text { min-width: 0; }
  .row:first-child { border-top: none; }
  .row .message { grid-column: 1 / -1; padding: 0; }
  .row-main { color: var(--primary-text-color, #212121); }
  .row-main .price, .row-main .quantity { font-weight: 500; }
  .row-secondary { font-size: 12px; color: var(--secondary-text-color, #727272); }
  .row-action { text-align: right; white-space: nowrap; }
  .money { font-size: 12px; color: var(--secondary-text-color, #727272); }
  .party { font-weight: 500; }
  .delivery { display: flex; align-items: center; gap: 8px; }
  .delivery progress { width: 80px; flex: none; }
  .mono { font-family: var(--code-font-family, monospace); font-size: 12px; }
  button {
    font: inherit; font-size: 13px; font-weight: 500; cursor: pointer;
    background: var(--primary-color, #03a9f4); color: var(--text-primary-color, #fff);
    border: none; border-radius: 4px; padding: 4px 12px;
  }
  button[disabled] { cursor: default; opacity: .45; }
  .message { font-size: 12px; padding: 2px 4px 4px; }
  .message.error { color: var(--error-color, #db4437); }
  .message.done { color: var(--success-color, #43a047); }
  .trade[data-status="settled"] .status { color: var(--success-color, #43a047); border-color: currentColor; }
  .trade[data-status="terminated"] .status { color: var(--warning-color, #ffa600); border-color: currentColor; }
  progress { width: 100%; height: 6px; accent-color: var(--primary-color, #03a9f4); }
  .port {
    border: 1px solid var(--divider-color, #e0e0e0); border-radius: 8px;
    padding: 8px; margin-bottom: 6px; display: grid; gap: 4px;
  }
  .port-line { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
  .port-name { font-weight: 500; }
  .port-line .spacer { flex: 1; }
  .usb-hardware { font-size: 12px; color: var(--secondary-text-color, #727272); margin-bottom: 6px; }
  .usb-hardware .error { color: var(--error-color, #db4437); }
  .market svg { width: 100%; height: auto; display: block; }
  .market .axis { fill: var(--secondary-text-color, #727272); font-size: 10px; }
  .market .volume { fill: var(--primary-color, #03a9f4); opacity: .25; }
  .market .price { fill: none; stroke: var(--primary-color, #03a9f4); stroke-width: 1.5; }
  .market .dot { fill: var(--primary-color, #03a9f4); }
  .market .grid { stroke: var(--divider-color, #e0e0e0); stroke-width: .5; }
  .market-figures { display: flex; gap: 4px 16px; flex-wrap: wrap; font-size: 13px; margin-bottom: 4px; }
  .market-figures b { white-space: nowrap; }
  .card-error { color: var(--error-color, #db4437); }
`;

class EnergyP2PCard extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this._config = null;
    this._hass = null;
    this._data = null;
    this._error = null;
    this._subscription = null;
    // Actions in flight and their outcomes, by "entry:kind:id", kept across re-renders.
    this._pending = new Set();
    this._messages = new Map();
    this.shadowRoot.addEventListener("click", (event) => this._onClick(event));
  }

  /** The configuration the card picker starts from. */
  static getStubConfig() {
    return { usb_buy_wh: DEFAULT_USB_BUY_WH };
  }

  setConfig(config) {
    if (!config || typeof config !== "object" || Array.isArray(config)) {
      throw new Error("Invalid configuration: expected options such as entry_id, show, usb_buy_wh");
    }
    const unknown = Object.keys(config).filter((key) => !OPTIONS.includes(key));
    if (unknown.length) {
      throw new Error(`Unknown option ${unknown.join(", ")}: the card knows ${OPTIONS.slice(1).join(", ")}`);
    }
    const { entry_id: entryId, home, show, usb_buy_wh: usbBuyWh, title } = config;
    if (entryId !== undefined && (typeof entryId !== "string" || !entryId.trim())) {
      throw new Error("entry_id must be the config entry id of an Energy P2P home");
    }
    if (home !== undefined && (typeof home !== "string" || !home.trim())) {
      throw new Error("home must be the name or node id of an Energy P2P home");
    }
    if (show !== undefined) {
      if (!Array.isArray(show) || !show.length) {
        throw new Error(`show must be a list of sections: ${SECTIONS.join(", ")}`);
      }
      const wrong = show.filter((section) => !SECTIONS.includes(section));
      if (wrong.length) {
        throw new Error(`Unknown section ${wrong.join(", ")} in show: use ${SECTIONS.join(", ")}`);
      }
    }
    if (
      usbBuyWh !== undefined &&
      !(Number.isInteger(usbBuyWh) && usbBuyWh >= 1 && usbBuyWh <= MAX_USB_BUY_WH)
    ) {
      throw new Error(`usb_buy_wh must be a whole number of Wh from 1 to ${MAX_USB_BUY_WH}`);
    }
    if (title !== undefined && typeof title !== "string") {
      throw new Error("title must be text");
    }
    const entryChanged = this._config !== null && this._config.entryId !== entryId;
    this._config = {
      entryId,
      home: home?.trim(),
      show: new Set(show ?? SECTIONS),
      usbBuyWh: usbBuyWh ?? DEFAULT_USB_BUY_WH,
      title,
    };
    if (entryChanged) {
      this._unsubscribe();
      this._data = null;
    }
    this._error = null;
    this._subscribe();
    this._render();
  }

  set hass(hass) {
    this._hass = hass;
    this._subscribe();
  }

  get hass() {
    return this._hass;
  }

  connectedCallback() {
    this._subscribe();
    this._render();
  }

  disconnectedCallback() {
    this._unsubscribe();
  }

  getCardSize() {
    if (!this._data) return 4;
    let size = 1;
    for (const entry of this._entries) {
      size += 2;
      if (this._config.show.has("wallet")) size += 2;
      if (this._config.show.has("offers")) size += 1 + entry.offers.length;
      if (this._config.show.has("trades")) size += 1 + Math.ceil(entry.trades.length / 2);
      if (this._config.show.has("usb") && entry.usb) size += 1 + 2 * entry.usb.ports.length;
      if (this._config.show.has("market")) size += 3;
    }
    return size;
  }

  getGridOptions() {
    return { columns: 12, min_columns: 6 };
  }

  // --- data ---------------------------------------------------------------------------

  _subscribe() {
    // A refused subscription (e.g. an unknown entry_id) waits for a new configuration.
    if (!this._hass || !this._config || !this.isConnected || this._subscription || this._error) {
      return;
    }
    const message = { type: `${DOMAIN}/subscribe` };
    if (this._config.entryId) message.entry_id = this._config.entryId;
    const subscription = this._hass.connection.subscribeMessage((payload) => {
      if (this._subscription !== subscription) return;
      this._data = payload;
      this._render();
    }, message);
    this._subscription = subscription;
    subscription.catch((error) => {
      if (this._subscription !== subscription) return;
      this._subscription = null;
      this._error = errorText(error);
      this._render();
    });
  }

  _unsubscribe() {
    const subscription = this._subscription;
    this._subscription = null;
    if (subscription) {
      // The connection may already be gone; nothing is left to cancel then.
      subscription.then((unsubscribe) => unsubscribe()).catch(() => undefined);
    }
  }

  // --- actions ------------------------------------------------------------------------

  _onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const { action, entry } = button.dataset;
    if (action === "accept") {
      const offerId = button.dataset.offer;
      this._call(`${entry}:offer:${offerId}`, "accept_offer", {
        config_entry_id: entry,
        offer_id: offerId,
      }, "Accepted: the trade appears below once the seller's home records it.");
    } else if (action === "confirm-counter" || action === "decline-counter") {
      const counterId = button.dataset.counter;
      const answer = action === "confirm-counter" ? "confirm" : "decline";
      this._call(`${entry}:counter:${counterId}`, "answer_counter_offer", {
        config_entry_id: entry,
        counter_offer_id: counterId,
        answer,
      }, answer === "confirm"
        ? "Confirmed: the trade appears below once a block holds it."
        : "Declined: the offer stays open for others.");
    } else if (action === "buy") {
      const port = Number(button.dataset.port);
      const energyWh = this._config.usbBuyWh;
      this._call(`${entry}:port:${port}`, "buy_usb_charge", {
        config_entry_id: entry,
        port,
        energy_wh: energyWh,
      }, `Bought ${energyWh} Wh: charging starts in a moment.`);
    }
  }

  async _call(key, service, data, doneText) {
    if (this._pending.has(key) || !this._hass) return;
    this._pending.add(key);
    this._messages.delete(key);
    this._render();
    try {
      // notifyOnError false: the error is shown next to the button instead of a toast.
      await this._hass.callService(DOMAIN, service, data, undefined, false);
      this._messages.set(key, { error: false, text: doneText });
    } catch (error) {
      this._messages.set(key, { error: true, text: errorText(error) });
    } finally {
      this._pending.delete(key);
      this._render();
    }
  }

  // --- rendering ----------------------------------------------------------------------

  get _language() {
    return this._hass?.locale?.language || this._hass?.language || navigator.language || "en";
  }

  _number(value, minimumFractionDigits, maximumFractionDigits) {
    return new Intl.NumberFormat(this._language, {
      minimumFractionDigits,
      maximumFractionDigits,
    }).format(value);
  }

  _money(milli, currency, digits = 2) {
    return `${this._number((milli ?? 0) / 1000, 2, digits)} ${currency ?? ""}`.trim();
  }

  _pricePerKwh(milliPerKwh, currency) {
    return `${this._number((milliPerKwh ?? 0) / 1000, 2, 3)} ${currency ?? ""}/kWh`;
  }

  _kwh(wh) {
    return `${this._number((wh ?? 0) / 1000, 2, 3)} kWh`;
  }

  _time(ms) {
    if (ms === null || ms === undefined) return "–";
    const date = new Date(ms);
    const sameDay = date.toDateString() === new Date().toDateString();
    const options = sameDay
      ? { hour: "2-digit", minute: "2-digit" }
      : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    // The user's choice in their Home Assistant profile: 12 h, 24 h, or the language's.
    const format = this._hass?.locale?.time_format;
    if (format === "12" || format === "24") options.hour12 = format === "12";
    return date.toLocaleString(this._language, options);
  }

  /** "14:00–15:00", with the date when it is not today. */
  _window(start, end) {
    return `${this._time(start)}–${this._time(end)}`;
  }

  _messageFor(key) {
    const message = this._messages.get(key);
    if (!message) return "";
    return `<div class="message ${message.error ? "error" : "done"}" role="${
      message.error ? "alert" : "status"
    }">${esc(message.text)}</div>`;
  }

  /** The homes this card shows. */
  get _entries() {
    const entries = this._data?.entries ?? [];
    const home = this._config.home?.toLowerCase();
    if (!home) return entries;
    return entries.filter(
      (entry) => entry.title?.toLowerCase() === home || entry.node_id?.toLowerCase() === home,
    );
  }

  _render() {
    if (!this._config) return;
    const entries = this._entries;
    let body;
    if (this._error) {
      body = `<div class="card-error">Energy P2P: ${esc(this._error)}</div>`;
    } else if (!this._data) {
      body = `<div class="loading">Loading…</div>`;
    } else if (!entries.length && this._config.home) {
      body = `<div class="empty">No Energy P2P home is called ${esc(this._config.home)}.</div>`;
    } else if (!entries.length) {
      body = `<div class="empty">No Energy P2P home is set up yet.</div>`;
    } else {
      body = entries.map((entry) => this._renderHome(entry, entries.length > 1)).join("");
    }
    const single = entries.length === 1 ? entries[0] : null;
    const title = this._config.title ?? (single ? single.title : "Energy P2P");
    this.shadowRoot.innerHTML = `<style>${STYLE}</style>
      <ha-card>
        <div class="card-header"><span class="name">${esc(title)}</span>${
          single && !this._error ? this._onlineChip(single) : ""
        }</div>
        <div class="card-content">${body}</div>
      </ha-card>`;
  }

  _onlineChip(entry) {
    return entry.online
      ? `<span class="chip online">online</span>`
      : `<span class="chip offline">offline</span>`;
  }

  /** One home; its name and state are in the card's header when it is the only one. */
  _renderHome(entry, several) {
    const show = this._config.show;
    const header = several
      ? `<div class="home-header"><span class="home-name">${esc(entry.title)}</span>${this._onlineChip(
          entry,
        )}</div>`
      : "";
    if (!entry.wallet) {
      return `<section class="home unavailable" data-entry-id="${esc(entry.entry_id)}">${header}
        <div class="offline-note">Unavailable: the edge controller has not been reached.</div>
      </section>`;
    }
    const parts = [header];
    if (!entry.online) {
      parts.push(
        `<div class="offline-note">The edge controller is unreachable; this is the last data it sent.</div>`,
      );
    }
    if (show.has("wallet")) parts.push(this._renderWallet(entry));
    if (show.has("offers")) parts.push(this._renderOffers(entry));
    if (show.has("trades")) parts.push(this._renderTrades(entry));
    if (show.has("usb") && entry.usb) parts.push(this._renderUsb(entry));
    if (show.has("market") && entry.market) parts.push(this._renderMarket(entry));
    return `<section class="home ${entry.online ? "online" : "offline"}"
      data-entry-id="${esc(entry.entry_id)}">${parts.join("")}</section>`;
  }

  _renderWallet(entry) {
    const wallet = entry.wallet;
    const currency = entry.currency ?? wallet.currency;
    const cutOff = wallet.cut_off ? ` <span class="chip cut-off">prepaid cut-off</span>` : "";
    return `<h3>Wallet${cutOff}</h3>
      <div class="wallet">
        <div class="figure"><span class="label">Balance</span>
          <span class="value balance">${esc(this._money(wallet.balance, currency))}</span></div>
        <div class="figure"><span class="label">In escrow</span>
          <span class="value escrow">${esc(this._money(wallet.escrow, currency))}</span></div>
        <div class="figure"><span class="label">Energy bought</span>
          <span class="value bought">${esc(this._kwh(wallet.energy_bought_wh))}</span></div>
        <div class="figure"><span class="label">Energy sold</span>
          <span class="value sold">${esc(this._kwh(wallet.energy_sold_wh))}</span></div>
      </div>`;
  }

  _renderOffers(entry) {
    const offers = entry.offers ?? [];
    if (!offers.length) {
      return `<h3>Open offers</h3><div class="offers"><div class="empty">No open offers.</div></div>`;
    }
    const rows = offers.map((offer) => {
      const key = `${entry.entry_id}:offer:${offer.id}`;
      const mine = offer.seller === entry.node_id;
      const pending = this._pending.has(key);
      const to = privateTo(offer);
      // A private offer is for the homes it names: any other sees it, but cannot take it.
      const forUs = !to.length || to.some((home) => home.account === entry.node_id);
      const quantity =
        offer.mode === "capacity"
          ? `${this._number(offer.remaining / 1000, 2, 3)} of ${this._number(offer.quantity / 1000, 2, 3)} kW`
          : `${this._number(offer.remaining / 1000, 2, 3)} of ${this._kwh(offer.quantity)}`;
      const privately = to.length
        ? `<span class="chip private" title="${esc(to.map((home) => home.account).join(", "))}">${
            forUs ? "to you" : `to ${esc(to.map((home) => home.name).join(", "))}`
          }</span>`
        : "";
      const action = mine
        ? `<span class="chip">yours</span>`
        : !forUs
          ? privately
          : `<button class="accept" data-action="accept" data-entry="${esc(entry.entry_id)}"
            data-offer="${esc(offer.id)}" ${pending || !entry.online ? "disabled" : ""}>${
              pending ? "Accepting…" : "Accept"
            }</button>`;
      return `<div class="row offer" data-offer-id="${esc(offer.id)}" data-status="${esc(offer.status)}">
          <div class="row-text">
            <div class="row-main"><span class="quantity">${esc(quantity)}</span> at
              <span class="price">${esc(this._pricePerKwh(offer.price, entry.currency))}</span></div>
            <div class="row-secondary">from <span class="seller party ${partyClass(offer, "seller")}" title="${esc(offer.seller)}">${esc(
              partyName(offer, "seller"),
            )}</span> · <span class="window">${esc(this._window(offer.start, offer.end))}</span>${
              (forUs || mine) && to.length ? ` ${privately}` : ""
            }</div>
          </div>
          <span class="chip status">${esc(offer.status)}</span>
          <div class="row-action">${action}</div>
          ${this._messageFor(key)}
        </div>${mine ? this._renderCounters(entry, offer) : ""}`;
    });
    return `<h3>Open offers</h3><div class="offers">${rows.join("")}</div>`;
  }

  // Counter-offers on one of this home's offers that wait for the owner (a policy that
  // asks): each with Confirm and Decline.
  _renderCounters(entry, offer) {
    return (offer.counter_offers ?? []).map((counter) => {
      const key = `${entry.entry_id}:counter:${counter.id}`;
      const pending = this._pending.has(key);
      const disabled = pending || !entry.online ? "disabled" : "";
      const quantity = counter.unit === "W"
        ? `${this._number(counter.quantity / 1000, 2, 3)} kW`
        : this._kwh(counter.quantity);
      const button = (action, label) => `<button class="${action}" data-action="${action}"
          data-entry="${esc(entry.entry_id)}" data-counter="${esc(counter.id)}" ${disabled}>${
            esc(label)}</button>`;
      return `<div class="row counter-offer" data-counter-id="${esc(counter.id)}">
          <div class="row-text">
            <div class="row-main">Counter-offer: <span class="quantity">${esc(quantity)}</span> at
              <span class="price">${esc(this._pricePerKwh(counter.price, entry.currency))}</span></div>
            <div class="row-secondary">from <span class="buyer party ${partyClass(counter, "buyer")}" title="${esc(counter.buyer)}">${esc(
              partyName(counter, "buyer"),
            )}</span> · you asked ${esc(this._pricePerKwh(counter.asking_price, entry.currency))}</div>
          </div>
          <div class="row-action">${button("confirm-counter", pending ? "Sending…" : "Confirm")}
            ${button("decline-counter", "Decline")}</div>
          ${this._messageFor(key)}
        </div>`;
    }).join("");
  }

  _renderTrades(entry) {
    const trades = entry.trades ?? [];
    if (!trades.length) {
      return `<h3>Recent trades</h3><div class="trades"><div class="empty">No trades yet.</div></div>`;
    }
    const currency = entry.currency;
    const rows = trades.map((trade) => {
      const bought = trade.role === "buyer";
      const otherField = bought ? "seller" : "buyer";
      const other = trade[otherField];
      const agreed = trade.energy_wh ?? 0;
      const delivered = trade.delivered_wh ?? 0;
      const money =
        trade.status === "settled"
          ? `paid ${this._money(trade.paid, currency)}, refunded ${this._money(trade.refunded, currency)}`
          : `${this._money(trade.cost, currency)} in escrow`;
      return `<div class="row trade" data-trade-id="${esc(trade.id)}" data-status="${esc(trade.status)}">
          <div class="row-text">
            <div class="row-main"><span class="role">${bought ? "Bought" : "Sold"}</span>
              <span class="quantity">${esc(this._kwh(agreed))}</span> ${bought ? "from" : "to"}
              <span class="counterparty party ${partyClass(trade, otherField)}" title="${esc(other)}">${esc(
                partyName(trade, otherField),
              )}</span></div>
            <div class="row-secondary delivery">
              <progress max="${Math.max(agreed, 1)}" value="${Math.min(delivered, agreed)}"></progress>
              <span class="delivered">${esc(this._kwh(delivered))} delivered</span></div>
            <div class="money">${esc(money)}</div>
          </div>
          <span class="chip status">${esc(trade.status)}${trade.disputed ? ", disputed" : ""}</span>
        </div>`;
    });
    return `<h3>Recent trades</h3><div class="trades">${rows.join("")}</div>`;
  }

  _renderUsb(entry) {
    const usb = entry.usb;
    const currency = entry.currency;
    const hardware = [
      usb.hub?.error
        ? `<span class="error">Hub: ${esc(usb.hub.error.message)}</span>`
        : `Hub: ${esc(usb.hub?.description ?? "–")}${usb.hub && !usb.hub.switchable ? " (cannot switch ports)" : ""}`,
      usb.meter?.error
        ? `<span class="error">Meter: ${esc(usb.meter.error.message)}</span>`
        : `Meter: ${esc(usb.meter?.description ?? "–")}`,
      `Price ${esc(this._pricePerKwh(usb.price, currency))}`,
    ].join(" · ");
    const ports = (usb.ports ?? []).map((port) => {
      const key = `${entry.entry_id}:port:${port.port}`;
      const attached = port.attached;
      // A finished session stays shown as its receipt while the same phone is plugged in.
      const session =
        port.session ??
        (attached
          ? (usb.sessions ?? []).find(
              (s) => s.port === port.port && s.started >= (attached.since ?? 0),
            ) ?? null
          : null);
      const charging = session && LIVE_SESSION_STATES.has(session.state);
      const pending = this._pending.has(key);
      let phone = `<span class="hint">no phone</span>`;
      if (attached) {
        const identity = attached.identity ?? {};
        const name =
          [identity.manufacturer, identity.product].filter(Boolean).join(" ") || identity.key;
        const pairing = attached.wallet
          ? `<span class="chip paired" title="${esc(attached.wallet)}">paired: ${esc(
              partyName(attached, "wallet"),
            )}</span>`
          : `<span class="chip">pair with code ${esc(attached.pairing_code ?? "–")}</span>`;
        phone = `<span class="phone">${esc(name)}</span> ${pairing}`;
      }
      let progress = "";
      if (session) {
        const bought = session.bought_mwh ?? 0;
        const delivered = session.delivered_mwh ?? 0;
        progress = `<div class="port-line session" data-state="${esc(session.state)}">
            <span class="chip">${esc(session.state)}${session.reason ? `: ${esc(session.reason)}` : ""}</span>
            <span class="progress-text">${esc(this._number(delivered / 1000, 2, 2))} of
              ${esc(this._number(bought / 1000, 2, 2))} Wh</span>
            <span class="spacer"></span>
            <span class="cost">${esc(this._money(session.paid || session.cost, currency, 3))}</span>
          </div>
          <progress max="${Math.max(bought, 1)}" value="${Math.min(delivered, bought)}"></progress>`;
      }
      const disabled = pending || charging || !attached || !port.enabled || !entry.online;
      return `<div class="port" data-port="${esc(port.port)}">
          <div class="port-line">
            <span class="port-name">Port ${esc(port.port)}</span>
            <span class="chip">${port.enabled ? (port.powered ? "on" : "off") : "disabled"}</span>
            ${phone}
            <span class="spacer"></span>
            <span class="power">${esc(this._number((port.power_mw ?? 0) / 1000, 1, 1))} W</span>
            <button class="buy" data-action="buy" data-entry="${esc(entry.entry_id)}"
              data-port="${esc(port.port)}" ${disabled ? "disabled" : ""}>${
                pending ? "Buying…" : `Buy ${esc(this._config.usbBuyWh)} Wh`
              }</button>
          </div>
          ${progress}${this._messageFor(key)}
        </div>`;
    });
    return `<h3>USB charging</h3>
      <div class="usb"><div class="usb-hardware">${hardware}</div>${ports.join("")}</div>`;
  }

  _renderMarket(entry) {
    const market = entry.market;
    const currency = entry.currency;
    const history = [...(market.history ?? [])].sort((a, b) => a.time - b.time);
    const figures = `<div class="market-figures">
        <span>Last <b class="last-price">${
          market.last_price == null ? "–" : esc(this._pricePerKwh(market.last_price, currency))
        }</b></span>
        <span>Average <b>${
          market.average_price == null ? "–" : esc(this._pricePerKwh(market.average_price, currency))
        }</b></span>
        <span>Volume <b class="volume-total">${esc(this._kwh(market.volume_wh))}</b></span>
        <span>Trades <b>${esc(market.trades ?? 0)}</b></span>
      </div>`;
    return `<h3>Market, last 24 h</h3>
      <div class="market">${figures}${this._chart(history, currency)}</div>`;
  }

  /** Volume bars and a price line, scaled to the trades on show. */
  _chart(history, currency) {
    const width = 480;
    const height = 110;
    const left = 34;
    const right = 4;
    const top = 6;
    const bottom = 14;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const label = `Price and volume of ${history.length} trades`;
    if (!history.length) {
      return `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}">
          <title>${label}</title>
          <text class="axis" x="${width / 2}" y="${height / 2}" text-anchor="middle">No trades in the last 24 h</text>
        </svg>`;
    }
    const first = history[0].time;
    const last = history[history.length - 1].time;
    const span = Math.max(last - first, 1);
    const barWidth = Math.max(2, Math.min(12, plotWidth / history.length - 1));
    // Inset by half a bar, so the first and last bars are whole.
    const inset = barWidth / 2 + 1;
    const x = (time) =>
      history.length === 1
        ? left + plotWidth / 2
        : left + inset + ((time - first) / span) * (plotWidth - 2 * inset);
    const maxPrice = Math.max(...history.map((point) => point.price), 1) * 1.1;
    const maxEnergy = Math.max(...history.map((point) => point.energy_wh), 1);
    const y = (price) => top + plotHeight - (price / maxPrice) * plotHeight;
    const bars = history
      .map((point) => {
        const barHeight = Math.max(1, (point.energy_wh / maxEnergy) * plotHeight);
        return `<rect class="volume" x="${(x(point.time) - barWidth / 2).toFixed(1)}"
          y="${(top + plotHeight - barHeight).toFixed(1)}" width="${barWidth.toFixed(1)}"
          height="${barHeight.toFixed(1)}"><title>${esc(this._kwh(point.energy_wh))}</title></rect>`;
      })
      .join("");
    const line = history.map((point) => `${x(point.time).toFixed(1)},${y(point.price).toFixed(1)}`).join(" ");
    const dots = history
      .map(
        (point) => `<circle class="dot" cx="${x(point.time).toFixed(1)}" cy="${y(point.price).toFixed(1)}" r="2">
          <title>${esc(this._time(point.time))}: ${esc(this._pricePerKwh(point.price, currency))}</title></circle>`,
      )
      .join("");
    const topPrice = this._number(maxPrice / 1000, 2, 2);
    return `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}">
        <title>${label}</title>
        <line class="grid" x1="${left}" x2="${width - right}" y1="${top}" y2="${top}"></line>
        <line class="grid" x1="${left}" x2="${width - right}" y1="${top + plotHeight}" y2="${top + plotHeight}"></line>
        <text class="axis" x="${left - 3}" y="${top + 3}" text-anchor="end">${esc(topPrice)}</text>
        <text class="axis" x="${left - 3}" y="${top + plotHeight}" text-anchor="end">0</text>
        <text class="axis" x="${left}" y="${height - 2}">${esc(this._time(first))}</text>
        <text class="axis" x="${width - right}" y="${height - 2}" text-anchor="end">${esc(this._time(last))}</text>
        ${bars}
        <polyline class="price" points="${line}"></polyline>
        ${dots}
      </svg>`;
  }
}

function defineCard() {
  // `customElements` is read here, at call time: inside Home Assistant it is by then the
  // app's own registry, not the browser's.
  if (customElements.get(CARD_TYPE)) return;
  customElements.define(CARD_TYPE, EnergyP2PCard);
  // In the dashboard's card picker, with a live preview.
  window.customCards = window.customCards || [];
  window.customCards.push({
    type: CARD_TYPE,
    name: "Energy P2P",
    description: "Wallets, open offers, trades, USB charging and the market of your Energy P2P homes.",
    preview: true,
  });
  console.info(`%c ENERGY-P2P-CARD %c ${CARD_VERSION} `, "background:#03a9f4;color:#fff", "");
}

// Home Assistant loads this module alongside its own scripts, and its app replaces
// window.customElements with a scoped registry (a polyfill) when it starts. A card defined
// before that sits in the browser's registry, where the dashboard never finds it: it shows
// "Configuration error" until a reload. Inside the app (whose page holds <home-assistant>),
// the card is therefore defined once the app's root element is, in the registry in force.
if (document.querySelector("home-assistant") && !customElements.get("home-assistant")) {
  customElements.whenDefined("home-assistant").then(defineCard);
} else {
  defineCard();
}
