// Log-in and sign-up views for patients (e-mail or CPF) and doctors (CRM + UF), with the
// second step of a two-factor login when the account asks for one (mfa_required).

import { login, loginMfa, publicCall } from "./api.js";
import { CITIES, UFS, city } from "./cities.js";
import { act, announce, field, h, section, select } from "./ui.js";

function input(name, attrs = {}) {
  return h("input", { name, ...attrs });
}

function form(onsubmit, ...children) {
  const node = h("form", { novalidate: false }, children);
  node.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const button = node.querySelector("button[type=submit]");
    act(button, () => onsubmit(new FormData(node)));
  });
  return node;
}

function mfaStep(root, mfaToken, done) {
  const code = input("code", {
    inputmode: "numeric",
    autocomplete: "one-time-code",
    required: true,
    maxlength: 32,
  });
  root.replaceChildren(
    section(
      "Verificação em duas etapas",
      form(
        async (data) => {
          await loginMfa(mfaToken, String(data.get("code")).trim());
          done();
        },
        field("Código do aplicativo autenticador (ou de recuperação)", code),
        h("button", { type: "submit" }, "Confirmar"),
      ),
    ),
  );
  code.focus();
}

async function finish(root, role, body, done) {
  const result = await login(role, body);
  if (result.mfa) mfaStep(root, result.mfa, done);
  else done();
}

function patientLogin(root, done) {
  return section(
    "Entrar como paciente",
    form(
      async (data) => {
        const id = String(data.get("id")).trim();
        const body = { password: String(data.get("password")) };
        if (id.includes("@")) body.email = id;
        else body.cpf = id;
        await finish(root, "patient", body, done);
      },
      field("E-mail ou CPF", input("id", { required: true, autocomplete: "username" })),
      field(
        "Senha",
        input("password", { type: "password", required: true, autocomplete: "current-password" }),
      ),
      h("button", { type: "submit" }, "Entrar"),
    ),
  );
}

function doctorLogin(root, done) {
  return section(
    "Entrar como médico",
    form(
      async (data) => {
        const body = {
          crm: String(data.get("crm")).trim(),
          uf: String(data.get("uf")),
          password: String(data.get("password")),
        };
        await finish(root, "doctor", body, done);
      },
      field("CRM", input("crm", { required: true, inputmode: "numeric", pattern: "[0-9]{4,8}", autocomplete: "username" })),
      field("UF do CRM", select("uf", UFS.map((u) => [u, u]), "SP")),
      field(
        "Senha",
        input("password", { type: "password", required: true, autocomplete: "current-password" }),
      ),
      h("button", { type: "submit" }, "Entrar"),
    ),
  );
}

export function loginView(root, done) {
  root.replaceChildren(
    h("h1", {}, "Bem-vindo ao Health&Med"),
    h("p", {}, "Teleconsultas com agenda ao vivo. Entre ou ", h("a", { href: "#/cadastro" }, "crie sua conta"), "."),
    h("div", { class: "grid2" }, patientLogin(root, done), doctorLogin(root, done)),
  );
}

const password = () =>
  input("password", { type: "password", required: true, minlength: 8, autocomplete: "new-password" });

function patientSignup(root, done) {
  return section(
    "Sou paciente",
    form(
      async (data) => {
        const body = {
          name: String(data.get("name")).trim(),
          email: String(data.get("email")).trim(),
          cpf: String(data.get("cpf")).trim(),
          password: String(data.get("password")),
        };
        await publicCall("POST", "/v1/patients", body);
        announce("Conta criada.", "info", { carry: true });
        await finish(root, "patient", { email: body.email, password: body.password }, done);
      },
      field("Nome completo", input("name", { required: true, autocomplete: "name" })),
      field("E-mail", input("email", { type: "email", required: true, autocomplete: "email" })),
      field("CPF", input("cpf", { required: true, inputmode: "numeric" }), "Com ou sem pontuação"),
      field("Senha", password(), "Pelo menos 8 caracteres"),
      h("button", { type: "submit" }, "Criar conta de paciente"),
    ),
  );
}

function doctorSignup(root, done) {
  return section(
    "Sou médico",
    form(
      async (data) => {
        const place = city(String(data.get("city")));
        const body = {
          name: String(data.get("name")).trim(),
          crm: String(data.get("crm")).trim(),
          uf: String(data.get("uf")),
          email: String(data.get("email")).trim(),
          password: String(data.get("password")),
          specialty: String(data.get("specialty")).trim().toLowerCase(),
          price_cents: Math.round(Number(data.get("price")) * 100),
          location: { lat: place[2], lon: place[3] },
          city: place[0],
        };
        await publicCall("POST", "/v1/doctors", body);
        announce("Conta criada.", "info", { carry: true });
        await finish(root, "doctor", { crm: body.crm, uf: body.uf, password: body.password }, done);
      },
      field("Nome completo", input("name", { required: true, autocomplete: "name" })),
      field("CRM", input("crm", { required: true, inputmode: "numeric", pattern: "[0-9]{4,8}" })),
      field("UF do CRM", select("uf", UFS.map((u) => [u, u]), "SP")),
      field("E-mail", input("email", { type: "email", required: true, autocomplete: "email" })),
      field(
        "Especialidade",
        input("specialty", { required: true, pattern: "[a-z0-9-]+" }),
        "Em minúsculas, sem acentos, p. ex. cardiologia",
      ),
      field("Valor da consulta (R$)", input("price", { type: "number", min: 0, step: "0.01", required: true })),
      field("Cidade do consultório", select("city", CITIES.map((c) => [c[0], `${c[0]} (${c[1]})`]), "São Paulo")),
      field("Senha", password(), "Pelo menos 8 caracteres"),
      h("button", { type: "submit" }, "Criar conta de médico"),
    ),
  );
}

export function signupView(root, done) {
  root.replaceChildren(
    h("h1", {}, "Criar conta"),
    h("p", {}, "Já tem conta? ", h("a", { href: "#/entrar" }, "Entrar"), "."),
    h("div", { class: "grid2" }, patientSignup(root, done), doctorSignup(root, done)),
  );
}
