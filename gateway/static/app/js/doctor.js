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
  localInput,
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

/** A button that decides an appointment (`action`: accept or refuse) and puts the answer in
 * the list; `body`, when given, makes the request body at the click. */
function decisionButton(appt, update, action, label, message, body) {
  const button = h("button", { type: "button", class: action === "accept" ? "accept" : "danger refuse" }, label);
  button.addEventListener("click", () =>
    act(button, async () => {
      const path = `/v1/appointments/${encodeURIComponent(appt.id)}/${action}`;
      update(await call("POST", path, body ? { body: body() } : {}));
      announce(message);
    }),
  );
  return button;
}

/** Accept or refuse a patient's request to move a confirmed appointment (API.md
 * "Rescheduling": accept applies the move, refuse keeps the appointment where it was). */
function moveButtons(appt, update) {
  return h(
    "div",
    { class: "decide" },
    decisionButton(appt, update, "accept", "Aceitar remarcação", "Remarcação aceita: a consulta foi para o novo horário e o paciente foi avisado."),
    decisionButton(appt, update, "refuse", "Recusar remarcação", "Remarcação recusada: a consulta continua no horário original.", () => ({})),
  );
}

function decisionButtons(appt, update) {
  if (appt.status === "confirmed" && appt.pending_move) return moveButtons(appt, update);
  if (appt.status !== "requested") return null;
  const reason = h("input", { name: "reason", maxlength: 500 });
  const refusal = () => (reason.value.trim() ? { reason: reason.value.trim() } : {});
  return h(
    "div",
    { class: "decide" },
    decisionButton(appt, update, "accept", "Aceitar", "Consulta confirmada: o paciente recebe o link agora."),
    field("Motivo da recusa (opcional)", reason),
    decisionButton(appt, update, "refuse", "Recusar", "Pedido recusado: o horário voltou a ficar livre.", refusal),
  );
}

