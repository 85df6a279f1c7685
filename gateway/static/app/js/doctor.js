// Doctor views: the live inbox of requests, the agenda by week, publishing a weekly rule.

import { allPages, call, current } from "./api.js";
import { live } from "./live.js";
import { appointmentList, cancelControl } from "./patient.js";
import {
  act,
  addDays,
  announce,
  empty,
  field,
  fmt,
  h,
  isoDate,
  section,
  startOfWeek,
} from "./ui.js";

const WEEKDAYS = [
  [1, "Segunda"],
  [2, "Terça"],
  [3, "Quarta"],
  [4, "Quinta"],
  [5, "Sexta"],
  [6, "Sábado"],
  [7, "Domingo"],
];
const SLOT_STATUS = { open: "Livre", requested: "Pedido", booked: "Reservado", held: "Em espera" };
const MAX_SLOTS = 500;

// --- inbox --------------------------------------------------------------------------------------

function decisionButtons(appt, update) {
  if (appt.status !== "requested") return null;
  const reason = h("input", { name: "reason", maxlength: 500 });
  const accept = h("button", { type: "button", class: "accept" }, "Aceitar");
  const refuse = h("button", { type: "button", class: "danger refuse" }, "Recusar");
  accept.addEventListener("click", () =>
    act(accept, async () => {
      update(await call("POST", `/v1/appointments/${encodeURIComponent(appt.id)}/accept`));
      announce("Consulta confirmada: o paciente recebe o link agora.");
    }),
  );
  refuse.addEventListener("click", () =>
    act(refuse, async () => {
      const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
      update(await call("POST", `/v1/appointments/${encodeURIComponent(appt.id)}/refuse`, { body }));
      announce("Pedido recusado: o horário voltou a ficar livre.");
    }),
  );
  return h("div", { class: "decide" }, accept, field("Motivo da recusa (opcional)", reason), refuse);
}

export async function inboxView(root) {
  const pending = appointmentList({
    filter: (a) => a.status === "requested",
    actions: (appt) => decisionButtons(appt, (u) => pending.update(u)),
  });
  pending.list.id = "pedidos";
  root.replaceChildren(
    h("h1", {}, "Pedidos de consulta"),
    h("p", { class: "hint" }, "Novos pedidos aparecem aqui na hora. Um pedido sem resposta expira no prazo indicado."),
    pending.list,
  );
  await pending.resync();
  const offReady = live.onReady(() => pending.resync().catch(() => {}));
  return () => {
    pending.stop();
    offReady();
  };
}

// --- agenda by week -------------------------------------------------------------------------------

export async function weekView(root) {
  let monday = startOfWeek(new Date());
  const grid = h("div", { class: "week", id: "semana" });
  const title = h("h2", { id: "semana-titulo", tabindex: "-1" });
  const upcoming = appointmentList({
    filter: (a) => a.status === "confirmed" && new Date(a.slot.end) > new Date(),
    actions: (appt) => cancelControl(appt, (u) => upcoming.update(u)),
  });
  upcoming.list.id = "confirmadas";

  async function load() {
    const sunday = addDays(monday, 7);
    title.textContent = `Semana de ${fmt.day(monday)} a ${fmt.day(addDays(monday, 6))}`;
    const slots = await allPages("/v1/me/slots", { from: monday.toISOString(), to: sunday.toISOString() });
    const days = WEEKDAYS.map(([n, name], i) => ({ date: addDays(monday, i), name, n, slots: [] }));
    for (const slot of slots) {
      const d = new Date(slot.start);
      const iso = d.getDay() || 7;
      days[iso - 1].slots.push(slot);
    }
    grid.replaceChildren(
      ...days.map((day) =>
        h(
          "section",
          { class: "day", "aria-label": fmt.day(day.date) },
          h("h3", {}, fmt.dayShort(day.date)),
          day.slots.length
            ? h(
                "ul",
                { class: "plain" },
                day.slots
                  .sort((a, b) => a.start.localeCompare(b.start))
                  .map((s) => h("li", { class: `wslot wslot-${s.status}`, dataset: { status: s.status } }, `${fmt.time(s.start)}–${fmt.time(s.end)} `, h("span", { class: "badge" }, SLOT_STATUS[s.status] || s.status))),
              )
            : h("p", { class: "empty" }, "Sem horários"),
        ),
      ),
    );
  }

  const nav = h(
    "div",
    { class: "row" },
    h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, async () => { monday = addDays(monday, -7); await load(); title.focus(); }) }, "← Semana anterior"),
    h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, async () => { monday = startOfWeek(new Date()); await load(); title.focus(); }) }, "Esta semana"),
    h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, async () => { monday = addDays(monday, 7); await load(); title.focus(); }) }, "Próxima semana →"),
  );
  root.replaceChildren(
    h("h1", {}, "Minha agenda"),
    h("p", { class: "hint" }, `Horários no seu fuso (${fmt.zone()}).`),
    nav,
    h("section", { class: "card", "aria-labelledby": "semana-titulo" }, title, grid),
    section("Próximas consultas confirmadas", upcoming.list),
  );
  await Promise.all([load(), upcoming.resync()]);
  const me = current();
  const topic = `doctor.${me.userId}.slots`;
  let pendingLoad = 0;
  const reload = () => {
    clearTimeout(pendingLoad);
    pendingLoad = setTimeout(() => load().catch(() => {}), 200);
  };
  const off = live.onEvent((msg) => {
    if (msg.topic === topic || msg.event.startsWith("appointment.")) reload();
  });
  live.subscribe(topic, reload);
  const offReady = live.onReady(() => upcoming.resync().catch(() => {}));
  return () => {
    off();
    offReady();
    upcoming.stop();
    live.unsubscribe(topic);
  };
}

