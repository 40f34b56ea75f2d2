// emostream viewer: one panel per camera; frames fetched from /api/cameras/<c>/frame, boxes and
// timelines from the SSE subscriptions /api/events and /api/tracks. Reads only; keeps nothing.
"use strict";

const COLORS = { happy: "#f5c518", neutral: "#9e9e9e", fear: "#a55eea" };
const OTHER = "#2e86de";
const TIMELINE_MS = 60000;   // the width of a track's timeline
const KEEP_FRAMES = 120;     // frames whose events are kept, per camera
const LIVE_MS = 5000;        // events newer than this (wall time): draw the frame they belong to
const panels = new Map();

function color(label) { return COLORS[label] || OTHER; }

function panel(camera) {
  let p = panels.get(camera);
  if (p) return p;
  document.getElementById("empty")?.remove();
  const root = document.createElement("section");
  root.className = "camera";
  root.dataset.camera = camera;
  root.innerHTML = `<h2><span></span><small>waiting for frames</small></h2><canvas width="640" height="360"></canvas>
    <div class="tracks"></div>`;
  root.querySelector("h2 span").textContent = camera;
  document.getElementById("cameras").appendChild(root);
  p = {
    camera, root, canvas: root.querySelector("canvas"), info: root.querySelector("h2 small"),
    trackList: root.querySelector(".tracks"), events: new Map(), latest: null, lastEventAt: 0,
    drawn: null, busy: false, tracks: new Map(), clock: 0,
  };
  panels.set(camera, p);
  return p;
}

function onEvent(e) {
  const p = panel(e.camera);
  let list = p.events.get(e.frame_seq);
  if (!list) {
    list = [];
    p.events.set(e.frame_seq, list);
    while (p.events.size > KEEP_FRAMES) p.events.delete(p.events.keys().next().value);
  }
  list.push(e);
  if (!p.latest || e.frame_seq >= p.latest.seq) p.latest = { seq: e.frame_seq, ts: e.ts_capture_ms };
  p.lastEventAt = Date.now();
  p.clock = Math.max(p.clock, e.ts_capture_ms);
  if (e.track_id) timeline(p, e.track_id, e.smoothed_label || e.label, e.ts_capture_ms);
}

function onTrack(t) {
  const p = panel(t.camera);
  const track = timeline(p, t.track_id, t.label, t.ts_ms);
  if (t.type === "end") {
    track.ended = true;
    track.row.classList.add("ended");
    track.row.title = `ended after ${(t.duration_ms / 1000).toFixed(1)} s: ` +
      Object.entries(t.time_in_ms).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(", ");
  }
}

function timeline(p, id, label, ts) {
  let track = p.tracks.get(id);
  if (!track) {
    const row = document.createElement("div");
    row.className = "track";
    row.dataset.trackId = id;
    row.innerHTML = `<span class="name"></span><span class="bar"></span>`;
    row.querySelector(".name").textContent = `#${id}`;
    p.trackList.prepend(row);
    track = { row, bar: row.querySelector(".bar"), segments: [], ended: false };
    p.tracks.set(id, track);
    while (p.tracks.size > 12) {
      const [oldest, old] = p.tracks.entries().next().value;
      old.row.remove();
      p.tracks.delete(oldest);
    }
  }
  const last = track.segments[track.segments.length - 1];
  if (last && last.label === label) last.end = Math.max(last.end, ts);
  else track.segments.push({ label, start: last ? last.end : ts, end: ts });
  track.row.querySelector(".name").textContent = `#${id} ${label}`;
  p.clock = Math.max(p.clock, ts);
  return track;
}

function drawTimelines(p) {
  const from = p.clock - TIMELINE_MS;
  for (const track of p.tracks.values()) {
    track.bar.replaceChildren(...track.segments.filter(s => s.end >= from).map(s => {
      const div = document.createElement("div");
      div.style.left = `${Math.max(0, (s.start - from) / TIMELINE_MS * 100)}%`;
      div.style.width = `${Math.max(0.5, (s.end - Math.max(s.start, from)) / TIMELINE_MS * 100)}%`;
      div.style.background = color(s.label);
      div.title = s.label;
      return div;
    }));
  }
}

