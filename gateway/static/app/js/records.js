// The health record: the patient's uploads, shares and access log; the records patients
// share with a doctor. Downloads go through fetch (the bearer token stays in a header) and
// a short-lived blob: URL, never a link with a token in it.

import { call, download, qs } from "./api.js";
import {
  KINDS,
  act,
  announce,
  doctorName,
  empty,
  field,
  fmt,
  h,
  isoDate,
  localInput,
  section,
  select,
} from "./ui.js";

const KIND_NAME = Object.fromEntries(KINDS);

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export async function save(path, filename) {
  const resp = await download(path);
  const url = URL.createObjectURL(await resp.blob());
  const a = h("a", { href: url, download: filename, class: "sr-only" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

function recordTitle(rec) {
  return rec.title || rec.filename;
}

export async function recordsView(root) {
  const recordsBox = h("div", { id: "registros" });
  const sharesBox = h("div", { id: "compartilhamentos" });
  const logBox = h("div", { id: "acessos" });
  const doctorChoice = h("select", { name: "doctor_id", required: true });
  let records = [];

  const file = h("input", { type: "file", name: "file", required: true, accept: ".pdf,.png,.jpg,.jpeg,.dcm,.txt,application/pdf,image/png,image/jpeg,application/dicom,text/plain" });
  const upload = h(
    "form",
    { id: "enviar" },
    field("Arquivo", file, "PDF, PNG, JPEG, DICOM ou texto"),
    field("Tipo", select("kind", KINDS, "exam")),
    field("Título (opcional)", h("input", { name: "title", maxlength: 200 })),
    field("Grupo (opcional)", h("input", { name: "group", maxlength: 100 }), "Um rótulo como cardiologia-2026"),
    h("button", { type: "submit" }, "Enviar"),
  );
  upload.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(upload.querySelector("button"), async () => {
      const data = new FormData(upload);
      for (const key of ["title", "group"]) if (!String(data.get(key)).trim()) data.delete(key);
      await call("POST", "/v1/me/records", { form: data });
      upload.reset();
      announce("Documento enviado.");
      await loadRecords();
    });
  });

  const expires = h("input", { type: "datetime-local", name: "expires_at", required: true });
  expires.value = localInput(new Date(Date.now() + 7 * 86_400_000));
  expires.min = localInput(new Date());
  const groupsInput = h("input", { name: "groups", maxlength: 300 });
  const share = h(
    "form",
    { id: "compartilhar" },
    field("Médico", doctorChoice, "Médicos com quem você tem ou teve consulta"),
    h("fieldset", { id: "escolha-registros" }, h("legend", {}, "Documentos")),
    field("Ou grupos inteiros (separados por vírgula)", groupsInput, "Um grupo compartilhado inclui documentos adicionados depois"),
    field("Válido até", expires, `No seu fuso (${fmt.zone()}); no máximo 365 dias`),
    h("button", { type: "submit" }, "Compartilhar"),
  );
  share.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(share.querySelector("button[type=submit]"), async () => {
      const ids = [...share.querySelectorAll("input[name=record]:checked")].map((i) => i.value);
      const groups = groupsInput.value.split(",").map((g) => g.trim()).filter(Boolean);
      if (!ids.length && !groups.length) {
        announce("Escolha ao menos um documento ou grupo.", "error");
        return;
      }
      const body = { doctor_id: doctorChoice.value, expires_at: new Date(expires.value).toISOString() };
      if (ids.length) body.record_ids = ids;
      if (groups.length) body.groups = groups;
      await call("POST", "/v1/me/shares", { body });
      announce("Compartilhamento criado.");
      await loadShares();
    });
  });

  async function loadRecords() {
    const page = await call("GET", `/v1/me/records${qs({ limit: 100 })}`);
    records = page.items;
    const rows = records.map((rec) =>
      h(
        "tr",
        { dataset: { recordId: rec.id } },
        h("td", {}, recordTitle(rec)),
        h("td", {}, KIND_NAME[rec.kind] || rec.kind),
        h("td", {}, rec.group || "—"),
        h("td", {}, size(rec.size)),
        h("td", {}, fmt.dateTime(rec.uploaded_at)),
        h(
          "td",
          { class: "actions" },
          h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, () => save(`/v1/me/records/${rec.id}/content`, rec.filename)) }, "Baixar"),
          h("button", { type: "button", class: "danger", onclick: (ev) => act(ev.currentTarget, async () => {
            await call("DELETE", `/v1/me/records/${rec.id}`);
            announce("Documento apagado.");
            await loadRecords();
          }) }, "Apagar"),
        ),
      ),
    );
    recordsBox.replaceChildren(
      records.length
        ? h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "sr-only" }, "Meus documentos"), h("thead", {}, h("tr", {}, ["Documento", "Tipo", "Grupo", "Tamanho", "Enviado em", "Ações"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)))
        : empty("Nenhum documento ainda."),
    );
    const box = share.querySelector("#escolha-registros");
    box.replaceChildren(
      h("legend", {}, "Documentos"),
      ...records.map((rec) => {
        const id = `rec-${rec.id}`;
        return h("div", { class: "check" }, h("input", { type: "checkbox", name: "record", value: rec.id, id }), h("label", { for: id }, recordTitle(rec)));
      }),
    );
  }

  async function loadDoctors() {
    const page = await call("GET", `/v1/appointments${qs({ limit: 100 })}`);
    const ids = [...new Set(page.items.map((a) => a.doctor_id))];
    const names = await Promise.all(ids.map((id) => doctorName(call, id)));
    doctorChoice.replaceChildren(...ids.map((id, i) => h("option", { value: id }, names[i])));
    share.querySelector("button[type=submit]").disabled = !ids.length;
    if (!ids.length) doctorChoice.append(h("option", { value: "" }, "Marque uma consulta primeiro"));
  }

  async function loadShares() {
    const page = await call("GET", `/v1/me/shares${qs({ limit: 100 })}`);
    const title = new Map(records.map((r) => [r.id, recordTitle(r)]));
    const items = await Promise.all(
      page.items.map(async (s) => {
        const what = [...s.record_ids.map((id) => title.get(id) || "documento apagado"), ...s.groups.map((g) => `grupo ${g}`)].join(", ");
        return h(
          "li",
          { class: "card", dataset: { shareId: s.id, active: String(s.active) } },
          h("p", {}, h("strong", {}, await doctorName(call, s.doctor_id)), `: ${what}`),
          h("p", { class: "hint" }, s.active ? `Ativo até ${fmt.dateTime(s.expires_at)}` : "Encerrado"),
          s.active
            ? h("button", { type: "button", class: "danger", onclick: (ev) => act(ev.currentTarget, async () => {
                await call("DELETE", `/v1/me/shares/${s.id}`);
                announce("Compartilhamento revogado.");
                await loadShares();
              }) }, "Revogar")
            : null,
        );
      }),
    );
    sharesBox.replaceChildren(items.length ? h("ul", { class: "plain" }, items) : empty("Nada compartilhado."));
  }

  async function loadLog() {
    const page = await call("GET", `/v1/me/records/access-log${qs({ limit: 100 })}`);
    const title = new Map(records.map((r) => [r.id, recordTitle(r)]));
    const rows = await Promise.all(
      page.items.map(async (e) =>
        h("tr", {}, h("td", {}, fmt.dateTime(e.at)), h("td", {}, e.doctor_name || (await doctorName(call, e.doctor_id))), h("td", {}, title.get(e.record_id) || "documento apagado"), h("td", {}, e.action)),
      ),
    );
    logBox.replaceChildren(
      rows.length
        ? h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "sr-only" }, "Acessos de médicos"), h("thead", {}, h("tr", {}, ["Quando", "Médico", "Documento", "Ação"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)))
        : empty("Nenhum médico acessou seus documentos."),
    );
  }

  const refreshLog = h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, loadLog) }, "Atualizar");
  root.replaceChildren(
    h("h1", {}, "Meu prontuário"),
    h("div", { class: "grid2" }, section("Enviar documento", upload), section("Compartilhar com um médico", share)),
    section("Meus documentos", recordsBox),
    section("Compartilhamentos", sharesBox),
    section("Quem acessou", refreshLog, logBox),
  );
  await loadRecords();
  await Promise.all([loadDoctors(), loadShares(), loadLog()]);
}

