// The wallet page: plain JavaScript against the service's JSON API (see /openapi.json).
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("fastpay-token") || "";

function short(address) {
  return address.slice(0, 8) + "…" + address.slice(-6);
}

// fetch() with the bearer token; resolves to the parsed JSON, or throws the API's message.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-panel").hidden = false;
    throw new Error("this service needs its bearer token");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : "HTTP " + response.status);
  }
  return body;
}

function fillSelect(select, accounts, filter) {
  const kept = select.value;
  select.replaceChildren(...accounts.filter(filter).map((a) => {
    const option = document.createElement("option");
    option.value = a.account;
    option.textContent = short(a.account) + " (" + a.balance + ")";
    return option;
  }));
  if (kept) select.value = kept;
}

async function refresh() {
  try {
    const { accounts } = await api("/api/accounts");
    $("service-status").textContent = accounts.length + " account(s)";
    $("accounts").replaceChildren(...accounts.map((a) => {
      const row = document.createElement("tr");
      row.innerHTML = "<td class=address></td><td class=number></td><td class=number></td><td></td>";
      row.children[0].textContent = a.account;
      row.children[1].textContent = a.balance;
      row.children[2].textContent = a.next_sequence_number;
      row.children[3].textContent = a.watch_only ? "watch-only" : "";
      return row;
    }));
    fillSelect($("pay-from"), accounts, (a) => !a.watch_only);
    fillSelect($("merchant-account"), accounts, () => true);
    fillSelect($("history-account"), accounts, () => true);
    await showHistory();
  } catch (error) {
    $("service-status").textContent = error.message;
    $("service-status").className = "error";
  }
}

async function showHistory() {
  const account = $("history-account").value;
  if (!account) return;
  const { payments } = await api("/api/accounts/" + account + "/history?limit=50");
  $("history").replaceChildren(...payments.map((p) => {
    const row = document.createElement("tr");
    row.innerHTML = "<td></td><td class=address></td><td class=number></td><td class=address></td>";
    row.children[0].textContent = p.direction;
    row.children[1].textContent = short(p.counterparty);
    row.children[2].textContent = (p.direction === "sent" ? "-" : "+") + p.amount;
    row.children[3].textContent = short(p.certificate.split(":")[0]) + ":" + p.sequence_number;
    return row;
  }));
}

// One idempotency key per payment the user means: kept while the same form is retried,
// replaced once a payment succeeds or the form changes.
let payKey = null;
$("pay-form").addEventListener("input", () => { payKey = null; });
$("pay-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  payKey = payKey || crypto.randomUUID();
  const result = $("pay-result");
  result.className = "";
  result.textContent = "paying…";
  try {
    const payment = await api("/api/payments", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        from: $("pay-from").value,
        to: $("pay-to").value.trim(),
        amount: Number($("pay-amount").value),
        idempotency_key: payKey,
      }),
    });
    result.textContent = "paid " + payment.amount + ": final in " + payment.final_after_ms +
      " ms (certificate " + short(payment.from) + ":" + payment.sequence_number + ")";
    result.dataset.state = "paid";
    payKey = null;
    refresh();
  } catch (error) {
    result.textContent = error.message;
    result.className = "error";
  }
});

// Reads Server-Sent Events with fetch (EventSource cannot send the bearer token), calling
// onEvent(name, data) for each, until `signal` aborts.
async function readEvents(path, signal, onEvent) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { headers, signal });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : "HTTP " + response.status);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

let waiting = null;
$("merchant-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (waiting) waiting.abort();
  waiting = new AbortController();
  const controller = waiting;
  const account = $("merchant-account").value;
  const amount = Number($("merchant-amount").value);
  const status = $("merchant-status");
  const started = performance.now();
  status.dataset.state = "waiting";
  status.textContent = "waiting for " + amount + " from anyone to account " + short(account);
  readEvents("/api/events?account=" + account, controller.signal, (name, data) => {
    if (name === "payment" && data.amount === amount) {
      const took = Math.round(performance.now() - started);
      status.dataset.state = "paid";
      status.textContent = "paid: " + amount + " from " + short(data.from) + " after " + took +
        " ms (certificate " + short(data.from) + ":" + data.sequence_number + ")";
      controller.abort();
      refresh();
    } else if (name === "ready") {
      status.dataset.listening = "yes";
    }
  }).catch((error) => {
    if (controller.signal.aborted) return;
    status.dataset.state = "error";
    status.textContent = error.message;
    status.className = "big error";
  });
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("fastpay-token", token);
  $("token-panel").hidden = true;
  refresh();
});
$("refresh").addEventListener("click", refresh);
$("history-account").addEventListener("change", showHistory);
refresh();
