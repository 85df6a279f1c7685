// Patient views: search doctors, a doctor's live agenda and booking, own appointments live.

import { call, current, qs } from "./api.js";
import { CITIES, city } from "./cities.js";
import { live } from "./live.js";
import {
  act,
  announce,
  badge,
  doctorName,
  empty,
  field,
  fmt,
  h,
  section,
  select,
} from "./ui.js";
import { joinWaitlist } from "./waitlist.js";

const AGENDA_DAYS = 14;
const oneDecimal = new Intl.NumberFormat("pt-BR", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

// --- search ---------------------------------------------------------------------------------

function card(doctor) {
  const rating = doctor.rating && doctor.rating.count
    ? `${oneDecimal.format(doctor.rating.average)} de 5 (${doctor.rating.count} ${doctor.rating.count === 1 ? "avaliação" : "avaliações"})`
    : "Sem avaliações ainda";
  const facts = [
    ["Especialidade", doctor.specialty],
    ["CRM", `${doctor.crm}/${doctor.uf}`],
    ["Cidade", doctor.city || "—"],
    ["Avaliação", rating],
    ["Consulta", fmt.money(doctor.price)],
  ];
  if (doctor.distance_km !== undefined) facts.push(["Distância", `${oneDecimal.format(doctor.distance_km)} km`]);
  facts.push([
    "Próximo horário livre",
    doctor.next_open_slot ? fmt.dateTime(doctor.next_open_slot) : "nenhum no momento",
  ]);
  return h(
    "li",
    { class: "card doctor", dataset: { doctorId: doctor.id } },
    h("h3", {}, doctor.name),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("a", { class: "button", href: `#/medico/${encodeURIComponent(doctor.id)}` }, "Ver agenda e reservar"),
  );
}

export async function searchView(root) {
  const specialties = await call("GET", "/v1/specialties");
  const spec = select("specialty", [["", "Todas"], ...specialties.items.map((s) => [s.slug, s.slug])], "");
  const where = select("city", [["", "Sem localização"], ["here", "Minha localização"], ...CITIES.map((c) => [c[0], `${c[0]} (${c[1]})`])], "");
  const km = h("input", { name: "max_km", type: "number", min: 1, step: 1, inputmode: "numeric" });
  const rating = select("min_rating", [["", "Qualquer"], ["3", "3 ou mais"], ["4", "4 ou mais"], ["4.5", "4,5 ou mais"]], "");
  const results = h("ul", { class: "cards", "aria-live": "polite", id: "resultados" });
  const form = h(
    "form",
    { class: "filters", role: "search" },
    field("Especialidade", spec),
    field("Perto de", where, "“Minha localização” pede permissão ao navegador"),
    field("Distância máxima (km)", km),
    field("Avaliação mínima", rating),
    h("button", { type: "submit" }, "Buscar"),
  );

  async function position() {
    if (where.value === "here") {
      const pos = await new Promise((resolve, reject) =>
        navigator.geolocation.getCurrentPosition(resolve, reject, { timeout: 10_000 }),
      ).catch(() => null);
      if (!pos) {
        announce("Não foi possível obter sua localização: escolha uma cidade.", "error");
        return null;
      }
      return [pos.coords.latitude, pos.coords.longitude];
    }
    const place = city(where.value);
    return place ? [place[2], place[3]] : null;
  }

  async function run() {
    const at = await position();
    if (km.value && !at) {
      announce("Para filtrar por distância, escolha uma cidade ou sua localização.", "error");
      return;
    }
    const query = {
      specialty: spec.value,
      min_rating: rating.value,
      lat: at && at[0],
      lon: at && at[1],
      max_km: at ? km.value : "",
      limit: 50,
    };
    const page = await call("GET", `/v1/doctors${qs(query)}`);
    results.replaceChildren(...page.items.map(card));
    if (!page.items.length) results.append(h("li", {}, empty("Nenhum médico encontrado com esses filtros.")));
    announce(`${page.items.length} médico(s) encontrado(s).`);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(form.querySelector("button"), run);
  });
  root.replaceChildren(h("h1", {}, "Encontrar um médico"), section("Filtros", form), h("h2", { class: "sr-only" }, "Resultados"), results);
  await run();
}

