// DOM and formatting helpers. Every text goes in through textContent (never innerHTML), so
// nothing a server or another user wrote can become markup.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let uid = 0;
export function fieldId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: `<label for>` + control (+ a hint tied by aria-describedby). */
export function field(label, control, hint) {
  const id = control.id || fieldId("f");
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

const dateTime = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat("pt-BR", { hour: "2-digit", minute: "2-digit" });
const dayLong = new Intl.DateTimeFormat("pt-BR", {
  weekday: "long",
  day: "2-digit",
  month: "long",
});
const dayShort = new Intl.DateTimeFormat("pt-BR", { weekday: "short", day: "2-digit", month: "2-digit" });
const money = new Intl.NumberFormat("pt-BR", { style: "currency", currency: "BRL" });

/** Times are shown in the viewer's own time zone (the browser's), written in pt-BR. */
export const fmt = {
  dateTime: (iso) => dateTime.format(new Date(iso)),
  time: (iso) => timeOnly.format(new Date(iso)),
  day: (date) => dayLong.format(date),
  dayShort: (date) => dayShort.format(date),
  money: (price) => money.format(price.amount_cents / 100),
  zone: () => Intl.DateTimeFormat().resolvedOptions().timeZone,
};

export const STATUS = {
  requested: "Aguardando o médico",
  confirmed: "Confirmada",
  refused: "Recusada",
  expired: "Expirada",
  cancelled: "Cancelada",
};

export const KINDS = [
  ["exam", "Exame"],
  ["report", "Laudo"],
  ["prescription", "Receita"],
  ["vaccination", "Vacinação"],
  ["image", "Imagem"],
  ["other", "Outro"],
];

export function badge(status) {
  return h("span", { class: `badge badge-${status}`, dataset: { status } }, STATUS[status] || status);
}

/** A polite announcement for screen readers and everyone (the top notice bar). A notice
 * belongs to the page it was made on: the next page clears it, unless `carry` says it is news
 * for that page (an action that moves on, such as a booking that opens "Minhas consultas"). */
export function announce(text, kind = "info", { carry = false } = {}) {
  const box = document.getElementById("aviso");
  box.textContent = text;
  box.dataset.kind = kind;
  if (carry) box.dataset.carry = "1";
  else delete box.dataset.carry;
}

/** Called as a new page renders: drop the last page's notice (see `announce`). */
export function pageChanged() {
  const box = document.getElementById("aviso");
  if (box.dataset.carry) delete box.dataset.carry;
  else announce("");
}

/** The API's conflict codes, said in Portuguese (the server's own detail is in English). */
const CONFLICTS = {
  slot_unavailable: "Esse horário não está mais livre.",
  patient_overlap: "Você já tem uma consulta nesse horário.",
  invalid_transition: "A consulta mudou de estado enquanto isso: a lista foi atualizada.",
  already_waiting: "Você já está na lista de espera deste médico num período que se sobrepõe a esse.",
  waitlist_limit: "Você já está em 10 listas de espera: saia de uma para entrar em outra.",
  no_offer: "Não há mais horário reservado para você nesta lista.",
  already_rated: "Esta consulta já tinha sido avaliada.",
};

export function errorText(err) {
  if (err && err.status === 429) return "Muitas tentativas. Aguarde um pouco e tente de novo.";
  if (err && err.status >= 500) return "O servidor não respondeu. Tente de novo.";
  if (err && CONFLICTS[err.code]) return CONFLICTS[err.code];
  return (err && err.message) || "Algo deu errado.";
}

/** Run an async action from a form or button, disabling it meanwhile; errors are announced. */
export async function act(control, fn) {
  control.disabled = true;
  try {
    return await fn();
  } catch (err) {
    announce(errorText(err), "error");
    return undefined;
  } finally {
    control.disabled = false;
  }
}

export function section(title, ...children) {
  const id = fieldId("s");
  return h("section", { "aria-labelledby": id, class: "card" }, h("h2", { id }, title), children);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

/** ISO date (YYYY-MM-DD) of a local Date. */
export function isoDate(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** The value of a datetime-local input for a Date (local wall time, to the minute). */
export function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${isoDate(date)}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function startOfWeek(d) {
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const iso = day.getDay() || 7; // 1 = Monday ... 7 = Sunday
  day.setDate(day.getDate() - (iso - 1));
  return day;
}

export function addDays(d, n) {
  const out = new Date(d);
  out.setDate(out.getDate() + n);
  return out;
}

/** A cache of doctors' public profiles (names on appointment lists). */
const doctorNames = new Map();
export async function doctorName(call, id) {
  if (!doctorNames.has(id)) {
    doctorNames.set(
      id,
      call("GET", `/v1/doctors/${encodeURIComponent(id)}`).then(
        (d) => d.name,
        () => "Médico",
      ),
    );
  }
  return doctorNames.get(id);
}