// --- publish by weekly rule ------------------------------------------------------------------------

/** The slots a rule makes, computed as the server does (engine/booking/_rules.py), in the
 * browser's time zone (which is the rule's `timezone`): local wall times stepped by
 * duration + gap, a slot kept while it ends by end_time, past starts left out. */
export function expandRule(rule, now = new Date()) {
  const out = [];
  const [y1, m1, d1] = rule.from.split("-").map(Number);
  const [y2, m2, d2] = rule.to.split("-").map(Number);
  const last = new Date(y2, m2 - 1, d2);
  const [sh, sm] = rule.start_time.split(":").map(Number);
  const [eh, em] = rule.end_time.split(":").map(Number);
  const step = rule.duration_minutes + rule.gap_minutes;
  for (let day = new Date(y1, m1 - 1, d1); day <= last && out.length <= MAX_SLOTS; day = addDays(day, 1)) {
    if (!rule.weekdays.includes(day.getDay() || 7)) continue;
    const endWall = sh * 60 + sm <= eh * 60 + em ? eh * 60 + em : -1;
    for (let minute = sh * 60 + sm; minute + rule.duration_minutes <= endWall; minute += step) {
      const start = new Date(day.getFullYear(), day.getMonth(), day.getDate(), 0, minute);
      if (start.getHours() * 60 + start.getMinutes() !== minute % 1440) continue; // a skipped DST hour
      const end = new Date(start.getTime() + rule.duration_minutes * 60_000);
      const prev = out[out.length - 1];
      if ((!prev || start >= prev.end) && start > now) out.push({ start, end });
    }
  }
  return out;
}

export function publishView(root) {
  const today = new Date();
  const from = h("input", { type: "date", name: "from", required: true, value: isoDate(today), min: isoDate(today) });
  const to = h("input", { type: "date", name: "to", required: true, value: isoDate(addDays(today, 13)), min: isoDate(today) });
  const start = h("input", { type: "time", name: "start_time", required: true, value: "08:00" });
  const end = h("input", { type: "time", name: "end_time", required: true, value: "12:00" });
  const duration = h("input", { type: "number", name: "duration_minutes", min: 1, max: 240, value: 50, required: true });
  const gap = h("input", { type: "number", name: "gap_minutes", min: 0, max: 1440, value: 10, required: true });
  const days = h(
    "fieldset",
    { class: "weekdays" },
    h("legend", {}, "Dias da semana"),
    WEEKDAYS.map(([n, name]) => {
      const id = `wd-${n}`;
      return h("div", { class: "check" }, h("input", { type: "checkbox", name: "weekday", value: n, id, checked: n <= 5 }), h("label", { for: id }, name));
    }),
  );
  const preview = h("div", { id: "previa", "aria-live": "polite" });
  const publish = h("button", { type: "submit" }, "Publicar horários");
  const form = h(
    "form",
    { id: "regra" },
    h("div", { class: "grid2" }, field("De", from), field("Até", to), field("Início", start), field("Fim", end), field("Duração (min)", duration), field("Intervalo (min)", gap)),
    days,
    h("p", { class: "hint" }, `Fuso da regra: ${fmt.zone()} (o do seu navegador).`),
    publish,
  );

  function rule() {
    return {
      from: from.value,
      to: to.value,
      weekdays: [...form.querySelectorAll("input[name=weekday]:checked")].map((i) => Number(i.value)),
      start_time: start.value,
      end_time: end.value,
      timezone: fmt.zone(),
      duration_minutes: Number(duration.value),
      gap_minutes: Number(gap.value),
    };
  }

  function renderPreview() {
    const r = rule();
    if (!r.from || !r.to || !r.start_time || !r.end_time || !r.weekdays.length || !(r.duration_minutes > 0)) {
      preview.replaceChildren(empty("Preencha a regra para ver a prévia."));
      return;
    }
    const slots = expandRule(r);
    const over = slots.length > MAX_SLOTS;
    const shown = slots.slice(0, 60);
    preview.replaceChildren(
      h("p", { class: over ? "error" : "", id: "previa-total" }, over ? `Mais de ${MAX_SLOTS} horários: encurte o período.` : `${slots.length} horário(s) serão criados.`),
      h("ul", { class: "preview" }, shown.map((s) => h("li", {}, `${fmt.dateTime(s.start.toISOString())}–${fmt.time(s.end.toISOString())}`))),
    );
    if (slots.length > shown.length) preview.append(h("p", { class: "hint" }, `… e mais ${slots.length - shown.length}.`));
    publish.disabled = over || !slots.length;
  }

  form.addEventListener("input", renderPreview);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(publish, async () => {
      const created = await call("POST", "/v1/me/slots", { body: { rule: rule() } });
      announce(`${created.items.length} horário(s) publicados.`);
    });
  });
  root.replaceChildren(h("h1", {}, "Publicar horários"), h("div", { class: "grid2" }, section("Regra semanal", form), section("Prévia", preview)));
  renderPreview();
}
