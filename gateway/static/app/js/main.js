// The application shell: a hash router (the hash names a view, never a token), the menu of
// the signed-in role, the live-connection indicator and the session's life cycle.

import { current, logout, onSessionChange } from "./api.js";
import { loginView, signupView } from "./auth.js";
import { inboxView, publishView, timeOffView, weekView } from "./doctor.js";
import { live } from "./live.js";
import { agendaView, appointmentsView, searchView } from "./patient.js";
import { recordsView, sharedView } from "./records.js";
import { announce, errorText, h, pageChanged } from "./ui.js";
import { doctorWaitlistView, offerNotices, waitlistView } from "./waitlist.js";

const MENUS = {
  patient: [
    ["#/buscar", "Buscar médicos"],
    ["#/consultas", "Minhas consultas"],
    ["#/espera", "Lista de espera"],
    ["#/prontuario", "Prontuário"],
  ],
  doctor: [
    ["#/pedidos", "Pedidos"],
    ["#/agenda", "Agenda"],
    ["#/horarios", "Publicar horários"],
    ["#/ausencias", "Ausências"],
    ["#/espera", "Lista de espera"],
    ["#/compartilhados", "Prontuários"],
  ],
};

const VIEWS = {
  patient: {
    buscar: searchView,
    medico: agendaView,
    consultas: appointmentsView,
    espera: waitlistView,
    prontuario: recordsView,
  },
  doctor: {
    pedidos: inboxView,
    agenda: weekView,
    horarios: publishView,
    ausencias: timeOffView,
    espera: doctorWaitlistView,
    compartilhados: sharedView,
  },
};

const LIVE_TEXT = { on: "Ao vivo", connecting: "Conectando…", retrying: "Reconectando…", off: "Desconectado" };

const main = document.getElementById("conteudo");
const menu = document.getElementById("menu");
const exit = document.getElementById("sair");
const badge = document.getElementById("live");
let cleanup = null;
let rendering = 0;

function home(role) {
  return MENUS[role][0][0];
}

function renderMenu(route) {
  const me = current();
  exit.hidden = !me;
  badge.hidden = !me;
  if (!me) {
    menu.replaceChildren();
    return;
  }
  menu.replaceChildren(
    h(
      "ul",
      {},
      MENUS[me.role].map(([href, text]) =>
        h("li", {}, h("a", { href, "aria-current": href === `#/${route}` ? "page" : undefined }, text)),
      ),
    ),
  );
}

async function render() {
  const ticket = ++rendering;
  pageChanged();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const [route, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const me = current();
  if (!me) {
    renderMenu(route);
    const done = () => {
      location.hash = home(current().role);
    };
    if (route === "cadastro") signupView(main, done);
    else {
      if (location.hash !== "#/entrar") history.replaceState(null, "", "#/entrar");
      loginView(main, done);
    }
    document.title = "Entrar · Health&Med";
    return;
  }
  const view = VIEWS[me.role][route];
  if (!view) {
    location.replace(home(me.role));
    return;
  }
  renderMenu(route);
  main.replaceChildren(h("p", { class: "loading" }, "Carregando…"));
  try {
    const stop = await view(main, ...params);
    if (ticket !== rendering) {
      if (typeof stop === "function") stop();
      return;
    }
    cleanup = typeof stop === "function" ? stop : null;
    const heading = main.querySelector("h1");
    document.title = `${heading ? heading.textContent : "Health&Med"} · Health&Med`;
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (err) {
    announce(errorText(err), "error");
  }
}

onSessionChange((session) => {
  if (session && live.stopped) {
    live.start();
    offerNotices(); // stop() drops every handler: joined again at each start
  }
  if (!session) {
    live.stop();
    if (cleanup) cleanup();
    cleanup = null;
    render();
  }
});

live.onState((state) => {
  badge.dataset.state = state;
  badge.textContent = LIVE_TEXT[state];
});

exit.addEventListener("click", () => {
  logout().catch(() => {});
});

window.addEventListener("hashchange", render);
render();
