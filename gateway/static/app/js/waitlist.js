// The waitlist: a patient waits for a doctor's freed slots in a window of their own; a slot
// freed inside it is held for the first entry in line (an offer, for a few minutes), which the
// patient books or declines. The doctor sees their own list, in order.

import { call, current } from "./api.js";
import { live } from "./live.js";
import { act, announce, doctorName, empty, field, fmt, h, localInput, section } from "./ui.js";

const HOUR = 3_600_000;

function windowText(entry) {
  return `De ${fmt.dateTime(entry.from)} a ${fmt.dateTime(entry.to)}`;
}

/** A page of one list kept current: `resync` re-reads it on every waitlist or appointment
 * event, after each (re)connection and on "Atualizar". Resolves, once shown, to its cleanup. */
async function livePage(root, title, hint, list, resync) {
  const off = live.onEvent((msg) => {
    if (msg.event.startsWith("waitlist.") || msg.event.startsWith("appointment.")) resync().catch(() => {});
  });
  root.replaceChildren(
    h("h1", {}, title),
    h("p", { class: "hint" }, hint),
    h("div", { class: "row" }, h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, resync) }, "Atualizar")),
    list,
  );
  await resync();
  const offReady = live.onReady(() => resync().catch(() => {}));
  return () => {
    off();
    offReady();
  };
}

/** The join form under a doctor's agenda: a window (local date and time) → POST /v1/waitlist. */
export function joinWaitlist(doctorId) {
  const start = new Date(Math.ceil((Date.now() + HOUR) / HOUR) * HOUR);
  const from = h("input", { type: "datetime-local", name: "from", required: true, value: localInput(start), min: localInput(new Date()) });
  const to = h("input", { type: "datetime-local", name: "to", required: true, value: localInput(new Date(start.getTime() + 7 * 24 * HOUR)) });
  const result = h("p", { class: "hint", id: "espera-resultado", "aria-live": "polite" });
  const form = h(
    "form",
    { id: "espera-entrar" },
    h("div", { class: "grid2" }, field("A partir de", from), field("Até", to, "No máximo 62 dias")),
    h("button", { type: "submit" }, "Entrar na lista de espera"),
    result,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(form.querySelector("button"), async () => {
      const entry = await call("POST", "/v1/waitlist", {
        body: { doctor_id: doctorId, from: new Date(from.value).toISOString(), to: new Date(to.value).toISOString() },
      });
      result.replaceChildren(
        `Você entrou na lista de espera: posição ${entry.position}. `,
        h("a", { href: "#/espera" }, "Ver minha lista de espera"),
      );
      announce(`Você está na lista de espera (posição ${entry.position}).`);
    });
  });
  return section(
    "Lista de espera",
    h(
      "p",
      { class: "hint" },
      "Nenhum horário serve? Quando um horário deste médico ficar livre dentro do seu período, ele fica reservado para você por alguns minutos, na ordem de chegada.",
    ),
    form,
  );
}

function offerBox(entry, refresh) {
  const { offer } = entry;
  const book = h("button", { type: "button", class: "accept" }, "Reservar este horário");
  const decline = h("button", { type: "button", class: "secondary" }, "Recusar oferta");
  book.addEventListener("click", () =>
    act(book, async () => {
      await call("POST", "/v1/appointments", {
        body: { slot_id: offer.slot.id },
        headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      announce("Pedido enviado. O médico tem até o prazo indicado para responder.", "info", { carry: true });
      location.hash = "#/consultas";
    }),
  );
  decline.addEventListener("click", () =>
    act(decline, async () => {
      await call("POST", `/v1/waitlist/${encodeURIComponent(entry.id)}/decline`);
      announce("Oferta recusada: o horário passou para o próximo da fila. Você continua na lista.");
      await refresh();
    }),
  );
  return h(
    "div",
    { class: "offer", role: "group", "aria-label": "Horário reservado para você" },
    h("p", { class: "when" }, `Horário reservado para você: ${fmt.dateTime(offer.slot.start)} – ${fmt.time(offer.slot.end)}`),
    h("p", { class: "hint" }, `Reserve até ${fmt.time(offer.hold_expires_at)}; depois disso ele passa para o próximo da fila.`),
    h("div", { class: "row" }, book, decline),
  );
}

/** The patient's own entries, with their place in line and any offer, live. */
export async function waitlistView(root) {
  const list = h("ul", { class: "appointments", id: "espera", "aria-live": "polite" });

  function row(entry) {
    const who = h("span", { class: "who" }, "…");
    doctorName(call, entry.doctor_id).then((n) => (who.textContent = n));
    const leave = h("button", { type: "button", class: "danger" }, "Sair da lista");
    leave.addEventListener("click", () =>
      act(leave, async () => {
        await call("DELETE", `/v1/waitlist/${encodeURIComponent(entry.id)}`);
        announce("Você saiu da lista de espera.");
        await resync();
        root.querySelector("h1").focus();
      }),
    );
    return h(
      "li",
      { class: "card appointment", dataset: { entryId: entry.id, offered: entry.offer ? "true" : "false" } },
      h("h2", { class: "entry-doctor" }, who),
      h("p", {}, windowText(entry)),
      h("p", { class: "position" }, `Posição na fila: ${entry.position}`),
      entry.offer ? offerBox(entry, resync) : null,
      h("div", { class: "row" }, h("a", { href: `#/medico/${encodeURIComponent(entry.doctor_id)}` }, "Ver agenda do médico"), leave),
    );
  }

  async function resync() {
    const page = await call("GET", "/v1/waitlist");
    list.replaceChildren(
      ...(page.items.length
        ? page.items.map(row)
        : [h("li", {}, empty("Você não está em nenhuma lista de espera. Entre numa pela agenda de um médico."))]),
    );
  }

  return livePage(root, "Minha lista de espera", `Horários no seu fuso (${fmt.zone()}). Um horário reservado para você aparece aqui na hora.`, list, resync);
}

/** A notice anywhere in the app when a slot is held for the patient (`waitlist.offered`). */
export function offerNotices() {
  return live.onEvent((msg) => {
    if (msg.event !== "waitlist.offered" || current()?.role !== "patient") return;
    const { slot, hold_expires_at: until } = msg.data;
    announce(`Um horário ficou livre para você: ${fmt.dateTime(slot.start)}. Reserve até ${fmt.time(until)} em “Lista de espera”.`);
  });
}

/** The doctor's own waitlist, first come first served, with the slot held for each. */
export async function doctorWaitlistView(root) {
  const list = h("ol", { class: "appointments", id: "espera-medico" });

  async function resync() {
    const page = await call("GET", "/v1/me/waitlist?limit=100");
    list.replaceChildren(
      ...(page.items.length
        ? page.items.map((entry) =>
            h(
              "li",
              { class: "card appointment", dataset: { entryId: entry.id } },
              h("p", { class: "when" }, `${entry.position}º · Paciente ${entry.patient_id.slice(-6)}`),
              h("p", {}, windowText(entry)),
              entry.offer
                ? h("p", { class: "hint offer-held" }, `Horário reservado: ${fmt.dateTime(entry.offer.slot.start)}, até ${fmt.time(entry.offer.hold_expires_at)}`)
                : null,
            ),
          )
        : [h("li", {}, empty("Ninguém na sua lista de espera."))]),
    );
  }

  return livePage(root, "Lista de espera", `Pacientes esperando por um horário seu, na ordem de chegada. Horários no seu fuso (${fmt.zone()}).`, list, resync);
}