// --- a doctor's agenda ------------------------------------------------------------------------

function dayKey(iso) {
  const d = new Date(iso);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** A doctor's agenda, live; `#/medico/<doctor>/remarcar/<appointment>` picks the new slot of a
 * move instead of a new booking (the same doctor's open slots only, as the API requires). */
export async function agendaView(root, doctorId, mode, movingId) {
  const doctor = await call("GET", `/v1/doctors/${encodeURIComponent(doctorId)}`);
  const moving = mode === "remarcar" && movingId ? await call("GET", `/v1/appointments/${encodeURIComponent(movingId)}`) : null;
  const slots = new Map();
  let price = null;
  const grid = h("div", { class: "agenda", id: "agenda" });
  const confirm = h("div", { class: "confirm", hidden: true, role: "region", "aria-label": "Confirmar reserva" });
  let chosen = null;

  function slotButton(slot) {
    const taken = slot.status !== "open";
    const label = `${fmt.time(slot.start)}${taken ? " (ocupado)" : ""}`;
    return h(
      "button",
      {
        type: "button",
        class: `slot${taken ? " taken" : ""}`,
        disabled: taken,
        "aria-disabled": taken ? "true" : undefined,
        "aria-pressed": chosen === slot.id ? "true" : "false",
        dataset: { slotId: slot.id, status: slot.status },
        onclick: () => choose(slot.id),
      },
      label,
    );
  }

  function render() {
    const days = new Map();
    for (const slot of [...slots.values()].sort((a, b) => a.start.localeCompare(b.start))) {
      const key = dayKey(slot.start);
      if (!days.has(key)) days.set(key, []);
      days.get(key).push(slot);
    }
    if (chosen && (!slots.has(chosen) || slots.get(chosen).status !== "open")) {
      if (chosen) announce("O horário escolhido acabou de ser reservado por outra pessoa.", "error");
      chosen = null;
      confirm.hidden = true;
    }
    grid.replaceChildren(
      ...(days.size
        ? [...days].map(([key, list]) =>
            h(
              "section",
              { class: "day", "aria-label": fmt.day(new Date(key)) },
              h("h3", {}, fmt.day(new Date(key))),
              h("div", { class: "slots" }, list.map(slotButton)),
            ),
          )
        : [empty("Nenhum horário nos próximos 14 dias.")]),
    );
  }

  function choose(id) {
    chosen = id;
    const slot = slots.get(id);
    const button = h("button", { type: "button", id: "confirmar" }, moving ? "Confirmar remarcação" : "Confirmar reserva");
    button.addEventListener("click", () => act(button, () => (moving ? move(slot) : book(slot))));
    confirm.replaceChildren(
      h("p", {}, moving
        ? `Remarcar para ${fmt.dateTime(slot.start)} (até ${fmt.time(slot.end)}).`
        : `Consulta em ${fmt.dateTime(slot.start)} (até ${fmt.time(slot.end)}) por ${fmt.money(price)}.`),
      button,
      h("button", { type: "button", class: "secondary", onclick: () => { chosen = null; confirm.hidden = true; render(); } }, "Escolher outro"),
    );
    confirm.hidden = false;
    render();
    button.focus();
  }

  async function book(slot) {
    await call("POST", "/v1/appointments", {
      body: { slot_id: slot.id },
      headers: { "Idempotency-Key": crypto.randomUUID() },
    });
    announce("Pedido enviado. O médico tem até o prazo indicado para responder.", "info", { carry: true });
    location.hash = "#/consultas";
  }

  async function move(slot) {
    const moved = await call("POST", `/v1/appointments/${encodeURIComponent(moving.id)}/reschedule`, { body: { slot_id: slot.id } });
    announce(
      moved.pending_move
        ? `Pedido de remarcação para ${fmt.dateTime(slot.start)} enviado: a consulta atual continua marcada até o médico responder.`
        : `Consulta remarcada para ${fmt.dateTime(moved.slot.start)}. O médico tem até o prazo indicado para responder.`,
      "info",
      { carry: true },
    );
    location.hash = "#/consultas";
  }

  async function resync() {
    const from = new Date();
    const to = new Date(from.getTime() + AGENDA_DAYS * 86_400_000);
    const agenda = await call("GET", `/v1/doctors/${encodeURIComponent(doctorId)}/slots${qs({ from: from.toISOString(), to: to.toISOString() })}`);
    price = agenda.price;
    slots.clear();
    for (const slot of agenda.slots) slots.set(slot.id, slot);
    render();
  }

  const topic = `doctor.${doctorId}.slots`;
  const off = live.onEvent((msg) => {
    if (msg.topic !== topic || msg.event !== "slot.updated") return;
    const d = msg.data;
    if (d.status === "removed") slots.delete(d.slot_id);
    else if (slots.has(d.slot_id) || new Date(d.start) > new Date()) {
      slots.set(d.slot_id, { id: d.slot_id, start: d.start, end: d.end, status: d.status });
    }
    render();
  });

  const facts = `${doctor.specialty} · CRM ${doctor.crm}/${doctor.uf}${doctor.city ? ` · ${doctor.city}` : ""}`;
  root.replaceChildren(
    moving
      ? h("p", {}, h("a", { href: "#/consultas" }, "← Voltar às consultas"))
      : h("p", {}, h("a", { href: "#/buscar" }, "← Voltar à busca")),
    h("h1", {}, moving ? "Remarcar consulta" : doctor.name),
    h("p", { class: "lead" }, moving ? `${doctor.name} · ${facts}` : facts),
    moving
      ? h("p", { class: "current" }, `Consulta atual: ${fmt.dateTime(moving.slot.start)} – ${fmt.time(moving.slot.end)}. Escolha um novo horário livre.`)
      : null,
    section(
      "Horários",
      h("p", { class: "hint" }, `Horários no seu fuso (${fmt.zone()}); a agenda se atualiza sozinha.`),
      grid,
      confirm,
    ),
    moving ? null : joinWaitlist(doctorId),
  );
  await resync();
  // data-live marks the agenda as following events (after the resync that `subscribed` starts).
  live.subscribe(topic, () =>
    resync().then(
      () => (grid.dataset.live = "on"),
      () => {},
    ),
  );
  return () => {
    off();
    live.unsubscribe(topic);
  };
}

// --- own appointments ---------------------------------------------------------------------------

/** The list of own appointments, kept current by events; shared by patients and doctors. */
export function appointmentList({ filter = () => true, actions, query = () => ({ from: new Date(Date.now() - 86_400_000).toISOString() }), order = 1 }) {
  const items = new Map();
  const list = h("ul", { class: "appointments", "aria-live": "polite" });

  function row(appt) {
    const who = h("span", { class: "who" }, "…");
    if (current().role === "patient") {
      const spec = appt.doctor_specialty ? ` (${appt.doctor_specialty})` : "";
      if (appt.doctor_name) who.textContent = appt.doctor_name + spec;
      else doctorName(call, appt.doctor_id).then((n) => (who.textContent = n));
    } else {
      who.textContent = appt.patient_name || `Paciente ${appt.patient_id.slice(-6)}`;
    }
    const details = [
      h("p", { class: "when" }, `${fmt.dateTime(appt.slot.start)} – ${fmt.time(appt.slot.end)}`),
      h("p", {}, who, " · ", fmt.money(appt.price)),
    ];
    if (appt.status === "requested") details.push(h("p", { class: "hint" }, `Resposta até ${fmt.dateTime(appt.decision_deadline)}`));
    if (appt.pending_move) {
      const m = appt.pending_move;
      details.push(
        h(
          "p",
          { class: "pending-move" },
          current().role === "patient"
            ? `Remarcação pedida para ${fmt.dateTime(m.slot.start)} – ${fmt.time(m.slot.end)}: aguardando o médico (resposta até ${fmt.dateTime(m.decision_deadline)}).`
            : `O paciente pediu para remarcar para ${fmt.dateTime(m.slot.start)} – ${fmt.time(m.slot.end)} (responda até ${fmt.dateTime(m.decision_deadline)}).`,
        ),
      );
    }
    if (appt.meeting && new Date(appt.meeting.ends_at) > new Date()) {
      details.push(
        h(
          "p",
          { class: "meeting" },
          h("a", { href: appt.meeting.url, target: "_blank", rel: "noopener noreferrer", class: "button meeting-link" }, "Entrar na teleconsulta"),
          h("span", { class: "hint" }, ` começa às ${fmt.time(appt.meeting.starts_at)}; o link funciona a partir de 10 minutos antes`),
        ),
      );
    }
    if (appt.cancellation) {
      const by = { patient: "pelo paciente", doctor: "pelo médico", system: "pelo sistema" }[appt.cancellation.by] || "";
      details.push(h("p", { class: "hint" }, `Cancelada ${by}: ${appt.cancellation.justification}`));
    }
    if (appt.refusal && appt.refusal.reason) details.push(h("p", { class: "hint" }, `Motivo: ${appt.refusal.reason}`));
    return h(
      "li",
      { class: "card appointment", dataset: { appointmentId: appt.id, status: appt.status } },
      h("div", { class: "row" }, badge(appt.status)),
      details,
      actions(appt),
    );
  }

  function render() {
    const shown = [...items.values()].filter(filter).sort((a, b) => order * a.slot.start.localeCompare(b.slot.start));
    list.replaceChildren(...(shown.length ? shown.map(row) : [h("li", {}, empty("Nada por aqui."))]));
  }

  async function resync() {
    const page = await call("GET", `/v1/appointments${qs({ limit: 100, ...query() })}`);
    items.clear();
    for (const a of page.items) items.set(a.id, a);
    render();
  }

  const off = live.onEvent((msg) => {
    if (!msg.event.startsWith("appointment.")) return;
    if (!items.has(msg.data.id) && !filter(msg.data)) return;
    items.set(msg.data.id, msg.data);
    render();
  });

  function update(appt) {
    items.set(appt.id, appt);
    render();
  }

  return { list, resync, update, stop: off };
}

/** A cancel disclosure: a justification (10-1000 characters) and a confirm button. A doctor
 * cancels only a confirmed appointment (a request is refused instead); the patient is told. */
export function cancelControl(appt, done) {
  const doctor = current().role === "doctor";
  if (appt.status !== "confirmed" && (doctor || appt.status !== "requested")) return null;
  if (new Date(appt.slot.end) <= new Date()) return null;
  const text = h("textarea", { name: "justification", required: true, minlength: 10, maxlength: 1000, rows: 3 });
  const form = h(
    "form",
    { class: "cancel" },
    field("Justificativa (10 a 1000 caracteres)", text),
    h("button", { type: "submit", class: "danger" }, "Confirmar cancelamento"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(form.querySelector("button"), async () => {
      const updated = await call("POST", `/v1/appointments/${encodeURIComponent(appt.id)}/cancel`, {
        body: { justification: text.value.trim() },
      });
      announce(doctor ? "Consulta cancelada: o paciente foi avisado." : "Consulta cancelada.");
      done(updated);
    });
  });
  return h("details", { class: "cancel-box" }, h("summary", {}, "Cancelar consulta"), form);
}

/** "Remarcar": a requested or confirmed appointment still ahead, with no move pending, opens
 * its doctor's agenda in move mode. */
export function rescheduleLink(appt) {
  if (appt.status !== "requested" && appt.status !== "confirmed") return null;
  if (appt.pending_move || new Date(appt.slot.start) <= new Date()) return null;
  const href = `#/medico/${encodeURIComponent(appt.doctor_id)}/remarcar/${encodeURIComponent(appt.id)}`;
  return h("p", {}, h("a", { href, class: "reschedule" }, "Remarcar consulta"));
}

const MOVE_NEWS = {
  "appointment.rescheduled": (a) => `Consulta remarcada para ${fmt.dateTime(a.slot.start)}.`,
  "appointment.move_refused": (a) => `O médico recusou a remarcação: a consulta continua em ${fmt.dateTime(a.slot.start)}.`,
  "appointment.move_lapsed": (a) => `O médico não respondeu à remarcação a tempo: a consulta continua em ${fmt.dateTime(a.slot.start)}.`,
};

// --- rating a past consultation -------------------------------------------------------------------

const rated = new Map(); // appointment id -> stars, for this session (the API answers 409 after)
const STARS = ["1 estrela", "2 estrelas", "3 estrelas", "4 estrelas", "5 estrelas"];

/** Stars (1 to 5) and an optional comment, for a confirmed consultation that has ended. */
export function ratingControl(appt) {
  if (appt.status !== "confirmed" || new Date(appt.slot.end) > new Date()) return null;
  const done = (text) => h("p", { class: "rated" }, text);
  if (rated.has(appt.id)) {
    const stars = rated.get(appt.id);
    return done(stars ? `Sua avaliação: ${STARS[stars - 1]}. Obrigado!` : "Esta consulta já foi avaliada.");
  }
  const name = `stars-${appt.id}`;
  const stars = h(
    "fieldset",
    { class: "stars" },
    h("legend", {}, "Sua nota"),
    STARS.map((label, i) => {
      const id = `${name}-${i + 1}`;
      return h("div", { class: "check" }, h("input", { type: "radio", name, id, value: i + 1, required: true }), h("label", { for: id }, label));
    }),
  );
  const comment = h("textarea", { name: "comment", maxlength: 1000, rows: 2 });
  const form = h("form", { class: "rating" }, stars, field("Comentário (opcional)", comment), h("button", { type: "submit" }, "Enviar avaliação"));
  const box = h("details", { class: "rating-box" }, h("summary", {}, "Avaliar consulta"), form);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chosen = Number(form.querySelector("input[type=radio]:checked").value);
    act(form.querySelector("button"), async () => {
      const body = { stars: chosen };
      if (comment.value.trim()) body.comment = comment.value.trim();
      try {
        await call("POST", `/v1/appointments/${encodeURIComponent(appt.id)}/rating`, { body });
        rated.set(appt.id, chosen);
        announce("Avaliação enviada. Obrigado!");
      } catch (err) {
        if (err.code !== "already_rated") throw err;
        rated.set(appt.id, 0);
        announce("Esta consulta já tinha sido avaliada.");
      }
      const shown = ratingControl(appt);
      box.replaceWith(shown);
      shown.tabIndex = -1;
      shown.focus();
    });
  });
  return box;
}

