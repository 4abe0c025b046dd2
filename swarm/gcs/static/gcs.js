/* The ground station page: draws what the server streams (/api/stream), sends operator
 * actions to /api/commands and shows only what the swarm answered. Everything it loads
 * comes from this server; see swarm/gcs/server.py for the API. */
"use strict";

(function () {
  const DRONE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                         "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728"];
  const STREAM_SILENCE_MS = 5000; // the server sends health every second
  const state = { config: null, map: null, drones: [], plans: [], health: null,
                  events: [], fitted: false, lastMessage: 0, connected: false };

  // ------------------------------------------------------------------ helpers
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" }[c]));
  }
  function colour(node) { return DRONE_COLOURS[(node - 1) % DRONE_COLOURS.length]; }
  function droneColour(name) { // the map names drones, the topics number them
    const d = state.drones.find((x) => x.name === name);
    return d ? colour(d.node) : "#555";
  }
  function fmt(v, digits, unit) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits) + (unit || "");
  }
  function clock(ms) {
    return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
  }
  // Recall state, only ever from the committed map (never from an action in flight):
  // null when unknown (no map yet, or agents that predate it).
  function recall() { return (state.map && state.map.recall) || null; }
  function isRecalled(name) {
    const r = recall();
    return r ? (r.all || r.drones.includes(name)) : null;
  }
  function onMap(name) {
    return ((state.map && state.map.features) || []).some((f) =>
      f.properties.kind === "drone_home" && f.properties.id === name);
  }

  // ------------------------------------------------------------------ the map
  const map = L.map("map", { zoomControl: true, attributionControl: true, preferCanvas: false,
                             doubleClickZoom: false });
  map.attributionControl.setPrefix(false); // no outbound link in the page
  L.control.scale({ imperial: false, maxWidth: 160 }).addTo(map);
  map.setView([0, 0], 2);

  const panes = [["areas", 390], ["zones", 400], ["routes", 410], ["plans", 420],
                 ["dronesPane", 610], ["items", 640], ["pendingPane", 650]];
  for (const [name, z] of panes) { map.createPane(name); map.getPane(name).style.zIndex = z; }

  const layers = {
    grid: L.layerGroup(),
    searchArea: L.layerGroup().addTo(map),
    sectors: L.layerGroup().addTo(map),   // committed sectors (the map's assignment)
    planSectors: null,                     // sectors a plan carries, when the map has none
    zones: L.layerGroup().addTo(map),
    routes: L.layerGroup().addTo(map),
    homes: L.layerGroup().addTo(map),
    survivors: L.layerGroup().addTo(map),
    paths: L.layerGroup().addTo(map),
    fences: L.layerGroup().addTo(map),
    tracks: L.layerGroup().addTo(map),
    drones: L.layerGroup().addTo(map),
    pending: L.layerGroup().addTo(map),
  };
  layers.planSectors = L.layerGroup().addTo(layers.sectors);
  L.control.layers(null, {
    "Grid": layers.grid, "Search area": layers.searchArea, "Sectors": layers.sectors,
    "Zones": layers.zones, "Routes": layers.routes, "Drone homes": layers.homes,
    "Survivors": layers.survivors, "Planned paths": layers.paths, "Fences": layers.fences,
    "Drone tracks": layers.tracks, "Drones": layers.drones,
  }, { collapsed: true, position: "topright" }).addTo(map);

  // A plain grid (graticule) when there are no tiles: lines at a round step, ~6-12 across.
  function drawGrid() {
    layers.grid.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), 1e-9);
    const steps = [];
    for (let e = -6; e <= 2; e++) for (const m of [1, 2, 5]) steps.push(m * Math.pow(10, e));
    const step = steps.find((s) => span / s <= 12) || 100;
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    const style = { color: "#9c9886", weight: 1, opacity: 0.6, interactive: false };
    const south = Math.max(b.getSouth(), -85), north = Math.min(b.getNorth(), 85);
    for (let x = Math.ceil(b.getWest() / step) * step; x <= b.getEast(); x += step) {
      layers.grid.addLayer(L.polyline([[south, x], [north, x]], style));
      layers.grid.addLayer(L.marker([north, x], { interactive: false, icon: L.divIcon({
        className: "grid-label", html: x.toFixed(digits) + "°", iconAnchor: [-2, -2] }) }));
    }
    for (let y = Math.ceil(south / step) * step; y <= north; y += step) {
      layers.grid.addLayer(L.polyline([[y, b.getWest()], [y, b.getEast()]], style));
      layers.grid.addLayer(L.marker([y, b.getWest()], { interactive: false, icon: L.divIcon({
        className: "grid-label", html: y.toFixed(digits) + "°", iconAnchor: [-2, 12] }) }));
    }
  }
  map.on("moveend", () => { if (map.hasLayer(layers.grid)) drawGrid(); });
  map.on("overlayadd", (e) => { if (e.layer === layers.grid) drawGrid(); });

  // ------------------------------------------------------------------ map layers
  const ZONE_STYLE = {
    burning: { color: "#b71c1c", fillColor: "#e74c3c", fillOpacity: 0.45, weight: 2 },
    burned: { color: "#3e2723", fillColor: "#5d4037", fillOpacity: 0.5, weight: 2 },
    cleared: { color: "#2e7d32", fillColor: "#a5d6a7", fillOpacity: 0.25, weight: 2 },
  };
  const ll = (c) => [c[1], c[0]]; // GeoJSON [lon, lat] -> Leaflet [lat, lon]

  function popupActions(items) {
    const div = el("div", { class: "acts" });
    for (const [label, handler] of items) {
      const b = el("button", { type: "button", text: label });
      b.addEventListener("click", () => { map.closePopup(); handler(); });
      div.append(b);
    }
    return div;
  }
  function popup(html, actions) {
    const box = el("div", { class: "popup" });
    box.innerHTML = html;
    if (actions && actions.length) box.append(popupActions(actions));
    return box;
  }

  const survivorMarkers = new Map();
  function renderSurvivorTable(doc) {
    const rank = (p) => (p.urgent ? 0 : { reported: 1, confirmed: 2, rescued: 3 }[p.status] ?? 4);
    const list = ((doc && doc.features) || []).filter((f) => f.properties.kind === "survivor")
      .map((f) => f.properties).sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
    const tbody = $("survivors").tBodies[0];
    tbody.replaceChildren();
    let waiting = 0;
    for (const p of list) {
      if (p.status !== "rescued") waiting += p.count;
      const tr = el("tr", { class: p.urgent ? "urgent" : p.status });
      tr.append(el("td", { text: p.id }), el("td", { text: p.count }), el("td", { text: p.status }),
                el("td", { text: fmt(p.confidence, 2) }), el("td", { text: p.urgent ? "URGENT" : "" }));
      tr.addEventListener("click", () => {
        const m = survivorMarkers.get(p.id);
        if (m) { map.panTo(m.getLatLng()); m.openPopup(); }
      });
      tbody.append(tr);
    }
    if (!list.length) tbody.append(el("tr", {}, el("td", { text: "none reported" })));
    $("surv-total").textContent = list.length ? `(${waiting} people not yet rescued)` : "";
  }

  // One Leaflet layer for one map feature, and the layer group it belongs in.
  function drawFeature(f) {
      const p = f.properties || {}, g = f.geometry;
      if (p.kind === "search_area" && g.type === "Polygon") {
        return { group: "searchArea", layer: L.polygon(g.coordinates[0].map(ll), {
          pane: "areas", color: "#2e86c1", weight: 2, dashArray: "8 6", fill: false,
        }).bindTooltip("search area") };
      } else if (p.kind === "zone" && g.type === "Polygon") {
        const z = L.polygon(g.coordinates[0].map(ll), { pane: "zones",
          ...(ZONE_STYLE[p.status] || ZONE_STYLE.burning) });
        z.feature = f;
        z.bindTooltip(`zone ${esc(p.id)}: ${esc(p.status)}`);
        z.bindPopup(() => popup(
          `<b>Zone ${esc(p.id)}</b><br>${esc(p.status)} · reported by ${esc(p.source)} ${clock(p.time_ms)}`,
          [...["burning", "burned", "cleared"].filter((s) => s !== p.status).map((s) =>
            [`Mark ${s}`, () => propose({ type: "set_zone", id: p.id, status: s,
              polygon: g.coordinates[0] }, `zone ${p.id} → ${s}`)]),
           ["Remove", () => propose({ type: "remove_zone", id: p.id }, `remove zone ${p.id}`)]]));
        return { group: "zones", layer: z };
      } else if (p.kind === "route" && g.type === "LineString") {
        const r = L.polyline(g.coordinates.map(ll), { pane: "routes",
          color: p.unsafe ? "#c0392b" : "#1e8449", weight: p.unsafe ? 4 : 5,
          dashArray: p.unsafe ? "10 8" : null, opacity: 0.9 });
        r.bindTooltip(`route ${esc(p.id)} (priority ${p.priority}): ` +
          (p.unsafe ? `UNSAFE, crosses ${esc((p.crosses || []).join(", "))}` : "safe"));
        r.bindPopup(() => popup(`<b>Route ${esc(p.id)}</b><br>priority ${p.priority} · ` +
          (p.unsafe ? `<b style="color:#c0392b">UNSAFE</b> (${esc((p.crosses || []).join(", "))})` : "safe"),
          [["Remove", () => propose({ type: "remove_route", id: p.id }, `remove route ${p.id}`)]]));
        return { group: "routes", layer: r };
      } else if (p.kind === "survivor" && g.type === "Point") {
        const cls = p.urgent ? "urgent" : p.status;
        const m = L.marker(ll(g.coordinates), { pane: "items", icon: L.divIcon({
          className: "surv-icon", iconSize: [30, 30], iconAnchor: [15, 15],
          html: `<div class="${esc(cls)}">${Number(p.count)}</div>` }), keyboard: false });
        m.bindTooltip(`survivor ${esc(p.id)}: ${p.count} people, ${esc(p.status)}` +
          (p.urgent ? " — URGENT (in burning zone)" : ""));
        const acts = [];
        if (p.status !== "rescued") {
          acts.push(["Mark rescued", () => propose({ type: "update_survivor", id: p.id,
            status: "rescued" }, `survivor ${p.id} rescued`)]);
        }
        if (p.status === "reported") {
          acts.push(["Confirm", () => propose({ type: "update_survivor", id: p.id,
            status: "confirmed" }, `survivor ${p.id} confirmed`)]);
        }
        acts.push(["Remove", () => propose({ type: "remove_survivor", id: p.id },
          `remove survivor ${p.id}`)]);
        m.bindPopup(() => popup(`<b>Survivor ${esc(p.id)}</b>` +
          (p.urgent ? ` <b style="color:#ff1744">URGENT</b>` : "") +
          `<br>${p.count} people · ${esc(p.status)} · confidence ${fmt(p.confidence, 2)}` +
          `<br>by ${esc(p.reporter)} ${clock(p.time_ms)}` +
          (p.inside && p.inside.length ? `<br>inside ${esc(p.inside.join(", "))}` : ""), acts));
        return { group: "survivors", layer: m };
      } else if (p.kind === "sector" && g.type === "MultiPolygon") {
        const c = droneColour(p.id);
        const sec = L.polygon(g.coordinates.map((poly) => poly.map((ring) => ring.map(ll))), {
          pane: "areas", color: c, weight: 1, fillColor: c, fillOpacity: 0.06,
          dashArray: p.current ? null : "3 6" });
        sec.feature = f;
        sec.bindTooltip(`${esc(p.id)}: search sector (assignment epoch ${p.epoch}` +
          `${p.current ? "" : ", being re-assigned"})` +
          (p.survivors && p.survivors.length ? ` · visits ${esc(p.survivors.join(", "))}` : ""));
        return { group: "sectors", layer: sec };
      } else if (p.kind === "drone_home" && g.type === "Point") {
        return { group: "homes", layer: L.circleMarker(ll(g.coordinates), { pane: "items",
          radius: p.recalled ? 7 : 5, color: p.recalled ? "#c0392b" : "#333",
          fillColor: p.recalled ? "#f5b7b1" : "#fff", fillOpacity: 1, weight: 2 })
          .bindTooltip(`home of ${esc(p.id)} (${esc(p.task)}${p.alive ? "" : ", not alive"}` +
            `${p.recalled ? ", RECALLED: flying home" : ""})`) };
      }
      return null;
  }

  // Only features that changed are redrawn, so a popup the operator has open stays open
  // while other commits arrive.
  const featureLayers = new Map(); // "kind:id" -> {json, group, layer}
  function renderMap() {
    const doc = state.map;
    renderSurvivorTable(doc);
    const keep = new Set();
    for (const f of (doc && doc.features) || []) {
      const p = f.properties || {};
      const key = `${p.kind}:${p.id}`;
      const json = JSON.stringify(f) + (p.kind === "sector" ? droneColour(p.id) : "");
      keep.add(key);
      const old = featureLayers.get(key);
      if (old && old.json === json) continue;
      if (old) layers[old.group].removeLayer(old.layer);
      const made = drawFeature(f);
      if (made) {
        layers[made.group].addLayer(made.layer);
        featureLayers.set(key, { json, ...made });
      } else featureLayers.delete(key);
    }
    for (const [key, old] of featureLayers) {
      if (!keep.has(key)) { layers[old.group].removeLayer(old.layer); featureLayers.delete(key); }
    }
    survivorMarkers.clear();
    for (const [key, v] of featureLayers) {
      if (key.startsWith("survivor:")) survivorMarkers.set(key.slice(9), v.layer);
    }
    renderRecall();
    if (!doc) return;
    $("s-map").textContent = doc.version === null || doc.version === undefined ? "–" : "v" + doc.version;
    if (!state.fitted && doc.bbox) {
      map.fitBounds([[doc.bbox[1], doc.bbox[0]], [doc.bbox[3], doc.bbox[2]]], { padding: [30, 30] });
      state.fitted = true;
    }
  }

  function renderRecall() {
    const r = recall(), b = $("s-recall");
    b.textContent = !r ? "–" : r.all ? "ALL drones ordered home"
      : r.drones.length ? `${r.drones.join(", ")} ordered home` : "none";
    b.className = r && (r.all || r.drones.length) ? "bad" : "";
  }

  function renderPlans() {
    layers.paths.clearLayers(); layers.fences.clearLayers(); layers.planSectors.clearLayers();
    const mapSectors = new Set(((state.map && state.map.features) || []).filter((f) =>
      f.properties.kind === "sector").map((f) => f.properties.id));
    for (const p of state.plans) {
      const c = colour(p.node);
      if (p.mission && p.mission.length > 1) {
        L.polyline(p.mission.map((m) => [m[0], m[1]]), { pane: "plans", color: c, weight: 2,
          dashArray: "4 6", opacity: 0.9 })
          .bindTooltip(`${esc(p.name)}: planned path for map v${p.map_version} (${esc(p.status)})`)
          .addTo(layers.paths);
      }
      for (const ring of p.fences || []) {
        L.polygon(ring.map((v) => [v[0], v[1]]), { pane: "plans", color: "#8e44ad", weight: 1.5,
          dashArray: "2 5", fill: false }).bindTooltip(`${esc(p.name)}: exclusion fence`)
          .addTo(layers.fences);
      }
      if (p.sector && p.sector.length > 2 && !mapSectors.has(p.name)) {
        L.polygon(p.sector.map((v) => [v[0], v[1]]), { pane: "areas", color: c, weight: 1,
          fillColor: c, fillOpacity: 0.06 }).bindTooltip(`${esc(p.name)}: search sector`)
          .addTo(layers.planSectors);
      }
    }
  }

  const droneMarkers = new Map();
  function renderTracks() {
    layers.tracks.clearLayers();
    for (const d of state.drones) {
      if (d.track && d.track.length > 1) {
        L.polyline(d.track, { pane: "plans", color: colour(d.node), weight: 2, opacity: 0.45,
          interactive: false }).addTo(layers.tracks);
      }
    }
  }
  function droneIcon(d) {
    const c = colour(d.node);
    const heading = d.telemetry && d.telemetry.heading_deg !== null ? d.telemetry.heading_deg : 0;
    const ring = d.leader ? `<circle cx="16" cy="16" r="15" fill="none" stroke="#d4a000" stroke-width="3"/>` : "";
    const recalled = isRecalled(d.name);
    const cls = ["drone-icon", d.leader ? "leader" : "", d.stale || !d.online ? "stale" : "",
                 recalled ? "recalled" : ""].join(" ");
    return L.divIcon({ className: cls, iconSize: [32, 32], iconAnchor: [16, 16],
      html: `<svg width="32" height="32" viewBox="0 0 32 32">${ring}` +
        `<g transform="rotate(${Number(heading)} 16 16)"><path d="M16 3 L25 27 L16 21 L7 27 Z" ` +
        `fill="${c}" stroke="#111" stroke-width="1.5"/></g></svg>` +
        `<span class="lbl">${esc(d.name)}</span>` + (recalled ? `<span class="rtl">RTL</span>` : "") });
  }
  function droneText(d) {
    const t = d.telemetry || {};
    return `<b>${esc(d.name)}</b> (node ${d.node}) · ${d.leader ? "<b>LEADER</b>" : esc(d.role || "?")}` +
      `<br>battery ${fmt(t.battery_pct, 0, "%")} · ${esc(t.mode || "?")} ${t.armed ? "armed" : "disarmed"}` +
      `<br>alt ${fmt(t.alt_rel_m, 1, " m")} · ${fmt(t.groundspeed_ms, 1, " m/s")} · heading ${fmt(t.heading_deg, 0, "°")}` +
      `<br>link ${fmt(d.link_score, 2)} · seen ${fmt(d.telemetry_age_s, 1, " s")} ago` +
      (d.stale ? ` <b style="color:#c0392b">STALE</b>` : "") +
      (isRecalled(d.name) ? `<br><b style="color:#c0392b">RECALLED: flying home</b>` : "") +
      `<br>map v${d.map_version ?? "–"} · FC holds v${d.fc_map_version ?? "–"}` +
      (d.fc_connected === false ? ` <b style="color:#c0392b">FC LINK LOST</b>` : "");
  }
  function renderDrones() {
    renderTracks();
    const seen = new Set();
    for (const d of state.drones) {
      const t = d.telemetry;
      if (!t) continue;
      seen.add(d.node);
      let m = droneMarkers.get(d.node);
      const key = [d.leader, d.stale, d.online, Math.round(t.heading_deg || 0), d.name,
                   isRecalled(d.name)].join();
      if (!m) {
        m = L.marker([t.lat, t.lon], { pane: "dronesPane", icon: droneIcon(d), keyboard: false });
        m.iconKey = key;
        m.bindTooltip("", { direction: "top", offset: [0, -14] });
        m.addTo(layers.drones);
        droneMarkers.set(d.node, m);
      } else {
        m.setLatLng([t.lat, t.lon]);
        if (m.iconKey !== key) { m.setIcon(droneIcon(d)); m.iconKey = key; }
      }
      m.setTooltipContent(droneText(d));
      if (!state.fitted) { map.setView([t.lat, t.lon], 15); state.fitted = true; }
    }
    for (const [node, m] of droneMarkers) {
      if (!seen.has(node)) { layers.drones.removeLayer(m); droneMarkers.delete(node); }
    }
    const tbody = $("drones").tBodies[0];
    tbody.replaceChildren();
    for (const d of state.drones) {
      const t = d.telemetry || {};
      const tr = el("tr", { class: d.leader ? "leader" : (d.online ? "" : "offline") });
      tr.dataset.node = d.node;
      const cell = (text, cls) => { const td = el("td", { text }); if (cls) td.className = cls; return td; };
      tr.append(cell((d.leader ? "★ " : "") + d.name));
      tr.append(cell(d.leader ? "leader" : (d.role || "?")));
      tr.append(cell(fmt(t.battery_pct, 0, "%"), t.battery_pct !== undefined && t.battery_pct < 25 ? "bad" : ""));
      tr.append(cell(t.mode || "–", d.fc_connected === false ? "bad" : ""));
      tr.append(cell(fmt(d.link_score, 2), d.link_score !== null && d.link_score < 0.3 ? "warn" : ""));
      tr.append(cell(d.telemetry_age_s === null ? "never" : fmt(d.telemetry_age_s, 1, "s"), d.stale ? "bad" : ""));
      const files = el("td");
      if (state.plans.some((p) => p.node === d.node)) {
        files.append(el("a", { href: `/api/export/${d.node}.plan`, download: "", text: ".plan" }), " ",
                     el("a", { href: `/api/export/${d.node}.waypoints`, download: "", text: ".waypoints" }));
      } else files.textContent = "–";
      tr.append(files);
      // Recall one drone, or resume one recalled by name (after "Recall all", only
      // "Resume" ends it: the map says so).
      const home = el("td"), r = recall(), recalled = isRecalled(d.name);
      if (recalled) home.className = "recalled";
      if (r && r.all) home.textContent = "recalled (all)";
      else if (recalled) {
        home.append("recalled ", el("button", { type: "button", "data-resume": d.name, text: "resume" }));
      } else if (r && onMap(d.name)) {
        home.append(el("button", { type: "button", "data-recall": d.name, text: "recall" }));
      } else home.textContent = "–";
      tr.append(home);
      tbody.append(tr);
    }
  }

  function renderHealth() {
    const h = state.health;
    if (!h) return;
    $("swarm-id").textContent = h.swarm;
    $("s-leader").textContent = h.leader ? h.leader.name : "none";
    $("s-leader").className = h.leader ? "" : "bad";
    $("s-term").textContent = h.term ?? "–";
    $("s-commit").textContent = h.commit ?? "–";
    $("s-map").textContent = h.map_version === null ? "–" : "v" + h.map_version;
    const alerts = $("alerts");
    alerts.replaceChildren();
    if (!h.alerts.length) alerts.append(el("li", { class: "ok", text: "none" }));
    for (const a of h.alerts) alerts.append(el("li", { class: "alert-" + a.kind, text: a.text }));
    const tbody = $("nodes").tBodies[0];
    tbody.replaceChildren();
    for (const n of h.nodes) {
      const isLeader = h.leader && h.leader.node === n.node;
      const tr = el("tr", { class: isLeader ? "leader" : (n.online ? "" : "offline") });
      const behind = h.map_version !== null && n.map_version !== null && n.map_version < h.map_version;
      const fcBehind = h.map_version !== null && (n.fc_map_version === null || n.fc_map_version < h.map_version);
      tr.append(el("td", { text: (isLeader ? "★ " : "") + n.name + (n.online ? "" : " (offline)") }),
        el("td", { text: n.term ?? "–" }), el("td", { text: n.commit ?? "–" }),
        el("td", { text: n.map_version ?? "–", class: behind ? "warn" : "" }),
        el("td", { text: n.fc_map_version ?? "–", class: n.fc_connected === false ? "bad" : (fcBehind ? "warn" : "") }),
        el("td", { text: n.lag ?? "–" }),
        el("td", { text: n.last_contact_ms === null || n.last_contact_ms === undefined ? "–" : fmt(n.last_contact_ms, 0, " ms") }));
      tbody.append(tr);
    }
    $("counts").textContent = `${h.received} messages received, ${h.dropped} dropped` +
      (h.last_drop ? ` (last: ${h.last_drop})` : "");
    setConnection(state.connected);
  }

  function addEvents(list) {
    const ol = $("events");
    for (const e of list) {
      if (state.events.length && e.seq <= state.events[state.events.length - 1].seq) continue;
      state.events.push(e);
      const li = el("li");
      li.append(el("span", { class: "t", text: clock(e.t) }),
                el("span", { class: "k k-" + e.kind, text: e.kind }),
                (e.node ? `node ${e.node}: ` : "") + e.text);
      ol.prepend(li);
    }
    while (ol.children.length > 300) ol.lastChild.remove();
    if (state.events.length > 300) state.events.splice(0, state.events.length - 300);
  }

  // ------------------------------------------------------------------ the stream
  let source = null;
  function setConnection(ok) {
    state.connected = ok;
    const broker = state.health ? state.health.broker_connected : false;
    const badge = $("conn");
    if (!ok) { badge.textContent = "ground station unreachable"; badge.className = "badge bad"; }
    else if (!broker) { badge.textContent = "broker down"; badge.className = "badge bad"; }
    else { badge.textContent = "live"; badge.className = "badge ok"; }
    const banner = $("banner");
    banner.hidden = ok && broker;
    banner.textContent = !ok ? "Connection to the ground station lost — reconnecting; what you see is stale"
      : "Ground station has lost the broker — reconnecting; the map may be stale";
  }
  function connect() {
    if (source) source.close();
    source = new EventSource("/api/stream");
    const on = (name, fn) => source.addEventListener(name, (ev) => {
      state.lastMessage = Date.now();
      if (!state.connected) setConnection(true);
      fn(JSON.parse(ev.data));
    });
    on("snapshot", (s) => {
      state.map = s.map; state.drones = s.drones; state.plans = s.plans; state.health = s.health;
      state.events = []; $("events").replaceChildren();
      renderMap(); renderPlans(); renderDrones(); renderHealth(); addEvents(s.events);
    });
    on("map", (m) => { state.map = m; renderMap(); renderPlans(); renderDrones(); });
    on("plans", (p) => { state.plans = p; renderPlans(); renderDrones(); });
    on("drones", (d) => {
      const names = (list) => list.map((x) => x.node + x.name).join();
      const changed = names(d) !== names(state.drones);
      state.drones = d; renderDrones();
      if (changed) renderMap(); // sectors take their drone's colour
    });
    on("health", (h) => { state.health = h; renderHealth(); });
    on("events", addEvents);
    source.onerror = () => { setConnection(false); };
  }
  // EventSource retries by itself, but not after some failures (a non-200 answer while
  // the server restarts), and a half-open TCP connection never errors: a watchdog
  // reopens the stream when it has been silent for too long.
  setInterval(() => {
    if (!source || source.readyState === EventSource.CLOSED ||
        Date.now() - state.lastMessage > STREAM_SILENCE_MS) {
      if (state.connected) setConnection(false);
      state.lastMessage = Date.now();
      connect();
    }
  }, 1000);

  // ------------------------------------------------------------------ operator actions
  let pendingSeq = 0;
  async function propose(command, label, draft) {
    const id = ++pendingSeq;
    const li = el("li", { class: "wait", text: `${label}: proposing… (not committed yet)` });
    li.dataset.pending = id;
    $("pending").prepend(li);
    while ($("pending").children.length > 8) $("pending").lastChild.remove();
    const headers = { "Content-Type": "application/json" };
    const token = $("token").value || sessionStorage.getItem("gcs-token");
    if (token) { headers.Authorization = "Bearer " + token; sessionStorage.setItem("gcs-token", token); }
    let reply, status;
    try {
      const r = await fetch("/api/commands", { method: "POST", headers, body: JSON.stringify(command) });
      status = r.status;
      reply = await r.json();
    } catch (err) {
      reply = { status: "error", code: "unavailable", message: "ground station unreachable" };
    }
    if (draft) layers.pending.removeLayer(draft);
    if (reply.status === "committed") {
      li.className = "done";
      li.textContent = `${label}: committed at index ${reply.index} (map v${reply.map_version})`;
    } else {
      li.className = "err";
      li.textContent = `${label}: NOT applied — ${reply.code}: ${reply.message}` + (status ? ` (HTTP ${status})` : "");
    }
    return reply;
  }

  let mode = null; // null | "zone" | "survivor"
  let vertices = [], sketch = null, survivorAt = null, sketchMarker = null;
  function setMode(next) {
    mode = next;
    $("btn-zone").classList.toggle("active", mode === "zone");
    $("btn-survivor").classList.toggle("active", mode === "survivor");
    $("btn-finish").hidden = mode !== "zone";
    $("btn-cancel").hidden = mode === null;
    $("drawhint").hidden = mode === null;
    $("drawhint").textContent = mode === "zone" ? "click the zone's corners, then Finish"
      : mode === "survivor" ? "click where the survivors are" : "";
    map.getContainer().style.cursor = mode ? "crosshair" : "";
    if (mode === null) clearSketch();
  }
  function clearSketch() {
    if (sketch) layers.pending.removeLayer(sketch);
    if (sketchMarker) layers.pending.removeLayer(sketchMarker);
    sketch = sketchMarker = null; vertices = [];
  }
  function nextId(prefix, kind) {
    const used = new Set(((state.map && state.map.features) || []).filter((f) =>
      f.properties.kind === kind).map((f) => f.properties.id));
    let n = 1;
    while (used.has(`${prefix}-${n}`)) n++;
    return `${prefix}-${n}`;
  }
  map.on("click", (e) => {
    if (mode === "zone") {
      vertices.push([e.latlng.lat, e.latlng.lng]);
      if (sketch) layers.pending.removeLayer(sketch);
      sketch = (vertices.length < 3 ? L.polyline(vertices, { pane: "pendingPane" })
        : L.polygon(vertices, { pane: "pendingPane" }));
      sketch.setStyle({ color: "#555", dashArray: "6 4", weight: 2, fillOpacity: 0.1 });
      sketch.addTo(layers.pending);
    } else if (mode === "survivor") {
      survivorAt = [e.latlng.lng, e.latlng.lat];
      if (sketchMarker) layers.pending.removeLayer(sketchMarker);
      sketchMarker = L.circleMarker(e.latlng, { pane: "pendingPane", radius: 10, color: "#555",
        dashArray: "3 3" }).addTo(layers.pending);
      const form = $("survivorform");
      form.elements.id.value = nextId("op-survivor", "survivor");
      form.hidden = false;
    }
  });
  // Recall all / Resume: a recall is confirmed first; both go through the swarm like
  // any action, and the recall state shown is only ever the committed map's.
  $("btn-recall").addEventListener("click", () => { setMode(null); $("recallconfirm").hidden = false; });
  $("recallconfirm").querySelector(".cancel").addEventListener("click", () => { $("recallconfirm").hidden = true; });
  $("btn-recall-confirm").addEventListener("click", () => {
    $("recallconfirm").hidden = true;
    propose({ type: "recall" }, "recall all");
  });
  $("btn-resume").addEventListener("click", () => propose({ type: "resume" }, "resume all"));
  // The drones table is rebuilt with every frame: one listener on its body.
  $("drones").tBodies[0].addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.recall) propose({ type: "recall", drones: [b.dataset.recall] }, `recall ${b.dataset.recall}`);
    if (b.dataset.resume) propose({ type: "resume", drones: [b.dataset.resume] }, `resume ${b.dataset.resume}`);
  });
  $("btn-zone").addEventListener("click", () => setMode(mode === "zone" ? null : "zone"));
  $("btn-survivor").addEventListener("click", () => setMode(mode === "survivor" ? null : "survivor"));
  $("btn-cancel").addEventListener("click", () => { $("zoneform").hidden = true; $("survivorform").hidden = true; setMode(null); });
  $("btn-finish").addEventListener("click", () => {
    if (vertices.length < 3) { $("drawhint").textContent = "a zone needs at least 3 corners"; return; }
    const form = $("zoneform");
    form.elements.id.value = nextId("op-zone", "zone");
    form.hidden = false;
  });
  for (const form of [$("zoneform"), $("survivorform")]) {
    form.querySelector(".cancel").addEventListener("click", () => { form.hidden = true; setMode(null); });
  }
  $("zoneform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const id = form.elements.id.value.trim(), status = form.elements.status.value;
    const ring = vertices.map(([lat, lon]) => [lon, lat]);
    const draft = sketch; sketch = null;
    if (draft) { draft.setStyle({ color: "#333", dashArray: "2 6" }); draft.bindTooltip("pending — not committed"); }
    form.hidden = true; vertices = []; setMode(null);
    if (draft) layers.pending.addLayer(draft);
    propose({ type: "set_zone", id, status, polygon: ring }, `zone ${id} (${status})`, draft);
  });
  $("survivorform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const id = form.elements.id.value.trim();
    const draft = sketchMarker; sketchMarker = null;
    form.hidden = true; setMode(null);
    if (draft) layers.pending.addLayer(draft);
    propose({ type: "report_survivor", id, position: survivorAt,
      count: parseInt(form.elements.count.value, 10),
      confidence: parseFloat(form.elements.confidence.value) }, `survivor ${id}`, draft);
  });

  // ------------------------------------------------------------------ start
  fetch("/api/config").then((r) => r.json()).then((cfg) => {
    state.config = cfg;
    $("swarm-id").textContent = cfg.swarm;
    $("tokenrow").hidden = !cfg.token_required;
    if (cfg.tiles) {
      L.tileLayer(cfg.tiles.url, { maxZoom: cfg.tiles.max_zoom, attribution: "offline tiles" }).addTo(map);
    } else {
      $("map").classList.add("no-tiles");
      layers.grid.addTo(map);
      drawGrid();
    }
  }).catch(() => { layers.grid.addTo(map); });
  window.gcs = { state, map, propose, layers }; // for tests and the curious operator
  connect();
})();