async function refresh(p) {
  if (p.busy) return;
  const live = p.latest && Date.now() - p.lastEventAt < LIVE_MS;
  // While events flow, show the frame they belong to, so boxes sit on their faces; else the newest frame.
  if (live && p.drawn === p.latest.seq) return;
  const url = `/api/cameras/${encodeURIComponent(p.camera)}/frame` + (live ? `?seq=${p.latest.seq}&ts=${p.latest.ts}` : "");
  p.busy = true;
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) return;
    const seq = Number(response.headers.get("X-Frame-Seq"));
    const image = await createImageBitmap(await response.blob());
    draw(p, image, seq, p.events.get(seq) || []);
  } catch (error) {
    console.warn(p.camera, error);
  } finally {
    p.busy = false;
  }
}

function draw(p, image, seq, events) {
  const c = p.canvas;
  if (c.width !== image.width || c.height !== image.height) { c.width = image.width; c.height = image.height; }
  const g = c.getContext("2d");
  g.drawImage(image, 0, 0);
  const ids = [];
  const line = Math.max(2, Math.round(image.width / 320));
  g.font = `${Math.max(12, Math.round(image.width / 45))}px system-ui, sans-serif`;
  g.textBaseline = "bottom";
  for (const e of events) {
    const label = e.smoothed_label || e.label;
    const score = e.smoothed_score ?? e.score;
    g.strokeStyle = color(label);
    g.lineWidth = line;
    g.setLineDash(e.uncertain ? [line * 4, line * 3] : []);
    g.strokeRect(e.x, e.y, e.w, e.h);
    const text = `#${e.track_id || "?"} ${label}${e.uncertain ? "?" : ""} ${(score * 100).toFixed(0)}%`;
    const width = g.measureText(text).width + 8;
    const top = e.y > 24 ? e.y : e.y + e.h + 24;
    g.fillStyle = color(label);
    g.fillRect(e.x - line / 2, top - 22, width, 22);
    g.fillStyle = "#000";
    g.fillText(text, e.x + 3, top - 3);
    if (e.track_id) ids.push(e.track_id);
  }
  p.drawn = seq;
  c.dataset.frameSeq = String(seq);
  c.dataset.trackIds = ids.join(" ");
  c.dataset.boxes = JSON.stringify(events.map(e => ({ track_id: e.track_id, x: e.x, y: e.y, w: e.w, h: e.h,
    label: e.smoothed_label || e.label })));
  c.dataset.draws = String(Number(c.dataset.draws || 0) + 1);
}

async function cameras() {
  try {
    const response = await fetch("/api/cameras", { cache: "no-store" });
    const list = await response.json();
    const now = Date.now();
    for (const c of list) {
      const p = panel(c.camera);
      const stopped = c.last_frame_ms && now - c.last_frame_ms > 5000;
      p.root.classList.toggle("stopped", Boolean(stopped));
      const pr = c.progress;
      p.info.textContent = (stopped ? "stopped · " : "") +
        `${pr.frames_published || 0} frames · ${pr.faces_detected || 0} faces · ${p.tracks.size} tracks`;
    }
  } catch (error) {
    console.warn("cameras", error);
  }
}

function subscribe(path, name, handle) {
  const source = new EventSource(path);
  source.addEventListener(name, message => handle(JSON.parse(message.data)));
  source.onopen = () => { document.getElementById("status").textContent = "live"; };
  source.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
  return source;
}

subscribe("/api/events", "event", onEvent);
subscribe("/api/tracks", "track", onTrack);
cameras();
setInterval(cameras, 2000);
setInterval(() => { for (const p of panels.values()) { refresh(p); drawTimelines(p); } }, 100);