export async function appointmentsView(root) {
  // Earlier consultations (started more than a day ago) are listed apart, newest first, with
  // the rating of the confirmed ones; the main list holds the current ones, live.
  const boundary = () => new Date(Date.now() - 86_400_000).toISOString();
  const view = appointmentList({
    actions: (appt) => [rescheduleLink(appt), cancelControl(appt, (updated) => view.update(updated)), ratingControl(appt)],
    query: () => ({ from: boundary() }),
  });
  const past = appointmentList({
    filter: (a) => a.status === "confirmed" && new Date(a.slot.start) < new Date(boundary()),
    actions: (appt) => ratingControl(appt),
    query: () => ({ status: "confirmed", to: boundary(), from: new Date(Date.now() - 365 * 86_400_000).toISOString() }),
    order: -1,
  });
  view.list.id = "consultas";
  past.list.id = "anteriores";
  root.replaceChildren(
    h("h1", {}, "Minhas consultas"),
    h("p", { class: "hint" }, `Horários no seu fuso (${fmt.zone()}). As respostas dos médicos aparecem aqui na hora.`),
    view.list,
    section("Consultas anteriores", h("p", { class: "hint" }, "Consultas confirmadas que já aconteceram: avalie o atendimento."), past.list),
  );
  await Promise.all([view.resync(), past.resync()]);
  const offReady = live.onReady(() => Promise.all([view.resync(), past.resync()]).catch(() => {}));
  const offNews = live.onEvent((msg) => {
    if (MOVE_NEWS[msg.event] && msg.data && msg.data.slot) announce(MOVE_NEWS[msg.event](msg.data));
  });
  return () => {
    view.stop();
    past.stop();
    offReady();
    offNews();
  };
}