export async function sharedView(root) {
  const box = h("div", { id: "compartilhados" });
  root.replaceChildren(h("h1", {}, "Prontuários compartilhados"), h("p", { class: "hint" }, "Documentos que seus pacientes compartilharam com você, enquanto o compartilhamento valer. Cada acesso fica registrado para o paciente."), box);
  const page = await call("GET", `/v1/appointments${qs({ limit: 100 })}`);
  const names = new Map(page.items.map((a) => [a.patient_id, a.patient_name]));
  const patients = [...names.keys()];
  const groups = await Promise.all(
    patients.map(async (pid) => {
      const recs = await call("GET", `/v1/patients/${encodeURIComponent(pid)}/records${qs({ limit: 100 })}`).catch(() => ({ items: [] }));
      if (!recs.items.length) return null;
      return section(
        names.get(pid) || `Paciente ${pid.slice(-6)}`,
        h(
          "ul",
          { class: "plain" },
          recs.items.map((rec) =>
            h(
              "li",
              { class: "shared-record", dataset: { recordId: rec.id } },
              `${recordTitle(rec)} · ${KIND_NAME[rec.kind] || rec.kind} · ${size(rec.size)} · ${fmt.dateTime(rec.uploaded_at)} `,
              h("button", { type: "button", class: "secondary", onclick: (ev) => act(ev.currentTarget, () => save(`/v1/patients/${encodeURIComponent(pid)}/records/${rec.id}/content`, rec.filename)) }, "Baixar"),
            ),
          ),
        ),
      );
    }),
  );
  const shown = groups.filter(Boolean);
  box.replaceChildren(...(shown.length ? shown : [empty("Nenhum documento compartilhado com você no momento.")]));
}