export async function inboxView(root) {
  const pending = appointmentList({
    filter: (a) => a.status === "requested" || (a.status === "confirmed" && Boolean(a.pending_move)),
    actions: (appt) => decisionButtons(appt, (u) => pending.update(u)),
  });
  pending.list.id = "pedidos";
  root.replaceChildren(
    h("h1", {}, "Pedidos de consulta"),
    h("p", { class: "hint" }, "Novos pedidos e pedidos de remarcação aparecem aqui na hora. Um pedido sem resposta expira no prazo indicado."),
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

// --- time off -------------------------------------------------------------------------------------

const HOUR = 3_600_000;

function count(list, one, many) {
  const n = Array.isArray(list) ? list.length : Number(list) || 0;
  return `${n} ${n === 1 ? one : many}`;
}

/** Time off: a range in which the doctor is away. Open slots inside go, requests inside are
 * refused; confirmed appointments inside stop it (409 `confirmed_in_range`, listed here) unless
 * the doctor chooses to cancel them with a justification. */
export async function timeOffView(root) {
  const start = new Date(Math.ceil((Date.now() + HOUR) / HOUR) * HOUR);
  const from = h("input", { type: "datetime-local", name: "from", required: true, value: localInput(start) });
  const to = h("input", { type: "datetime-local", name: "to", required: true, value: localInput(new Date(start.getTime() + 24 * HOUR)) });
  const reason = h("input", { name: "reason", maxlength: 1000 });
  const cancelBox = h("input", { type: "checkbox", name: "cancel_confirmed", id: "cancelar-confirmadas" });
  const justification = h("textarea", { name: "justification", minlength: 10, maxlength: 1000, rows: 3 });
  const justificationField = field("Justificativa para os pacientes (10 a 1000 caracteres)", justification);
  justificationField.hidden = true;
  const conflicts = h("div", { id: "conflitos", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Registrar ausência");
  const form = h(
    "form",
    { id: "ausencia" },
    h("div", { class: "grid2" }, field("De", from), field("Até", to, "No máximo 90 dias")),
    field("Motivo (opcional)", reason),
    h("div", { class: "check" }, cancelBox, h("label", { for: cancelBox.id }, "Cancelar as consultas confirmadas nesse período")),
    justificationField,
    conflicts,
    submit,
  );
  const listBox = h("ul", { class: "appointments", id: "ausencias" });

  cancelBox.addEventListener("change", () => {
    justificationField.hidden = !cancelBox.checked;
    justification.required = cancelBox.checked;
  });

  async function showConflicts(ids) {
    const appts = await Promise.all(
      ids.map((id) => call("GET", `/v1/appointments/${encodeURIComponent(id)}`).catch(() => null)),
    );
    conflicts.replaceChildren(
      h("p", { class: "error" }, "Há consultas confirmadas nesse período. Para registrar a ausência, marque “Cancelar as consultas confirmadas” e escreva uma justificativa: os pacientes serão avisados."),
      h(
        "ul",
        { class: "conflicts" },
        appts.filter(Boolean).map((a) =>
          h("li", { dataset: { appointmentId: a.id } }, `${fmt.dateTime(a.slot.start)} – ${fmt.time(a.slot.end)} · ${a.patient_name || `Paciente ${a.patient_id.slice(-6)}`}`),
        ),
      ),
    );
    cancelBox.focus();
  }

  async function load() {
    const page = await call("GET", "/v1/me/time-off");
    const items = [...page.items].sort((a, b) => a.from.localeCompare(b.from));
    listBox.replaceChildren(
      ...(items.length
        ? items.map((off) => {
            const remove = h("button", { type: "button", class: "secondary" }, "Remover");
            remove.addEventListener("click", () =>
              act(remove, async () => {
                await call("DELETE", `/v1/me/time-off/${encodeURIComponent(off.id)}`);
                announce("Ausência removida. Os horários removidos não voltam: publique-os de novo se quiser.");
                await load();
              }),
            );
            return h(
              "li",
              { class: "card appointment", dataset: { timeOffId: off.id } },
              h("p", { class: "when" }, `${fmt.dateTime(off.from)} – ${fmt.dateTime(off.to)}`),
              off.reason ? h("p", {}, off.reason) : null,
              h("p", { class: "hint" }, `${count(off.removed_slots, "horário removido", "horários removidos")}, ${count(off.refused_requests, "pedido recusado", "pedidos recusados")}, ${count(off.cancelled_appointments, "consulta cancelada", "consultas canceladas")}`),
              remove,
            );
          })
        : [h("li", {}, empty("Nenhuma ausência registrada."))]),
    );
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const body = { from: new Date(from.value).toISOString(), to: new Date(to.value).toISOString() };
      if (reason.value.trim()) body.reason = reason.value.trim();
      if (cancelBox.checked) {
        body.cancel_confirmed = true;
        body.justification = justification.value.trim();
      }
      let made;
      try {
        made = await call("POST", "/v1/me/time-off", { body });
      } catch (err) {
        if (err.code !== "confirmed_in_range") throw err;
        announce("Ausência não registrada: há consultas confirmadas no período.", "error");
        await showConflicts(err.problem.appointments || []);
        return;
      }
      conflicts.replaceChildren();
      announce(
        `Ausência registrada: ${count(made.removed_slots, "horário removido", "horários removidos")}, ${count(made.refused_requests, "pedido recusado", "pedidos recusados")}, ${count(made.cancelled_appointments, "consulta cancelada", "consultas canceladas")}.`,
      );
      await load();
    });
  });

  root.replaceChildren(
    h("h1", {}, "Ausências"),
    h("p", { class: "hint" }, `Horários no seu fuso (${fmt.zone()}). Numa ausência não se criam horários, nem por regra semanal.`),
    h("div", { class: "grid2" }, section("Nova ausência", form), section("Ausências registradas", listBox)),
  );
  await load();
}
