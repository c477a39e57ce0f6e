// The nasclip web page: login, one search box, a grid that loads as you scroll, a photo view.
// Plain JavaScript served by nasclipd (no build step, no CDN). Everything shown is set with
// textContent or attributes, never as HTML: file names and EXIF text are whatever the files hold.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const t = window.t;
  const state = { q: "", like: null, likeName: "", offset: 0, more: false, loading: false, results: [],
                  pageSize: 60, maxK: 1000, generation: 0, current: -1, statusTimer: null };

  function translate() {
    document.documentElement.lang = window.nasclipLanguage === "zh" ? "zh-CN" : "en";
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    for (const el of document.querySelectorAll("[data-t-placeholder]")) el.placeholder = t(el.dataset.tPlaceholder);
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401 && path !== "/api/login") {
      showLogin(t("session_over"));
    }
    return { status: response.status, body: body };
  }

  // ------------------------------------------------------------------ login

  function showLogin(message) {
    $("main").hidden = true;
    $("viewer").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    if (state.statusTimer) { clearInterval(state.statusTimer); state.statusTimer = null; }
    $("user").focus();
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    const reply = await api("/api/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: $("user").value, password: $("password").value }) });
    $("password").value = "";
    if (reply.status === 200) return start();
    if (reply.status === 401) $("login-error").textContent = t("wrong_login");
    else if (reply.status === 429) $("login-error").textContent = t("too_many");
    else $("login-error").textContent = t("login_failed") + (reply.body && reply.body.error ? reply.body.error.message : reply.status);
  }

  async function logout() {
    await api("/api/logout", { method: "POST" });
    clearResults();
    showLogin("");
  }

  async function start() {
    const me = await api("/api/me");
    if (me.status !== 200) return showLogin("");
    state.pageSize = me.body.page_size || 60;
    state.maxK = me.body.max_k || 1000;
    $("who").textContent = me.body.user;
    $("login").hidden = true;
    $("main").hidden = false;
    $("q").focus();
    refreshStatus();
    state.statusTimer = setInterval(refreshStatus, 15000);
  }

  // ------------------------------------------------------------------ status and progress

  async function refreshStatus() {
    const reply = await api("/api/status");
    if (reply.status !== 200) return;
    const status = reply.body.status;
    const photos = status.photos;
    const total = photos.indexed + photos.pending + photos.failed;
    const select = $("f-share");
    if (select.options.length === 1) {
      for (const share of status.shares || []) {
        const option = document.createElement("option");
        option.value = share.name;
        option.textContent = share.name;
        select.appendChild(option);
      }
    }
    if (photos.pending > 0) {
      const eta = status.eta_seconds ? Math.max(1, Math.round(status.eta_seconds / 60)) : null;
      $("progress").hidden = false;
      $("progress-fill").style.width = (100 * photos.indexed / Math.max(1, total)).toFixed(1) + "%";
      $("progress-text").textContent = t("indexing", photos.indexed, total, eta);
    } else {
      $("progress").hidden = true;
      if (!state.results.length && !state.q && state.like === null) $("message").textContent = t("indexed", photos.indexed);
    }
  }

  // ------------------------------------------------------------------ searching

  function filters() {
    const out = {};
    for (const el of $("filters").elements) {
      if (!el.name || !el.value) continue;
      if (el.name === "sort" && el.value === "score") continue;
      out[el.name] = el.value;
    }
    return out;
  }

  function clearResults() {
    state.generation += 1;
    state.results = [];
    state.offset = 0;
    state.more = false;
    state.loading = false;
    $("grid").replaceChildren();
    $("message").textContent = "";
  }

  function search(event) {
    if (event) event.preventDefault();
    state.q = $("q").value.trim();
    state.like = null;
    if (!state.q) { clearResults(); $("message").textContent = t("type_something"); return; }
    clearResults();
    loadMore();
  }

  function moreLike(result) {
    closeViewer();
    state.like = result.id;
    state.likeName = basename(result.path);
    state.q = "";
    $("q").value = "";
    clearResults();
    loadMore();
  }

  async function loadMore() {
    if (state.loading) return;
    if (state.offset > 0 && !state.more) return;
    if (!state.q && state.like === null) return;
    const k = Math.min(state.pageSize, state.maxK - state.offset);
    if (k <= 0) return;
    state.loading = true;
    const generation = state.generation;
    const params = new URLSearchParams(filters());
    if (state.q) params.set("q", state.q);
    if (state.like !== null) params.set("like", String(state.like));
    params.set("k", String(k));
    params.set("offset", String(state.offset));
    if (window.nasclipLanguage === "zh") params.set("lang", "zh");  // place names in Chinese
    if (state.offset === 0) $("message").textContent = t("loading");
    let reply;
    try {
      reply = await api("/api/search?" + params.toString());
    } catch (e) {
      reply = { status: 0, body: null };
    }
    if (generation !== state.generation) return;  // a newer search started meanwhile
    state.loading = false;
    if (reply.status !== 200) {
      if (reply.status !== 401) {
        $("message").textContent = t("error") + (reply.body && reply.body.error ? reply.body.error.message : reply.status);
      }
      state.more = false;
      return;
    }
    const results = reply.body.results;
    for (const result of results) {
      addTile(result, state.results.length);
      state.results.push(result);
    }
    state.offset += results.length;
    state.more = reply.body.more && results.length > 0;
    // How the daemon read the box ("'beach', taken in 2019, near Lisbon, Portugal") when it found filters in it.
    const understood = reply.body.interpreted && reply.body.understood ? reply.body.understood + " · " : "";
    const head = (state.like !== null ? t("like_title", state.likeName) + " · " : "") + understood;
    $("message").textContent = state.results.length ? head + t("results", state.results.length, state.more) : t("no_results");
    if (state.more && sentinelVisible()) loadMore();
  }

  function basename(path) { return path.slice(path.lastIndexOf("/") + 1); }
  // A video's result is its best moment: its thumbnail is that frame, its original opens there (#t=).
  function moment(result) { return result.kind === "video" && result.time != null ? result.time : null; }
  function thumbUrl(result) { return "/api/thumb/" + result.id + (moment(result) !== null ? "?t=" + moment(result) : ""); }
  function clock(seconds) {
    const whole = Math.floor(seconds), h = Math.floor(whole / 3600), m = Math.floor(whole / 60) % 60, s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
  }
  function folderOf(path) { return path.slice(0, path.lastIndexOf("/")) || "/"; }

  function addTile(result, index) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tile";
    button.title = basename(result.path);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = basename(result.path);
    img.src = thumbUrl(result);
    img.addEventListener("error", () => button.classList.add("broken"), { once: true });
    button.appendChild(img);
    button.addEventListener("click", () => openViewer(index));
    $("grid").appendChild(button);
  }

  function sentinelVisible() {
    const box = $("sentinel").getBoundingClientRect();
    return box.top < window.innerHeight + 600;
  }

  // ------------------------------------------------------------------ the photo view

  function when(result) {
    if (result.taken) return result.taken.replace("T", " ").slice(0, 16);
    if (result.mtime) return new Date(result.mtime * 1000).toISOString().slice(0, 16).replace("T", " ");
    return t("unknown");
  }

  function placeOf(result) {
    const place = result.place;
    if (!place) return "";
    if (typeof place === "string") return place;
    return [place.name, place.region, place.country].filter(Boolean).join(", ");
  }

  function setRow(id, value) {
    const dd = $(id);
    dd.textContent = value || "";
    dd.hidden = dd.previousElementSibling.hidden = !value;
  }

  function openViewer(index) {
    const result = state.results[index];
    if (!result) return;
    state.current = index;
    const img = $("viewer-img");
    img.src = thumbUrl(result);  // at once, then the original replaces it
    img.alt = basename(result.path);
    if (/\.(jpe?g|png|gif|webp|avif|bmp)$/i.test(result.path)) {
      const full = new Image();
      full.onload = () => { if (state.current === index) img.src = full.src; };
      full.src = "/api/photo/" + result.id;
    }
    $("v-name").textContent = basename(result.path);
    setRow("v-taken", when(result));
    setRow("v-place", placeOf(result));
    setRow("v-camera", result.camera);
    setRow("v-folder", folderOf(result.path));
    setRow("v-moment", moment(result) !== null ? clock(moment(result)) : "");
    setRow("v-raw", result.original ? basename(result.original) : "");
    $("v-open").href = "/api/photo/" + result.id + (moment(result) !== null ? "#t=" + moment(result) : "");
    $("v-prev").disabled = index === 0;
    $("v-next").disabled = index >= state.results.length - 1;
    $("viewer").hidden = false;
    document.body.classList.add("viewing");
    $("v-close").focus();
  }

  function closeViewer() {
    $("viewer").hidden = true;
    document.body.classList.remove("viewing");
    $("viewer-img").removeAttribute("src");
    state.current = -1;
  }

  function step(by) {
    const next = state.current + by;
    if (next >= 0 && next < state.results.length) openViewer(next);
    if (next >= state.results.length - 3) loadMore();
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    translate();
    $("login-form").addEventListener("submit", login);
    $("search-form").addEventListener("submit", search);
    $("logout").addEventListener("click", logout);
    $("filters-toggle").addEventListener("click", () => {
      const open = $("filters").hidden;
      $("filters").hidden = !open;
      $("filters-toggle").setAttribute("aria-expanded", String(open));
    });
    $("filters").addEventListener("change", () => { if (state.q || state.like !== null) { clearResults(); loadMore(); } });
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("filters-clear").addEventListener("click", () => { $("filters").reset(); $("filters").dispatchEvent(new Event("change")); });
    $("v-close").addEventListener("click", closeViewer);
    $("v-prev").addEventListener("click", () => step(-1));
    $("v-next").addEventListener("click", () => step(1));
    $("v-like").addEventListener("click", () => moreLike(state.results[state.current]));
    document.addEventListener("keydown", (e) => {
      if ($("viewer").hidden) return;
      if (e.key === "Escape") closeViewer();
      else if (e.key === "ArrowLeft") step(-1);
      else if (e.key === "ArrowRight") step(1);
    });
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadMore();
    }, { rootMargin: "600px" }).observe($("sentinel"));
    start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
